// `kms-appliance serve` as a real process: SIGHUP reload (good and bad file) while clients are
// served, SIGTERM exit 0, and kill -9 during a stream of activations losing nothing answered.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { activate } from '../../src/client/kms-client';
import { product } from './appliance-harness';
import { ROOT } from '../paths';
import { lineMatching, until } from '../wait';

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
  const listening = await lineMatching(child.stdout!, /"event":"listening"/, 'the serve process logging its listening port', 20_000);
  const kms = (JSON.parse(listening.input!) as { kms: string[] }).kms;
  const port = Number(kms[0]!.split(':').pop());
  return { child, port, lines, exited };
}

/** A log line of the serve process matching `match`, checked whenever it writes. */
function logLine(s: Served, match: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  return until(() => s.lines.find(match), what, { on: [{ emitter: s.child.stdout!, events: ['data'] }] });
}

t.test('SIGHUP applies a valid file and keeps serving; a broken file is rejected; SIGTERM exits 0', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-hup-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = writeConfig(dir, 10080);
  const s = await serve(t, dir, config);

  // A client keeps activating on one connection while the configuration changes under it.
  let stop = false;
  const renewals: number[] = [];
  const replied = new EventEmitter();
  const background = (async () => {
    while (!stop) {
      const replies = await activate({ host: '127.0.0.1', port: s.port, product: WIN, requests: 5 });
      for (const r of replies) renewals.push(r.verified!.base.renewalInterval);
      replied.emit('replies');
    }
  })();
  const onReplies = { on: [{ emitter: replied, events: ['replies'] }] };

  fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('renewalIntervalMinutes: 10080', 'renewalIntervalMinutes: 1440'));
  s.child.kill('SIGHUP');
  await until(() => renewals.includes(1440), 'a reply with the reloaded renewal interval', onReplies);
  // Log lines are flushed every 250 ms: wait for the line rather than expect it at once.
  const reloaded = await logLine(s, (l) => l['event'] === 'reload' && l['msg'] === 'configuration reloaded', 'the reload logged');
  t.ok(reloaded, 'reload logged');

  fs.writeFileSync(config, 'kms:\n  renewalIntervalMinutes: 5\n');
  s.child.kill('SIGHUP');
  const rejected = await logLine(s, (l) => l['event'] === 'reload' && l['level'] === 'error', 'the bad file rejected in the log');
  t.match(JSON.stringify(rejected['errors']), /config\.yaml:2: kms\.renewalIntervalMinutes: must be between 15 and 43200/);
  const before = renewals.length;
  await until(() => renewals.length > before + 5, 'five more replies after the bad file', onReplies);
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
  const progress = new EventEmitter();
  const stream = (async () => {
    for (let i = 0; i < 40; i++) {
      const cmid = randomUUID();
      try {
        const [r] = await activate({ host: '127.0.0.1', port: s.port, product: WIN, cmid, timeoutMs: 2000 });
        if (r?.hresult === 0) answered.push(cmid);
        progress.emit('answered');
      } catch {
        return; // the server is gone
      }
    }
  })();
  await until(() => answered.length >= 20, 'twenty answered activations', {
    on: [{ emitter: progress, events: ['answered'] }],
    ms: 20_000,
  });
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
