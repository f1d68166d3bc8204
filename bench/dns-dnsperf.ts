// `npm run bench:dns`: SRV queries per second over UDP on loopback, measured by an independent
// load generator (dnsperf, `-c 4`) against the appliance's DNS responder and, in the same run on
// the same machine, against dnsmasq serving the same SRV record. The responder runs in this
// process (nothing else runs in it while dnsperf does); the rate limit is off for the run.
// Needs dnsperf and dnsmasq on the PATH (scripts/ci-apt.sh installs them).
// Run: node dist/bench/dns-dnsperf.js [--seconds S] [--clients C]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULTS } from '../src/config/defaults';
import { startDnsServer } from '../src/dns/dns-server';

const ZONE = 'branch.example';
const SILENT = { info() {}, warn() {}, error() {}, debug() {} };

export interface DnsperfFigures {
  readonly queriesPerSecond: number;
  readonly completed: number;
  readonly lost: number;
  /** The server's own CPU time per answered query (user + system), which load on the machine disturbs less than the rate. */
  readonly cpuMicrosPerQuery?: number;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSecondsOf(pid: number): number {
  const fields = fs
    .readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  // After the command name: utime and stime are fields 14 and 15 of stat(5), here at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs dnsperf against 127.0.0.1:port and reads its summary. */
export function runDnsperf(port: number, queryFile: string, seconds: number, clients: number): Promise<DnsperfFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-c', String(clients), '-l', String(seconds), '-d', queryFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      const qps = /Queries per second:\s+([\d.]+)/.exec(out);
      const completed = /Queries completed:\s+(\d+)/.exec(out);
      const lost = /Queries lost:\s+(\d+)/.exec(out);
      if (!qps || !completed) return reject(new Error(`dnsperf printed no summary:\n${out}`));
      resolve({ queriesPerSecond: Number(qps[1]), completed: Number(completed[1]), lost: Number(lost?.[1] ?? 0) });
    });
  });
}

/** A free UDP port on 127.0.0.1 (dnsmasq needs one named up front). */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

function startDnsmasq(port: number): ChildProcess {
  return spawn(
    'dnsmasq',
    [
      '--no-daemon',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      `--srv-host=_vlmcs._tcp.${ZONE},kms.${ZONE},1688`,
      `--host-record=kms.${ZONE},192.0.2.10`,
      '--conf-file=/dev/null',
      '--log-facility=/dev/null',
    ],
    { stdio: 'ignore' },
  );
}

async function waitForAnswer(port: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const ok = spawnSync('dig', ['@127.0.0.1', '-p', String(port), '+time=1', '+tries=1', '+short', 'SRV', `_vlmcs._tcp.${ZONE}`], {
      encoding: 'utf8',
    }).stdout.trim();
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on port ${port}`);
}

export async function benchDnsperf(seconds: number, clients: number): Promise<{ appliance: DnsperfFigures; dnsmasq: DnsperfFigures }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dns-dnsperf-'));
  const queryFile = path.join(dir, 'queries');
  fs.writeFileSync(queryFile, `_vlmcs._tcp.${ZONE} SRV\n`);
  const server = await startDnsServer(
    {
      ...DEFAULTS.dns,
      rateLimit: { responsesPerSecond: 100000, burst: 1000000, slip: 0 },
      zones: [
        {
          domain: ZONE,
          ttlSeconds: 900,
          hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }],
        },
      ],
    },
    { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log: SILENT },
    ['127.0.0.1:0'],
  );
  const dnsmasqPort = await freeUdpPort();
  const dnsmasq = startDnsmasq(dnsmasqPort);
  try {
    await waitForAnswer(dnsmasqPort);
    // dnsperf runs as its own process; this process only answers while it does.
    const cpuBefore = process.cpuUsage();
    const appliance = await runDnsperf(server.addresses[0]!.port, queryFile, seconds, clients);
    const cpu = process.cpuUsage(cpuBefore);
    const dnsmasqCpuBefore = cpuSecondsOf(dnsmasq.pid!);
    const other = await runDnsperf(dnsmasqPort, queryFile, seconds, clients);
    const dnsmasqCpu = cpuSecondsOf(dnsmasq.pid!) - dnsmasqCpuBefore;
    return {
      appliance: { ...appliance, cpuMicrosPerQuery: (cpu.user + cpu.system) / Math.max(1, appliance.completed) },
      dnsmasq: { ...other, cpuMicrosPerQuery: (dnsmasqCpu * 1e6) / Math.max(1, other.completed) },
    };
  } finally {
    dnsmasq.kill();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, clients: { type: 'string' } } });
  const seconds = Math.min(Math.max(Number(values.seconds ?? 10), 1), 60);
  const clients = Math.min(Math.max(Number(values.clients ?? 4), 1), 64);
  benchDnsperf(seconds, clients).then(
    (r) => {
      const line = (name: string, f: DnsperfFigures): string =>
        `${name.padEnd(10)} ${Math.round(f.queriesPerSecond).toLocaleString('en')} SRV queries/s over UDP ` +
        `(${f.completed} completed, ${f.lost} lost), ${f.cpuMicrosPerQuery?.toFixed(1)} µs server CPU per query\n`;
      process.stdout.write(`dnsperf -c ${clients} -l ${seconds}, loopback, rate limit off:\n`);
      process.stdout.write(line('appliance', r.appliance));
      process.stdout.write(line('dnsmasq', r.dnsmasq));
      process.stdout.write(`appliance / dnsmasq = ${(r.appliance.queriesPerSecond / r.dnsmasq.queriesPerSecond).toFixed(2)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
