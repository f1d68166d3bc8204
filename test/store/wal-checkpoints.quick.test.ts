// WAL checkpoints on the store's own connection with their fsyncs off the loop
// (src/store/wal-checkpoints.ts). The order is what keeps a power cut harmless: the -wal file is
// on disk before its frames are copied, the database file is on disk before the WAL is reused,
// and nothing commits in between. The fsyncs here are held by the test, so each step is seen.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import type { SyncIo } from '../../src/store/wal-checkpoints';
import { JOURNAL_FILE_NAME } from '../../src/store/data-dir';
import { obs, recordingLog, tempDataDir, WINDOW } from './observations';
import { until, within } from '../wait';

const T0 = Date.now() - 86_400_000;
const big = { requiredClientCount: 1000 };
const HOUR = 3_600_000;

interface HeldSync {
  readonly path: string;
  done(err?: NodeJS.ErrnoException): void;
}

/** fsyncs that wait for the test; those made on the loop (settle) are recorded and run at once. */
class HeldSyncIo implements SyncIo {
  readonly onLoop: string[] = [];
  failing: string | undefined;
  private readonly held: HeldSync[] = [];
  private wake: (() => void) | undefined;

  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    const p = fs.readlinkSync(`/proc/self/fd/${fd}`);
    this.held.push({ path: p, done: (err) => done(err ?? null) });
    this.wake?.();
  }

  fdatasyncSync(fd: number): void {
    const p = fs.readlinkSync(`/proc/self/fd/${fd}`);
    this.onLoop.push(p);
    if (this.failing !== undefined && p.endsWith(this.failing)) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
  }

  get waiting(): number {
    return this.held.length;
  }

  /** The next fsync asked for (already asked or to come). */
  async next(): Promise<HeldSync> {
    if (this.held.length === 0) {
      await within(
        new Promise<void>((resolve) => {
          this.wake = resolve;
        }),
        'an fsync request',
      );
      this.wake = undefined;
    }
    return this.held.shift()!;
  }
}

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function open(dir: string, io: SyncIo, over: SqliteStoreOptions = {}): SqliteStore {
  // Commits only by count (512 writes) and cycles only by writes: every step is the test's.
  const store = SqliteStore.open(dir, { journalCommitMs: HOUR, backgroundCheckpointMs: HOUR, checkpointWrites: 100, syncIo: io, ...over });
  if (io instanceof HeldSyncIo) io.onLoop.length = 0; // the restart at open (its own test)
  return store;
}

/** n activations in group commits of 64, as the server's gate makes them. */
function activate(store: SqliteStore, from: number, n: number): void {
  for (let i = from; i < from + n; i += 64) {
    store.beginBatch();
    for (let j = i; j < Math.min(i + 64, from + n); j++) store.recordActivation(obs(j, big), T0 + j, WINDOW);
    store.commitBatch();
  }
}

function clientsIn(dir: string): number {
  const reader = SqliteStore.open(dir, { readonly: true });
  try {
    return connectionOf(reader).prepare('SELECT count(*) FROM clients').pluck().get() as number;
  } finally {
    reader.close();
  }
}

const bytes = (file: string): Buffer => fs.readFileSync(file);
/** The WAL header's salts change when SQLite starts the log again from its first frame. */
const salts = (wal: string): string => bytes(wal).subarray(16, 24).toString('hex');
const WAL_HEADER = 32;
const FRAME_HEADER = 24;
/** The salts frame n (from 1) of the WAL carries; a frame of the current log carries the header's. */
const frameSalts = (wal: string, n: number, pageSize = 1024): string => {
  const at = WAL_HEADER + (n - 1) * (FRAME_HEADER + pageSize) + 8;
  return bytes(wal)
    .subarray(at, at + 8)
    .toString('hex');
};
const journalLines = (dir: string): number =>
  fs
    .readFileSync(path.join(dir, JOURNAL_FILE_NAME), 'utf8')
    .split('\n')
    .filter((l) => l !== '').length;

/** Starts a cycle: 512 writes commit (the journal's count bound), then the directory's fsync is let through. */
async function startCycle(t: Test, store: SqliteStore, dir: string, io: HeldSyncIo): Promise<HeldSync> {
  activate(store, 0, 512);
  await immediate();
  const first = await io.next();
  t.equal(first.path, dir, 'a new -wal file: its directory entry is synced first');
  first.done();
  return io.next();
}

t.test('the -wal file is on disk before its frames are copied, the file before the WAL is reused, nothing commits between', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  t.teardown(() => store.close());
  const db = store.file;
  const wal = `${db}-wal`;

  const walSync = await startCycle(t, store, dir, io);
  t.equal(walSync.path, wal, 'then the -wal file');
  const walBefore = bytes(wal);
  const dbBefore = bytes(db);
  activate(store, 1000, 600);
  await immediate();
  await immediate();
  t.ok(walBefore.equals(bytes(wal)), 'while the -wal fsync runs, nothing commits (600 more requests answered)');
  t.ok(dbBefore.equals(bytes(db)), 'and nothing is copied into the database file');
  t.ok(journalLines(dir) >= 600, 'those requests are durable in the request journal');

  walSync.done();
  const dbSync = await io.next();
  t.equal(dbSync.path, db, 'once the -wal file is on disk, the frames are copied and the database file synced');
  t.notOk(dbBefore.equals(bytes(db)), 'the copy wrote the database file');
  const walAtCopy = bytes(wal);
  activate(store, 2000, 600);
  await immediate();
  await immediate();
  t.ok(walAtCopy.equals(bytes(wal)), 'until the database file is on disk, the WAL is neither reused nor appended to');

  const saltBefore = salts(wal);
  dbSync.done();
  const headerSync = await io.next();
  t.equal(headerSync.path, wal, 'once the file is on disk, the WAL is started again and the -wal file synced');
  t.not(salts(wal), saltBefore, 'the WAL has a new header');
  t.equal(frameSalts(wal, 1), salts(wal), 'the commit that started it wrote its first frame');
  t.not(frameSalts(wal, 2), salts(wal), 'and no second: no old frame can stay valid behind a new one');
  t.equal(clientsIn(dir), 512, 'the held commits wait until the new header is on disk');
  headerSync.done();
  await immediate();
  await immediate();
  t.equal(clientsIn(dir), 512 + 600 + 600, 'every request answered during the cycle is in the file');
  t.equal(io.onLoop.length, 0, 'no fsync ran on the event loop');
});

t.test('a read or a write that needs the connection during a cycle finishes it on the loop first', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  t.teardown(() => store.close());
  const walSync = await startCycle(t, store, dir, io);
  store.setSetting('a', '1');
  t.equal(store.getSetting('a'), '1', 'a read of a write held by the cycle sees it');
  t.same(
    io.onLoop,
    [`${store.file}-wal`, store.file, `${store.file}-wal`],
    'the read first synced the -wal file, then the file, then the new WAL header, on the loop',
  );
  walSync.done();
  await immediate();
  t.equal(io.waiting, 0, 'the overtaken fsync returning late starts nothing');

  // The fleet forwarder writes through the same connection: it too ends a cycle first.
  activate(store, 5000, 512);
  await immediate();
  await io.next(); // this cycle's -wal fsync, held
  store.fleetOutbox().recordFailure('unreachable', T0);
  t.same(io.onLoop.slice(3), [`${store.file}-wal`, store.file, `${store.file}-wal`], 'a fleet outbox write settled the cycle');
});

t.test('writes held by a cycle whose fsync stalls are bounded: past the bound the cycle ends on the loop', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  t.teardown(() => store.close());
  await startCycle(t, store, dir, io);
  activate(store, 10_000, 4000);
  t.equal(io.onLoop.length, 0, '4,000 held writes wait for the fsync');
  activate(store, 20_000, 200);
  t.same(io.onLoop, [`${store.file}-wal`, store.file, `${store.file}-wal`], 'past 4,096 the cycle is finished on the loop');
  await immediate();
  t.equal(clientsIn(dir), 512 + 4000 + 200, 'and what it held is committed');
});

t.test('a failed fsync is reported once; its frames are not copied, and the store keeps serving', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const log = recordingLog();
  const store = open(dir, io, { log });
  t.teardown(() => store.close());
  const walSync = await startCycle(t, store, dir, io);
  const dbBefore = bytes(store.file);
  walSync.done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  const dbSync = await io.next();
  t.ok(dbBefore.equals(bytes(store.file)), 'frames the disk did not confirm were not copied');
  dbSync.done();
  const failed = log.lines.filter((l) => l.obj['code'] === 'KMS_ERR_STORE_SYNC_FAILED');
  t.equal(failed.length, 1, 'one error');
  t.same(
    { failures: store.stats().syncFailures, last: store.stats().lastSyncError },
    { failures: 1, last: null },
    'counted, and no longer current once the next fsync (the database file) succeeded',
  );
  t.match(failed[0]?.msg, /fsync of .*-wal failed \(EIO\).*Check the disk/, 'naming the file and what to do');

  io.failing = '-wal';
  activate(store, 3000, 512);
  await immediate();
  await io.next(); // the next cycle's -wal fsync, held
  store.setSetting('b', '2');
  t.equal(store.getSetting('b'), '2', 'a failing fsync on the loop does not fail the read');
  t.equal(log.lines.filter((l) => l.obj['code'] === 'KMS_ERR_STORE_SYNC_FAILED').length, 1, 'and is not reported again');
  t.same(
    { failures: store.stats().syncFailures, last: store.stats().lastSyncError },
    { failures: 2, last: null },
    'but counted (the database file synced after it)',
  );
  store.close();
  t.equal(clientsIn(dir), 1024, 'everything answered is in the file');
});

t.test('close during a cycle finishes it, and whenStopped waits for the fsync still in flight', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  const walSync = await startCycle(t, store, dir, io);
  activate(store, 7000, 100);
  store.close();
  let stopped = false;
  const whenStopped = store.whenStopped().then(() => {
    stopped = true;
  });
  await immediate();
  t.notOk(stopped, 'not stopped while an fsync of one of its files is in flight');
  walSync.done();
  await within(whenStopped, 'the store stopping');
  t.ok(stopped, 'stopped once it returned');
  t.notOk(fs.existsSync(`${store.file}-wal`), 'the last connection removed the -wal file at close');
  t.equal(clientsIn(dir), 612, 'nothing answered was lost');
});

t.test('a commit by another process during the -wal fsync is synced too before anything is copied', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  t.teardown(() => store.close());
  const walSync = await startCycle(t, store, dir, io);
  const other = new Database(store.file);
  t.teardown(() => other.close());
  other.prepare("INSERT INTO settings (key, value) VALUES ('other', 'x')").run();
  walSync.done();
  const again = await io.next();
  t.equal(again.path, `${store.file}-wal`, 'the -wal file is synced again');
  again.done();
  const dbSync = await io.next();
  t.equal(dbSync.path, store.file, 'then the frames are copied and the file synced');
  dbSync.done();
});

t.test('a second server on the same data directory leaves checkpoints to SQLite', async (t) => {
  const dir = tempDataDir(t);
  const first = open(dir, new HeldSyncIo(), { log: recordingLog() });
  t.teardown(() => first.close());
  const second = open(dir, new HeldSyncIo(), { log: recordingLog() });
  t.teardown(() => second.close());
  const setting = (s: SqliteStore, pragma: string): unknown => connectionOf(s).pragma(pragma, { simple: true });
  t.same(
    { synchronous: setting(first, 'synchronous'), autocheckpoint: setting(first, 'wal_autocheckpoint') },
    { synchronous: 0, autocheckpoint: 0 },
    'the server holding the journal makes its own fsyncs',
  );
  t.same(
    { synchronous: setting(second, 'synchronous'), autocheckpoint: setting(second, 'wal_autocheckpoint') },
    { synchronous: 1, autocheckpoint: 1000 },
    'the second keeps synchronous=NORMAL and SQLite checkpointing inside its commits',
  );
});

t.test('close with statements of the open batch already run (a transaction open) commits them and ends cleanly', async (t) => {
  const dir = tempDataDir(t);
  const store = open(dir, new HeldSyncIo());
  activate(store, 0, 200); // one chunk of 64 runs in the next turn, inside a transaction left open
  await immediate();
  t.ok(connectionOf(store).inTransaction, 'a transaction is open when close begins');
  t.doesNotThrow(() => store.close(), 'close does not throw');
  await within(store.whenStopped(), 'the store stopping');
  t.notOk(fs.existsSync(`${store.file}-wal`), 'the last connection removed the -wal file');
  t.equal(clientsIn(dir), 200, 'every write is in the file');
});

t.test('a reader holding an old snapshot lets the -wal file grow, with a warning; once it ends, the file is cut back', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const syncs = { fdatasync: fs.fdatasync, fdatasyncSync: fs.fdatasyncSync }; // the real ones
  const store = open(dir, syncs, { log, walTruncateBytes: 64 * 1024 });
  t.teardown(() => store.close());
  const wal = `${store.file}-wal`;
  const reader = new Database(store.file, { readonly: true });
  t.teardown(() => reader.close());
  reader.prepare('BEGIN').run();
  reader.prepare('SELECT count(*) FROM clients').get(); // the read transaction takes its snapshot here
  activate(store, 0, 2048);
  await until(() => log.lines.find((l) => l.obj['walBytes'] !== undefined), 'the warning about the -wal file', {
    on: [],
    everyMs: 10,
  });
  const grown = fs.statSync(wal).size;
  t.ok(grown >= 3 * 64 * 1024, `the -wal file grew while the reader held its snapshot (${grown} bytes)`);
  t.match(log.lines.find((l) => l.obj['walBytes'] !== undefined)?.msg, /could not be truncated \(a long-running reader\?\)/);

  reader.prepare('COMMIT').run();
  activate(store, 5000, 512);
  const after = await until(() => (fs.statSync(wal).size < grown / 4 ? fs.statSync(wal).size + 1 : undefined), 'the -wal file cut back', {
    on: [],
    everyMs: 10,
  });
  t.ok(after - 1 < grown / 4, `once the reader ended, the file was cut back (${after - 1} bytes)`);
});

t.test('a few writes are checkpointed by the interval timer; no cycle runs while nothing was written', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io, { journalCommitMs: 1, backgroundCheckpointMs: 20, checkpointWrites: 1_000_000 });
  t.teardown(() => store.close());
  activate(store, 0, 5);
  const first = await io.next(); // the commit timer (1 ms), then the checkpoint timer (20 ms)
  t.equal(first.path, dir, 'five writes: a cycle starts on the timer');
  first.done();
  const walSync = await io.next();
  walSync.done();
  (await io.next()).done(); // the database file
  (await io.next()).done(); // the new WAL header
  // Silence has no event to wait on: five timer periods are looked at.
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(io.waiting, 0, 'with nothing written since, no fsync is asked for in five periods');
});

t.test('a commit by another process while the database file is synced appends to the WAL instead of reusing it', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io);
  t.teardown(() => store.close());
  const wal = `${store.file}-wal`;
  const walSync = await startCycle(t, store, dir, io);
  walSync.done();
  const dbSync = await io.next();
  t.equal(dbSync.path, store.file, 'the frames are copied; the database file is being synced');
  const salt = salts(wal);
  const other = new Database(store.file);
  t.teardown(() => other.close());
  other.prepare("INSERT INTO settings (key, value) VALUES ('other', 'x')").run();
  t.equal(salts(wal), salt, 'the other commit did not start the WAL again: the copied frames stay until the file is on disk');
  dbSync.done();
  await immediate();
  t.equal(other.prepare("SELECT value FROM settings WHERE key = 'other'").pluck().get(), 'x', 'and it was committed');
});

t.test('between cycles the WAL is never started again, even after another process checkpointed all it could', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = SqliteStore.open(dir, {
    journalCommitMs: HOUR,
    backgroundCheckpointMs: HOUR,
    checkpointWrites: 1_000_000,
    syncIo: io,
  });
  t.teardown(() => store.close());
  const wal = `${store.file}-wal`;
  t.same(io.onLoop, [wal], 'at open the one-page commit is made and the -wal file synced, on the loop');

  activate(store, 0, 512);
  await immediate(); // the commit
  const other = new Database(store.file);
  t.teardown(() => other.close());
  const copied = (other.pragma('wal_checkpoint(PASSIVE)') as { log: number; checkpointed: number }[])[0]!;
  t.ok(copied.checkpointed < copied.log, 'another process cannot copy past the read transaction held between cycles');
  const salt = salts(wal);
  activate(store, 1000, 512);
  await immediate();
  t.equal(salts(wal), salt, 'so the next commit appends instead of starting the WAL again without its header on disk');
  t.equal(clientsIn(dir), 1024, 'and is in the file');
});

t.test('a one-page restart commit that fails leaves restarts to SQLite (synchronous=NORMAL) until one succeeds', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const log = recordingLog();
  const store = open(dir, io, { log, busyTimeoutMs: 20 });
  t.teardown(() => store.close());
  const synchronous = (): unknown => connectionOf(store).pragma('synchronous', { simple: true });
  const walSync = await startCycle(t, store, dir, io);
  walSync.done();
  const dbSync = await io.next();
  const other = new Database(store.file);
  t.teardown(() => other.close());
  other.prepare('BEGIN IMMEDIATE').run(); // another process's write lock when the cycle ends
  dbSync.done();
  const headerSync = await io.next();
  t.match(log.lines.find((l) => l.level === 'warn')?.msg, /could not start the WAL of .* again/, 'a warning');
  t.equal(synchronous(), 1, 'NORMAL: a restart now carries SQLite’s own header fsync');
  other.prepare('ROLLBACK').run();
  headerSync.done();
  await immediate();

  activate(store, 1000, 512);
  await immediate();
  (await io.next()).done(); // the -wal file
  (await io.next()).done(); // the database file
  (await io.next()).done(); // the new WAL header
  t.equal(synchronous(), 0, 'once a restart commit succeeds, OFF again');
  t.equal(clientsIn(dir), 1024, 'nothing was lost');
});

t.test('another process committing while this server writes nothing still gets its frames checkpointed', async (t) => {
  const dir = tempDataDir(t);
  const io = new HeldSyncIo();
  const store = open(dir, io, { backgroundCheckpointMs: 20 });
  t.teardown(() => store.close());
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(io.waiting, 0, 'an idle server runs no cycle');
  const other = new Database(store.file);
  t.teardown(() => other.close());
  other.prepare("INSERT INTO settings (key, value) VALUES ('cli', 'x')").run();
  const first = await io.next();
  t.ok(first.path === dir || first.path === `${store.file}-wal`, 'the timer starts a cycle for the other process’s commit');
});
