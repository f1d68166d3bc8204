// Test helper: a real BIND 9 `named` on 127.0.0.1 at a free port, primary for one dynamic zone
// that accepts updates signed with one HMAC-SHA256 TSIG key. Everything lives in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { dig, requireTool } from './dig';
import { lineMatching, settledWithin } from '../wait';

export interface NamedInstance {
  readonly port: number;
  readonly zone: string;
  readonly keyName: string;
  readonly secretBase64: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 for both TCP and UDP right now. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

export async function startNamed(zone: string, keyName: string, secretBase64: string): Promise<NamedInstance> {
  const named = requireTool('named');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-named-'));
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, `${zone}.zone`),
    [`$TTL 300`, `@ IN SOA ns.${zone}. hostmaster.${zone}. 1 3600 600 86400 300`, `@ IN NS ns.${zone}.`, `ns IN A 127.0.0.1`, ''].join(
      '\n',
    ),
  );
  fs.writeFileSync(
    path.join(dir, 'named.conf'),
    `options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  session-keyfile "${dir}/session.key";
  managed-keys-directory "${dir}";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
key "${keyName}" { algorithm hmac-sha256; secret "${secretBase64}"; };
zone "${zone}" {
  type primary;
  file "${dir}/${zone}.zone";
  allow-update { key "${keyName}"; };
};
`,
  );
  // -g: foreground, log to stderr; -n 1: one worker is plenty; as root no -u drop is needed
  // because the temp dir is root's own.
  const child: ChildProcess = spawn(named, ['-g', '-n', '1', '-c', path.join(dir, 'named.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  // named -g ends its start-up with a line that is just "<time> running" (zones loaded, sockets
  // listening); earlier lines say "running on Linux" and "running as: named ...".
  const running = lineMatching(child.stderr!, /\srunning$/, 'named saying it is running', 20_000);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<boolean>((resolve) => child.once('exit', () => resolve(true)));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    if (!(await settledWithin(exited, 5000, false))) {
      child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await running;
    const r = await dig('127.0.0.1', port, ['SOA', zone, '+time=2']);
    if (r.status !== 'NOERROR') throw new Error(`named answered its own zone's SOA with ${r.status}`);
  } catch (err) {
    await stop();
    throw new Error(`named did not start: ${(err as Error).message}\n${stderr.slice(-2000)}`);
  }
  return { port, zone, keyName, secretBase64, dir, stop };
}
