// Red team on the log: what a broken log reader or a hostile client can make the appliance's log
// output spend. A `serve` process whose stdout pipe stops being read keeps answering clients,
// drops lines beyond a bound instead of holding them all, says how many when the reader is back,
// and still stops on SIGTERM; one whose stdout reader closes (EPIPE) or whose stdout is on a full
// disk (ENOSPC) keeps serving and stops on SIGTERM. Failed admin logins from many addresses are
// a bounded number of lines per window. Thousands of forged products, names and versions add no
// series to /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { LoginGuard } from '../../src/admin/login';
import { activate } from '../../src/client/kms-client';
import { boundedStreamDestination, type WritableSocket } from '../../src/logging/stream-destination';
import { product, startHarness } from '../server/appliance-harness';
import { loaderFlags } from '../paths';
import { lineMatching, settledWithin, until } from '../wait';

/** The CLI in the form this test runs in: dist/src from dist/test, src/ (with the loader) from test/. */
const MAIN = path.join(__dirname, '..', '..', 'src', 'cli', `main${path.extname(__filename)}`);
const WIN = product('Windows 10/11 Enterprise');

// Two serve processes started from source (npm run test:one) take longer than tap's default 30 s.
t.setTimeout(120_000);

interface Served {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<number | null>;
  readonly stderr: () => string;
}

async function serve(t: Test, stdout: 'pipe' | number = 'pipe'): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-logs-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(config, 'kms:\n  listen: ["127.0.0.1:0"]\nadmin:\n  listen: []\n');
  // Without a stdout to read the port from, a free port from a throwaway bind.
  const fixed = stdout === 'pipe' ? [] : ['--listen', `127.0.0.1:${await freePort()}`];
  const child = spawn(process.execPath, [...loaderFlags(), MAIN, 'serve', '--config', config, '--data-dir', dir, ...fixed], {
    stdio: ['ignore', stdout, 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => void (stderr += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  if (child.stdout === null) {
    const port = Number(fixed[1]!.split(':')[1]);
    await until(() => connects(port), 'the KMS port open', { everyMs: 250, ms: 60_000 });
    return { child, port, exited, stderr: () => stderr };
  }
  const listening = await lineMatching(child.stdout, /"event":"listening"/, 'the listening line', 60_000);
  const port = Number((JSON.parse(listening.input!) as { kms: string[] }).kms[0]!.split(':').pop());
  return { child, port, exited, stderr: () => stderr };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/** `connections` keep-alive clients of `requests` activations each; the replies' HRESULTs. */
async function drive(port: number, connections: number, requests: number): Promise<number[]> {
  const replies = await Promise.all(
    Array.from({ length: connections }, () => activate({ host: '127.0.0.1', port, product: WIN, requests, timeoutMs: 10_000 })),
  );
  return replies.flat().map((r) => r.hresult);
}

/** About 1.1 KiB per request line: 4 × 1000 lines are several times the 1 MiB queue and the pipe's buffer. */
// 2,000 request lines of about 900 bytes: well past the 1 MiB queue and the pipe's own 64 KiB.
const CONNECTIONS = 2;
const REQUESTS = 1000;

/** Every log line the reader gets from now on, parsed. */
function collect(stdout: Readable): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  let partial = '';
  stdout.on('data', (c: Buffer) => {
    partial += c.toString('utf8');
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  return lines;
}

t.test('stdout not read: clients are answered, lines beyond a bound are dropped and counted, SIGTERM still stops', async (t) => {
  const s = await serve(t);
  const stdout = s.child.stdout!;
  stdout.pause();
  const hresults = await drive(s.port, CONNECTIONS, REQUESTS);
  t.equal(hresults.length, CONNECTIONS * REQUESTS, 'every request answered while nobody read the log');
  t.ok(
    hresults.every((h) => h === 0),
    'and activated',
  );

  const lines = collect(stdout);
  stdout.resume();
  const onData = { on: [{ emitter: stdout, events: ['data'] }], ms: 20_000 };
  const dropped = await until(() => lines.find((l) => l['event'] === 'log-lines-dropped'), 'the dropped-lines line', onData);
  t.equal(dropped['level'], 'warn');
  t.type(dropped['since'], 'string');
  t.ok(Number.isFinite(Date.parse(dropped['since'] as string)), 'since is a time');
  const droppedLines = dropped['dropped'] as number;
  t.ok(droppedLines > 0, `lines were dropped (${droppedLines})`);
  const served = lines.filter((l) => l['event'] === 'kms-request-served').length;
  t.ok(served < CONNECTIONS * REQUESTS, `only some request lines were kept (${served})`);
  t.ok(served + droppedLines <= CONNECTIONS * REQUESTS, 'no line is both kept and counted as dropped');

  // Read again: nothing is dropped while the reader keeps up.
  const before = lines.length;
  t.same(await drive(s.port, 1, 50), Array(50).fill(0));
  await until(() => lines.slice(before).filter((l) => l['event'] === 'kms-request-served').length === 50, '50 more request lines', onData);
  t.notOk(
    lines.slice(before).some((l) => l['event'] === 'log-lines-dropped'),
    'no drop while the reader reads',
  );

  // Stop reading again, fill the queue, then stop the appliance: it gives up the rest and exits.
  stdout.pause();
  await drive(s.port, CONNECTIONS, REQUESTS);
  s.child.kill('SIGTERM');
  const code = await settledWithin(s.exited, 30_000, 'still running 30 s after SIGTERM');
  t.equal(code, 0, 'SIGTERM stops the appliance though its stdout is not read');
  t.match(s.stderr(), /bytes of log not taken by stdout's reader at exit/, 'and says what it gave up');
});

t.test('stdout closed (EPIPE): clients are answered, one line on stderr, SIGTERM stops', async (t) => {
  const s = await serve(t);
  s.child.stdout!.destroy();
  const hresults = await drive(s.port, 2, 500);
  t.equal(hresults.length, 1000, 'every request answered after the reader went away');
  t.ok(
    hresults.every((h) => h === 0),
    'and activated',
  );
  t.equal(s.child.exitCode, null, 'still running');
  await until(() => /stdout closed/.test(s.stderr()), 'the stderr line', { on: [{ emitter: s.child.stderr!, events: ['data'] }] });
  t.equal(s.stderr().match(/stdout closed/g)?.length, 1, 'said once');
  t.same(await drive(s.port, 1, 20), Array(20).fill(0), 'served after the line too');
  s.child.kill('SIGTERM');
  t.equal(await settledWithin(s.exited, 30_000, 'still running 30 s after SIGTERM'), 0);
});

t.test('failed admin logins from thousands of addresses are a bounded number of lines, the rest counted', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = { warn: (o: object) => void lines.push(o as Record<string, unknown>), info: () => {} };
  let now = 1_800_000_000_000;
  const record = { user: 'admin', scheme: 'scrypt', N: 2, r: 1, p: 1, salt: '', hash: 'AAAA' } as const;
  const guard = new LoginGuard(
    () => record,
    log,
    () => now,
  );
  // An over-long password fails before any scrypt: a guess costs the attacker one request. Each
  // /64 makes its free failures (and beyond the 10,000 addresses remembered the oldest are
  // forgotten and may fail again): the per-address lockout alone bounds no line count.
  const tooLong = 'x'.repeat(2000);
  const addresses = 2_500;
  let failures = 0;
  for (let round = 0; round < 2; round++) {
    for (let a = 0; a < addresses; a++) {
      const address = `2001:db8:${(a >> 8).toString(16)}:${(a & 0xff).toString(16)}::1`;
      for (let i = 0; i < 5; i++) {
        const r = await guard.login('admin', tooLong, address);
        if (!r.ok && r.reason === 'wrong') failures++;
      }
    }
    now += 5_000;
  }
  t.ok(failures > 2 * addresses, `${failures} failed logins checked`);
  t.ok(lines.length <= 40, `${lines.length} lines for them (at most 20 per 10 s window)`);
  t.ok(
    lines.every((l) => l['code'] === 'KMS_ERR_ADMIN_LOGIN_FAILED'),
    'each one the failed-login line',
  );

  // The next window: one line says how many were left out.
  now += 10_000;
  await guard.login('admin', tooLong, '192.0.2.1');
  const last = lines.at(-1)!;
  t.equal(last['clientAddress'], '192.0.2.1');
  const suppressed = lines.reduce((n, l) => n + ((l['suppressedSimilar'] as number | undefined) ?? 0), 0);
  t.equal(suppressed + lines.length, failures + 1, 'every failure is a line or counted in suppressedSimilar');
});

/** The labelled series of the request counters in a scrape (the process metrics aside). */
function requestSeries(body: string): string[] {
  return body
    .split('\n')
    .filter((l) => /^kms_appliance_(activations|refusals)_total\{/.test(l))
    .map((l) => l.slice(0, l.lastIndexOf(' ')));
}

t.test('hundreds of forged products, workstation names and versions add no series to /metrics', async (t) => {
  const h = await startHarness(t);
  const win = product('Windows 10/11 Enterprise');
  // Each kind of forgery once, so every label set it can produce exists: an unknown application,
  // an unknown SKU of a known group, an unknown group of a known application.
  const forge = (i: number) => {
    const protocol = ([4, 5, 6] as const)[i % 3]!;
    const ids = [
      { applicationId: randomUUID(), kmsCountedId: randomUUID(), activationId: randomUUID() },
      { activationId: randomUUID() },
      { kmsCountedId: randomUUID(), activationId: randomUUID() },
    ][Math.floor(i / 3) % 3]!;
    return { host: '127.0.0.1', port: h.port, product: { ...win, ...ids }, protocol, workstation: `ws-${randomUUID()}`, requests: 1 };
  };
  for (let i = 0; i < 9; i++) await activate(forge(i));
  const first = await h.appliance.metrics.scrape();
  const baseline = requestSeries(first.body);
  t.ok(baseline.length > 0, `${baseline.length} request series after one of each`);

  let next = 9;
  const forged = 360;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (next < forged) await activate(forge(next++));
    }),
  );
  t.equal(h.outcomes.length, forged, 'every forged request was handled');
  const after = await h.appliance.metrics.scrape();
  t.same(requestSeries(after.body).sort(), baseline.sort(), 'the same series, only their counts grew');
  // Per-application gauges (machines counted, threshold) appear once the counts are read: only
  // for the application served, never for a forged one.
  const applications = new Set([...after.body.matchAll(/application="([^"]*)"/g)].map((m) => m[1]));
  const served = new Set([...first.body.matchAll(/application="([^"]*)",result="served"/g)].map((m) => m[1]));
  t.same([...applications].sort(), [...served, 'unknown'].sort(), 'application labels: the one served, and "unknown"');
  t.ok(after.body.length < 2 * first.body.length, `/metrics is ${after.body.length} bytes (${first.body.length} before)`);
});

t.test('stdout on a full disk (/dev/full: ENOSPC): clients are answered, one line on stderr, SIGTERM stops', async (t) => {
  const full = fs.openSync('/dev/full', 'w');
  const s = await serve(t, full);
  fs.closeSync(full);
  const hresults = await drive(s.port, 2, 500);
  t.equal(hresults.length, 1000, 'every request answered though no log line can be written');
  t.ok(
    hresults.every((h) => h === 0),
    'and activated',
  );
  await until(() => /stdout failed \(ENOSPC\)/.test(s.stderr()), 'the stderr line', {
    on: [{ emitter: s.child.stderr!, events: ['data'] }],
  });
  t.equal(s.child.exitCode, null, 'still running');
  s.child.kill('SIGTERM');
  t.equal(await settledWithin(s.exited, 30_000, 'still running 30 s after SIGTERM'), 0, 'SIGTERM stops it');
  t.equal(s.stderr().match(/stdout failed/g)?.length, 1, 'said once');
});

/** A socket whose reader takes one chunk when told: what waits is `writableLength`. */
function slowReader() {
  const waiting: [Buffer, () => void][] = [];
  let onError: ((err: NodeJS.ErrnoException) => void) | undefined;
  const socket = {
    writableLength: 0,
    destroyed: false,
    write(chunk: Buffer, written: () => void): boolean {
      waiting.push([chunk, written]);
      socket.writableLength += chunk.length;
      return true;
    },
    on(_event: string, listener: (err: NodeJS.ErrnoException) => void) {
      onError = listener;
      return socket;
    },
    destroy() {
      socket.destroyed = true;
      return socket;
    },
  };
  const read = (): Buffer | undefined => {
    const next = waiting.shift();
    if (next === undefined) return undefined;
    socket.writableLength -= next[0].length;
    next[1]();
    return next[0];
  };
  return { socket: socket as WritableSocket & { destroyed: boolean }, read, fail: (err: NodeJS.ErrnoException) => onError?.(err) };
}

t.test('the bounded stream destination: what waits stays under the bound, drops are counted once, flush and abandon end', async (t) => {
  const r = slowReader();
  const resumed: { lines: number; sinceMs: number }[] = [];
  const closed: string[] = [];
  const dest = boundedStreamDestination(r.socket, {
    maxQueuedBytes: 100,
    onResumed: (d) => void resumed.push(d),
    onClosed: (e) => void closed.push(e.code ?? ''),
  });
  const batch = (n: number) => `${'x'.repeat(9)}\n`.repeat(n); // n lines of 10 bytes
  dest.write(batch(6));
  dest.write(batch(4));
  t.equal(r.socket.writableLength, 100, 'up to the bound waits');
  dest.write(batch(3));
  dest.write(batch(1));
  t.equal(r.socket.writableLength, 100, 'beyond it nothing more waits');
  t.equal(dest.droppedLines, 4, 'the lines left out are counted');
  let flushed = false;
  dest.flush(() => (flushed = true));
  r.read();
  t.same(resumed, [], 'no report while some still waits');
  t.notOk(flushed, 'nor is a flush over');
  r.read();
  t.equal(resumed.length, 1, 'once all was read: one report');
  t.equal(resumed[0]!.lines, 4);
  t.ok(flushed, 'and the flush is over');
  r.read();
  t.equal(resumed.length, 1, 'reported once');

  dest.write(batch(5));
  t.equal(dest.abandon(), 50, 'abandon gives up what waits');
  t.ok(r.socket.destroyed);
  dest.write(batch(1));
  t.equal(r.socket.writableLength, 50, 'nothing is written after');

  const r2 = slowReader();
  const dest2 = boundedStreamDestination(r2.socket, { onClosed: (e) => void closed.push(e.code ?? '') });
  dest2.write(batch(1));
  let over = false;
  dest2.flush(() => (over = true));
  r2.fail(Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
  r2.fail(Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
  t.same(closed, ['EPIPE'], 'an error is reported once');
  t.ok(over, 'a flush waiting on a closed reader is over');
  dest2.write(batch(1));
  t.equal(r2.socket.writableLength, 10, 'nothing is written after an error');
});
