// The floor under the sequential keep-alive figure (issue 14): a bare Node `net` server that
// answers every request PDU with a fixed response after spinning a given number of µs of CPU,
// driven by the same two C clients as `npm run bench -- --sequential`, its CPU per request read
// from /proc as the bench reads the appliance's. Spin minus CPU is what Node and the kernel cost
// around one request at that pace; nothing of the appliance runs.
// Alone: node dist/bench/floor.js [--spin 0,30,60] [--seconds 4]
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadCatalog } from '../src/catalog/load';
import { chooseProduct } from '../src/client/product-choice';
import { buildCClient, driveSequential, writePduFile } from './c-client';

const ROOT = path.resolve(__dirname, '..', '..');

/** The child: `floor.js serve SPIN_US` listens on an ephemeral port and sends the port to its parent. */
function serve(spinUs: number): void {
  const response = Buffer.alloc(300);
  response.writeUInt8(5, 0);
  response.writeUInt8(2, 2); // response
  response.writeUInt16LE(response.length, 8);
  const bindAck = Buffer.alloc(84);
  bindAck.writeUInt8(5, 0);
  bindAck.writeUInt8(12, 2); // bind_ack
  bindAck.writeUInt16LE(bindAck.length, 8);
  const spin = (): void => {
    const until = process.hrtime.bigint() + BigInt(spinUs * 1000);
    while (process.hrtime.bigint() < until);
  };
  const server = net.createServer((socket) => {
    let held: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      held = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
      while (held.length >= 10 && held.length >= held.readUInt16LE(8)) {
        const ptype = held[2];
        held = held.subarray(held.readUInt16LE(8));
        if (ptype === 11) {
          socket.write(bindAck);
        } else {
          spin();
          socket.write(response);
        }
      }
    });
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as net.AddressInfo).port));
}

function cpuTicks(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

async function main(): Promise<void> {
  if (process.argv[2] === 'serve') return serve(Number(process.argv[3]));
  const { values } = parseArgs({ options: { spin: { type: 'string' }, seconds: { type: 'string' } } });
  const spins = (values.spin ?? '0,30,60').split(',').map(Number);
  const seconds = Number(values.seconds ?? 4);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-floor-'));
  const client = buildCClient(ROOT, dir);
  if (!client) throw new Error('no C compiler (cc) to build bench/c/kms-seq-client.c');
  const pdus = path.join(dir, 'pdus.bin');
  writePduFile(pdus, chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise'), 100);
  for (const spinUs of spins) {
    const child = fork(__filename, ['serve', String(spinUs)], { execArgv: ['--max-semi-space-size=1'] });
    const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(Number(m))));
    await driveSequential(client, pdus, { port, seconds: 1, mode: 'keepalive', processes: 2 });
    const before = cpuTicks(child.pid!);
    const r = await driveSequential(client, pdus, { port, seconds, mode: 'keepalive', processes: 2 });
    const cpuUs = ((cpuTicks(child.pid!) - before) * 1e6) / 100 / r.requests; // clock ticks of 10 ms
    child.kill();
    console.log(
      `bare Node server spinning ${String(spinUs).padStart(3)} µs: ${Math.round(r.perSecond)} requests/s, ` +
        `CPU ${cpuUs.toFixed(1)} µs/request, of which Node and the kernel ${(cpuUs - spinUs).toFixed(1)} µs`,
    );
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

void main();
