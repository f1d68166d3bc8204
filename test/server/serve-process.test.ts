// `kms-appliance serve` as a real process: SIGHUP reload (good and bad file) while clients are
// served, SIGTERM exit 0, and kill -9 during a stream of activations losing nothing answered.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { activate } from '../../src/client/kms-client';
import { product } from './appliance-harness';
import { ROOT } from '../paths';

const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const WIN = product('Windows 10/11 Enterprise');

interface Served {
  readonly child: ChildProcess;
  readonly port: number;
  readonly lines: Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

function writeConfig(dir: string, renewal: number, extra = ''): string {
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, `kms:\n  listen: ["127.0.0.1:0"]\n  renewalIntervalMinutes: ${renewal}\nadmin:\n  listen: []\n${extra}`);
  return file;
}

async function serve(t: Test, dir: string, config: string): Promise<Served> {
  t.ok(fs.existsSync(MAIN), 'the CLI is built (npm test builds it first)');
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--data-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buffered = '';
  child.stdout!.on('data', (c: Buffer) => {
    buffered += c.toString('utf8');
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  child.stderr!.on('data', () => {});
  // 'close', not 'exit': it comes after the last stdout bytes were read.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const port = await waitFor(() => {
    const l = lines.find((x) => x['event'] === 'listening');
    const kms = l?.['kms'] as string[] | undefined;
    return kms?.[0] ? Number(kms[0].split(':').pop()) : undefined;
  }, 20_000);
  return { child, port, lines, exited };
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('SIGHUP applies a valid file and keeps serving; a broken file is rejected; SIGTERM exits 0', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-hup-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = writeConfig(dir, 10080);
  const s = await serve(t, dir, config);

  // A client keeps activating on one connection while the configuration changes under it.
  let stop = false;
  const renewals: number[] = [];
  const background = (async () => {
    while (!stop) {
      const replies = await activate({ host: '127.0.0.1', port: s.port, product: WIN, requests: 5 });
      for (const r of replies) renewals.push(r.verified!.base.renewalInterval);
    }
  })();

  fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('renewalIntervalMinutes: 10080', 'renewalIntervalMinutes: 1440'));
  s.child.kill('SIGHUP');
  await waitFor(() => (renewals.includes(1440) ? true : undefined), 10_000);
  // Log lines are flushed every 250 ms: wait for the line rather than expect it at once.
  const reloaded = await waitFor(() => s.lines.find((l) => l['event'] === 'reload' && l['msg'] === 'configuration reloaded'), 10_000);
  t.ok(reloaded, 'reload logged');

  fs.writeFileSync(config, 'kms:\n  renewalIntervalMinutes: 5\n');
  s.child.kill('SIGHUP');
  const rejected = await waitFor(() => s.lines.find((l) => l['event'] === 'reload' && l['level'] === 'error'), 10_000);
  t.match(JSON.stringify(rejected['errors']), /config\.yaml:2: kms\.renewalIntervalMinutes: must be between 15 and 43200/);
  const before = renewals.length;
  await waitFor(() => (renewals.length > before + 5 ? true : undefined), 10_000);
  t.same([...new Set(renewals.slice(before))], [1440], 'the running configuration stays after a bad file');

  stop = true;
  await background;
  const [last] = await activate({ host: '127.0.0.1', port: s.port, product: WIN });
  const counted = last!.verified!.base.currentCount;
  t.ok(counted > 5, 'counts carried through both reloads');
  s.child.kill('SIGTERM');
  t.equal(await s.exited, 0, 'SIGTERM: exit code 0');
  t.ok(
    s.lines.some((l) => l['event'] === 'shutdown'),
    'shutdown logged',
  );
});

t.test('kill -9 during a stream of activations loses no answered activation', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-kill9-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = writeConfig(dir, 10080);
  const s = await serve(t, dir, config);
  const answered: string[] = [];
  const stream = (async () => {
    for (let i = 0; i < 40; i++) {
      const cmid = randomUUID();
      try {
        const [r] = await activate({ host: '127.0.0.1', port: s.port, product: WIN, cmid, timeoutMs: 2000 });
        if (r?.hresult === 0) answered.push(cmid);
      } catch {
        return; // the server is gone
      }
    }
  })();
  await waitFor(() => (answered.length >= 20 ? true : undefined), 20_000);
  s.child.kill('SIGKILL');
  await stream;
  await s.exited;
  t.ok(answered.length >= 20, `${answered.length} activations answered before the kill`);

  const again = await serve(t, dir, config);
  // A machine already answered asks again: the count must be exactly the machines answered.
  const [r] = await activate({ host: '127.0.0.1', port: again.port, product: WIN, cmid: answered[0]! });
  t.equal(r!.verified!.base.currentCount, Math.min(answered.length, 50), 'every answered activation survived');
  again.child.kill('SIGTERM');
  t.equal(await again.exited, 0);
});
