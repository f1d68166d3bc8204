// Red team against storage and recovery: a hostile or damaged request journal at start, odd files
// where the database or the journal should be, and stored client text in the CLI's output. Each
// test names what an attacker (or a broken disk, or a careless admin) does and what must hold.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { decodeRecord, encodeRecord, type JournaledWrite } from '../../src/store/journal-records';
import { refusedEvent, refusedRowOf, servedFacts, servedRow } from '../../src/store/request-rows';
import { DATABASE_FILE_NAME, JOURNAL_FILE_NAME } from '../../src/store/data-dir';
import { obs, recordingLog, tempDataDir, WINDOW } from './observations';
import { WINDOWS_APP } from '../ids';
import { captureIo } from '../cli/commands/inventory-fixture';
import { command as statusCommand } from '../../src/cli/commands/status';
import { command as clientsCommand } from '../../src/cli/commands/clients';
import { command as reportCommand } from '../../src/cli/commands/report';

const T0 = Date.now() - 86_400_000;
const big = { requiredClientCount: 1000 };
/** Long enough that nothing commits by age during a test: what is in the file came from the journal. */
const NEVER: SqliteStoreOptions = { journalCommitMs: 3_600_000 };

const journalOf = (dir: string) => path.join(dir, JOURNAL_FILE_NAME);

function servedLine(seq: number, i: number, over: Parameters<typeof obs>[1] = {}, at = T0 + i): string {
  const o = obs(i, { ...big, ...over });
  const row = servedRow(o, at);
  const facts = servedFacts(o, { activeClients: i, maxRequiredClientCount: 1000 });
  return encodeRecord(seq, { kind: 'served', row, previous: undefined, ...facts, persistRequired: 0, servedMs: at });
}

function rowsIn(dir: string): { clients: number; events: number } {
  const reader = SqliteStore.open(dir, { readonly: true });
  try {
    const db = connectionOf(reader);
    return {
      clients: db.prepare('SELECT count(*) FROM clients').pluck().get() as number,
      events: db.prepare('SELECT count(*) FROM events').pluck().get() as number,
    };
  } finally {
    reader.close();
  }
}

function activate(store: SqliteStore, from: number, n: number): void {
  store.beginBatch();
  for (let i = from; i < from + n; i++) store.recordActivation(obs(i, big), T0 + i, WINDOW);
  store.commitBatch();
}

/** What kill -9 leaves: the files as they are now, the open store never closed, copied to a new directory. */
function crashCopy(t: Parameters<typeof tempDataDir>[0], dir: string): string {
  const copy = tempDataDir(t);
  for (const name of [DATABASE_FILE_NAME, `${DATABASE_FILE_NAME}-wal`, JOURNAL_FILE_NAME]) {
    if (fs.existsSync(path.join(dir, name))) fs.copyFileSync(path.join(dir, name), path.join(copy, name));
  }
  return copy;
}

t.test('a journal line with a sequence number near 2^53 cannot make later answered requests unreplayable', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  fs.writeFileSync(journalOf(dir), servedLine(Number.MAX_SAFE_INTEGER, 1));
  const store = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  t.teardown(() => store.close());
  activate(store, 2, 3); // answered: in the journal, not yet committed
  const lines = fs.readFileSync(journalOf(dir), 'utf8').split('\n').filter(Boolean);
  t.equal(lines.length, 3, 'the three answered requests are in the journal');
  t.ok(
    lines.every((l) => decodeRecord(l) !== undefined),
    'and each line reads back (a replay would otherwise skip an answered request)',
  );
  const committed = rowsIn(dir).clients;
  const copy = crashCopy(t, dir);
  SqliteStore.open(copy, { ...NEVER, log: recordingLog() }).close();
  t.equal(rowsIn(copy).clients, committed + 3, 'after kill -9, every answered machine is stored');
});

t.test('a replayed line from the future (year 9999) is not counted for ever: skipped and reported', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const future = Date.UTC(9999, 0, 1);
  fs.writeFileSync(journalOf(dir), servedLine(1, 1) + servedLine(2, 2, {}, future) + servedLine(3, 3));
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log });
  t.teardown(() => store.close());
  t.equal(store.countSince(WINDOWS_APP, Date.now() - WINDOW, 10_000), 2, 'the two plausible records are counted, not the third');
  t.equal(rowsIn(dir).clients, 2, 'and only they are stored');
  t.match(
    log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED')?.obj,
    { damagedLines: 1 },
    'the skipped line is reported',
  );
});

t.test('replayed lines whose values the host could never have written are skipped, the valid ones kept', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const o = obs(50, big);
  const good = servedRow(o, T0);
  const facts = servedFacts(o, { activeClients: 1, maxRequiredClientCount: 1000 });
  const served = (over: Partial<typeof good>, more: Partial<JournaledWrite> = {}): JournaledWrite =>
    ({
      kind: 'served',
      row: { ...good, ...over },
      previous: undefined,
      ...facts,
      persistRequired: 0,
      servedMs: T0,
      ...more,
    }) as JournaledWrite;
  const refused = refusedEvent(obs(60), 0xc004f042, 'KMS_ERR_UNKNOWN_SKU', T0);
  const hostile: JournaledWrite[] = [
    served({ cmid: 'not-a-guid' }),
    served({ application: '\x1b]0;pwned\x07' }),
    served({ kms_group: `${good.kms_group}\x1b[2J` }),
    served({ workstation: 'w'.repeat(1_000_000) }),
    served({ client_address: 'a'.repeat(100_000) }),
    served({ required_count: -5 }),
    served({ required_count: 2.5 }),
    served({ license_status: 1e300 }),
    served({ now: -1 }),
    served({}, { previous: 'x'.repeat(40) } as Partial<JournaledWrite>),
    { kind: 'refused', row: refusedRowOf({ ...refused, cmid: 'zz' }), event: { ...refused, cmid: 'zz' } },
    { kind: 'refused', row: undefined, event: { ...refused, code: 'x'.repeat(100_000) } },
    { kind: 'refused', row: undefined, event: { ...refused, time_ms: Date.UTC(9999, 0, 1) } },
    { kind: 'setting', key: 'k'.repeat(100_000), value: '' },
  ];
  const text = [encodeRecord(1, served({}))];
  for (const [i, w] of hostile.entries()) text.push(encodeRecord(i + 2, w));
  text.push(encodeRecord(hostile.length + 2, { kind: 'refused', row: refusedRowOf(refused), event: refused }));
  fs.writeFileSync(journalOf(dir), text.join(''));
  const log = recordingLog();
  SqliteStore.open(dir, { ...NEVER, log }).close();
  t.same(rowsIn(dir), { clients: 2, events: 2 }, 'the served and the refused valid records, nothing else');
  t.match(
    log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED')?.obj,
    { damagedLines: hostile.length },
    'every skipped line is counted in the report',
  );
});

t.test('a journal cut short at every byte offset replays exactly its whole lines, never more, never twice', async (t) => {
  const whole = servedLine(1, 1) + servedLine(2, 2);
  const bytes = Buffer.from(whole);
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const pristine = fs.readFileSync(path.join(dir, DATABASE_FILE_NAME));
  let wrong = 0;
  for (let cut = 0; cut <= bytes.length; cut++) {
    fs.writeFileSync(path.join(dir, DATABASE_FILE_NAME), pristine);
    fs.rmSync(path.join(dir, `${DATABASE_FILE_NAME}-wal`), { force: true });
    fs.writeFileSync(journalOf(dir), bytes.subarray(0, cut));
    const store = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
    const counted = store.countSince(WINDOWS_APP, T0 - WINDOW, 10);
    const stored = connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
    store.close();
    const expected = bytes.subarray(0, cut).toString('latin1').split('\n').length - 1;
    if (counted !== expected || stored !== expected || fs.statSync(journalOf(dir)).size !== 0) wrong++;
  }
  t.equal(wrong, 0, `every one of ${bytes.length + 1} cuts gives its whole lines, stored and counted once`);
});

t.test('garbage and a line of megabytes at start: the store opens, keeps the valid lines and reports the rest', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const deep = '['.repeat(4_000_000);
  const wide = `[1,"a"${',0'.repeat(2_000_000)}]`;
  const binary = Buffer.from(Array.from({ length: 65_536 }, (_, i) => (i * 2_654_435_761) >>> 24));
  fs.writeFileSync(
    journalOf(dir),
    Buffer.concat([
      Buffer.from(servedLine(1, 1) + `${deep}\n${wide}\n`),
      binary,
      // A journal of another version: a kind this one does not know, a record with one more field.
      Buffer.from(`\n[3,"z","later"]\n${servedLine(4, 4).replace(/]\n$/, ',"more"]\n')}`),
      Buffer.from(servedLine(5, 2)),
    ]),
  );
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log });
  store.close();
  t.equal(rowsIn(dir).clients, 2, 'both valid records, around the garbage');
  const damaged = log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED');
  t.ok(damaged !== undefined && (damaged.obj['damagedLines'] as number) >= 5, 'the garbage is reported');
});

t.test('the same machine many times in the journal is one machine, its requests all counted', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  fs.writeFileSync(journalOf(dir), [1, 2, 3, 4].map((seq) => servedLine(seq, 7, {}, T0 + seq)).join(''));
  const store = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  t.equal(store.countSince(WINDOWS_APP, T0 - WINDOW, 10), 1, 'counted once');
  const db = connectionOf(store);
  t.equal(db.prepare('SELECT requests FROM clients').pluck().get(), 4, 'its four requests kept');
  store.close();
});

t.test('a journal that is a symbolic link is not followed: the file it names is left as it was', async (t) => {
  const dir = tempDataDir(t);
  const elsewhere = tempDataDir(t);
  const precious = path.join(elsewhere, 'precious.txt');
  fs.writeFileSync(precious, 'the admin data\n');
  fs.symlinkSync(precious, journalOf(dir));
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log });
  activate(store, 1, 3);
  store.close();
  t.equal(fs.readFileSync(precious, 'utf8'), 'the admin data\n', 'not truncated, not appended to');
  t.equal(rowsIn(dir).clients, 3, 'the requests are stored all the same');
  t.ok(
    log.lines.some((l) => l.level === 'warn' && l.msg.includes(`${JOURNAL_FILE_NAME} is not a regular file (a symbolic link`)),
    'and the journal that was not used is named in a warning',
  );
});

t.test('a FIFO where the database should be is refused at once, not waited on', async (t) => {
  const dir = tempDataDir(t);
  const file = path.join(dir, DATABASE_FILE_NAME);
  execFileSync('mkfifo', [file]);
  // Without the fix, opening blocks this process until a writer comes; this child is that writer,
  // 5 s later (twice: serve, then the CLI), so the old code ends the test. It leaves a mark first.
  const came = path.join(dir, 'writer-came');
  const writer = spawn('sh', ['-c', `for i in 1 2; do sleep 5; : > '${came}'; head -c 200 /dev/zero > '${file}'; done`], {
    stdio: 'ignore',
  });
  t.teardown(() => {
    writer.kill();
  });
  t.throws(() => SqliteStore.open(dir, NEVER), { code: 'KMS_ERR_STORE_OPEN', message: /not a regular file/ }, 'serve');
  t.throws(() => SqliteStore.open(dir, { readonly: true }), { code: 'KMS_ERR_STORE_OPEN', message: /not a regular file/ }, 'the CLI');
  t.notOk(fs.existsSync(came), 'answered before the writer came');
});

/** A small tmpfs of its own, so the disk fills for real (ENOSPC on every file); undefined where mounting is not allowed. */
function smallDisk(t: Parameters<typeof tempDataDir>[0], bytes: number): string | undefined {
  const dir = tempDataDir(t);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  t.teardown(() => execFileSync('umount', ['-l', dir], { stdio: 'ignore' }));
  return dir;
}

/** Fills the file system of `dir` to the last byte; returns the filler's path. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(4096, 0x55);
  try {
    for (let i = 0; i < 1_000_000; i++) fs.writeSync(fd, chunk);
  } catch {
    // ENOSPC: full
  }
  for (let i = 0; i < 4096; i++) {
    try {
      fs.writeSync(fd, chunk, 0, 1);
    } catch {
      break;
    }
  }
  fs.closeSync(fd);
  return filler;
}

const MOUNTS = canMount();

/** Whether this process may mount a tmpfs (root in a container or on a CI runner, usually). */
function canMount(): boolean {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-mount-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=65536', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const fullDiskTest =
  'a real full disk (ENOSPC on the journal, the WAL and the database): no answered machine lost, none counted unanswered';
t.test(fullDiskTest, { skip: MOUNTS ? false : 'cannot mount a tmpfs here' }, async (t) => {
  const dir = smallDisk(t, 4 * 1024 * 1024);
  if (dir === undefined) throw new Error('mounting a tmpfs failed');
  const log = recordingLog();
  const store = SqliteStore.open(dir, {
    journalCommitMs: 1,
    log,
    retryIntervalMs: 0,
    retryTimerMs: 3_600_000,
    pendingLimits: { maxMachines: 40, maxEvents: 60 },
  });
  const answered = new Set<string>();
  const refused = new Set<string>();
  const serve = (from: number, n: number) => {
    store.beginBatch();
    const turn: string[] = [];
    for (let i = from; i < from + n; i++) {
      const o = obs(i, big);
      if (store.acceptsActivation(o)) {
        store.recordActivation(o, T0 + i, WINDOW);
        turn.push(o.clientMachineId);
      } else {
        store.recordRefusal(o, 0xc004d104, 'KMS_ERR_STORE_BACKLOG_FULL', T0 + i);
        refused.add(o.clientMachineId);
      }
    }
    store.commitBatch();
    for (const c of turn) answered.add(c);
  };
  for (let i = 1; i <= 30; i += 3) serve(i, 3);
  const beforeFull = new Set(answered); // in the journal; the batch's commit is still to come
  const filler = fill(dir);
  let crashed: string | undefined;
  for (let i = 31; i <= 400; i += 3) {
    serve(i, 3);
    if (i === 91) crashed = crashCopy(t, dir);
  }
  t.ok(store.stats().writeFailures > 0 || !store.stats().journalInUse || store.hasPendingWrites, 'the disk was full');
  t.ok(refused.size > 0, 'past the bound, new machines were refused');
  fs.rmSync(filler);
  t.ok(store.flushPending(), 'space is back: everything pending is written');
  store.close();
  const reader = SqliteStore.open(dir, { readonly: true });
  const stored = new Set(
    connectionOf(reader).prepare('SELECT cmid FROM clients WHERE last_counted_ms IS NOT NULL').pluck().all() as string[],
  );
  reader.close();
  t.same(
    [...answered].filter((c) => !stored.has(c)),
    [],
    'every answered machine is stored',
  );
  t.same(
    [...refused].filter((c) => stored.has(c)),
    [],
    'no refused machine is counted',
  );
  // kill -9 during the outage: what the journal held before the disk filled is replayed.
  const again = SqliteStore.open(crashed!, { log: recordingLog(), journalCommitMs: 1 });
  again.close();
  const reread = SqliteStore.open(crashed!, { readonly: true });
  const kept = new Set(connectionOf(reread).prepare('SELECT cmid FROM clients').pluck().all() as string[]);
  reread.close();
  t.same(
    [...beforeFull].filter((c) => !kept.has(c)),
    [],
    'a crash during the outage loses none answered before it',
  );
});

t.test('a database with damaged pages: every command that reads it says so in one line, with what to do', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir);
  for (let i = 1; i <= 3000; i++) store.recordActivation(obs(i, { workstationName: `pc-${i}`.padEnd(60, '.') }), T0 + i, WINDOW);
  store.close();
  const file = path.join(dir, DATABASE_FILE_NAME);
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(size / 2), 0, size / 2, size / 4); // the middle half zeroed, header intact
  fs.closeSync(fd);
  for (const [name, command] of [
    ['status', statusCommand],
    ['clients', clientsCommand],
    ['report', reportCommand],
  ] as const) {
    const c = captureIo();
    const code = await command.run(['--data-dir', dir], c.io).catch((err: Error) => `threw ${err.message}`);
    t.equal(code, 1, `${name}: exit 1`);
    t.match(c.stderr(), /^kms-appliance \w+: .*damaged.*backup.*\[KMS_ERR_STORE_CORRUPT\]\n$/, `${name}: one line saying what to do`);
  }
  t.throws(() => SqliteStore.open(dir), { code: 'KMS_ERR_STORE_CORRUPT', message: /backup/ }, 'serve refuses it, saying what to do');
  let message = '';
  try {
    SqliteStore.open(dir);
  } catch (err) {
    message = (err as Error).message;
  }
  t.notMatch(message, /\n/, 'in one line (quick_check lists up to a hundred problems, one a line)');
  t.equal(fs.statSync(file).size, size, 'and leaves it as it was');
});

t.test(
  'a data directory on a read-only file system: serve and the CLI say why and what to do',
  { skip: MOUNTS ? false : 'cannot mount a tmpfs here' },
  async (t) => {
    const dir = smallDisk(t, 4 * 1024 * 1024);
    if (dir === undefined) throw new Error('mounting a tmpfs failed');
    const store = SqliteStore.open(dir, NEVER);
    activate(store, 1, 3);
    store.close();
    const before = fs.readFileSync(path.join(dir, DATABASE_FILE_NAME));
    execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'ignore' });
    t.throws(
      () => SqliteStore.open(dir, NEVER),
      { code: 'KMS_ERR_STORE_OPEN', message: /read-only file system \(EROFS\).*remount it read-write or point store\.dataDir/ },
      'serve: the directory, the reason and the remedy',
    );
    const c = captureIo();
    t.equal(await statusCommand.run(['--data-dir', dir], c.io), 1, 'status: exit 1');
    t.match(c.stderr(), /read-only file system \(EROFS\).*\[KMS_ERR_STORE_OPEN\]\n$/, 'status: the same reason, one line');
    t.same(fs.readFileSync(path.join(dir, DATABASE_FILE_NAME)), before, 'the file is as it was');
  },
);

t.test('invisible tag characters and other format characters in a stored name are shown escaped by status and clients', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir);
  // "pc-7" with "ignore previous" hidden in tag characters, a Mongolian vowel separator and an
  // interlinear annotation: none shows on a terminal, all pass for the name.
  const hidden = [...'ignore previous'].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join('');
  const name = `pc-7\u{e0001}${hidden}\u180e\u0600.example`;
  store.recordActivation(obs(7, { workstationName: name }), Date.now() - 1000, WINDOW);
  // The same machine under a second name: status lists both.
  store.recordActivation(obs(7, { workstationName: `${name}-b` }), Date.now(), WINDOW);
  store.close();
  for (const [label, command, args] of [
    ['status', statusCommand, []],
    ['clients', clientsCommand, []],
    ['clients --format csv', clientsCommand, ['--format', 'csv']],
  ] as const) {
    const c = captureIo();
    t.equal(await command.run([...args, '--data-dir', dir], c.io), 0, `${label}: runs`);
    t.notMatch(c.stdout(), /\p{Cf}/u, `${label}: no format character reaches the terminal`);
    t.match(c.stdout(), 'pc-7\\u{e0001}', `${label}: shown escaped`);
  }
  const c = captureIo();
  t.equal(await clientsCommand.run(['--json', '--data-dir', dir], c.io), 0);
  t.notMatch(c.stdout(), /\p{Cf}/u, 'JSON: escaped as well');
  t.equal((JSON.parse(c.stdout()) as { workstation: string }[])[0]?.workstation, `${name}-b`, 'JSON: the exact name all the same');
});

t.test(
  'a disk full at start: serve and the CLI say so and what to do; the journal waits for space, then replays once',
  { skip: MOUNTS ? false : 'cannot mount a tmpfs here' },
  async (t) => {
    const dir = smallDisk(t, 4 * 1024 * 1024);
    if (dir === undefined) throw new Error('mounting a tmpfs failed');
    SqliteStore.open(dir, NEVER).close();
    const journal = [1, 2, 3].map((i) => servedLine(i, i)).join('');
    fs.writeFileSync(journalOf(dir), journal);
    const database = fs.readFileSync(path.join(dir, DATABASE_FILE_NAME));
    const filler = fill(dir);
    t.throws(
      () => SqliteStore.open(dir, NEVER),
      { code: 'KMS_ERR_STORE_OPEN', message: /is full \(\d+ bytes free\).*free disk space$/ },
      'serve: the cause and the remedy, not a bare "disk I/O error"',
    );
    const c = captureIo();
    t.equal(await statusCommand.run(['--data-dir', dir], c.io), 1, 'status: exit 1');
    t.match(c.stderr(), /is full \(\d+ bytes free\).*free disk space \[KMS_ERR_STORE_OPEN\]\n$/, 'status: the same, one line');
    t.equal(fs.readFileSync(journalOf(dir), 'utf8'), journal, 'the journal is kept');
    t.same(fs.readFileSync(path.join(dir, DATABASE_FILE_NAME)), database, 'the database too');
    fs.rmSync(filler);
    const again = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
    t.equal(again.countSince(WINDOWS_APP, T0 - WINDOW, 10), 3, 'space is back: the journal is replayed');
    again.close();
    t.same(rowsIn(dir), { clients: 3, events: 3 }, 'stored once');
    t.equal(fs.statSync(journalOf(dir)).size, 0, 'and the journal emptied');
  },
);

t.test('ids in a tampered database reach the terminal inert too (status prints group names made from them)', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir);
  store.recordActivation(obs(1), Date.now() - 1000, WINDOW);
  store.recordRefusal(obs(2), 0xc004f042, 'KMS_ERR_UNKNOWN_SKU', Date.now() - 1000);
  const db = connectionOf(store);
  db.prepare("UPDATE clients SET kms_group = '\x1b]0;pwned\x07\x1b[2J'").run();
  db.prepare("UPDATE events SET kms_group = '\x1b]0;pwned\x07\x1b[2J'").run();
  store.close();
  const c = captureIo();
  t.equal(await statusCommand.run(['--data-dir', dir], c.io), 0);
  t.notMatch(c.stdout(), /\x1b/, 'no escape sequence reaches the terminal');
  t.match(c.stdout(), 'unknown KMS group \\x1b]0;pwned', 'shown escaped');
});

t.test('a journal of a million empty or junk lines is skipped cheaply: only lines shaped like records are parsed', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  // 16 MB of newlines took 100 s and 1.4 GB at start: one array entry and one JSON.parse exception a line.
  const junk = Buffer.concat([Buffer.alloc(1_000_000, 0x0a), Buffer.from('x\n'.repeat(100_000))]);
  fs.writeFileSync(journalOf(dir), Buffer.concat([Buffer.from(servedLine(1, 1)), junk, Buffer.from(servedLine(2, 2))]));
  const parse = JSON.parse;
  let parsed = 0;
  JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
    parsed++;
    return parse(text, reviver);
  }) as typeof JSON.parse;
  const log = recordingLog();
  try {
    SqliteStore.open(dir, { ...NEVER, log }).close();
  } finally {
    JSON.parse = parse;
  }
  t.ok(parsed < 100, `${parsed} lines parsed, not 1,100,002`);
  t.equal(rowsIn(dir).clients, 2, 'both records replayed');
  t.match(log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED')?.obj, { damagedLines: 1_100_000 }, 'the junk reported');
});

t.test('a journal line written twice (a copy, a doubled block) is replayed once: numbers only increase in a journal', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const a = servedLine(1, 1);
  const b = servedLine(2, 2);
  fs.writeFileSync(journalOf(dir), a + b + a + b + servedLine(3, 3));
  const log = recordingLog();
  SqliteStore.open(dir, { ...NEVER, log }).close();
  const reader = SqliteStore.open(dir, { readonly: true });
  const requests = connectionOf(reader).prepare('SELECT SUM(requests) FROM clients').pluck().get();
  reader.close();
  t.same(rowsIn(dir), { clients: 3, events: 3 }, 'one event per request answered');
  t.equal(requests, 3, 'and one request each');
  const damaged = log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED');
  t.match(damaged?.obj, { damagedLines: 2, firstDamagedLine: 3 }, 'the copies reported, with where they start');
  t.match(damaged?.msg, 'the first is line 3');
});

t.test('the database refuses writes but the journal takes them: kill -9 during the outage loses no answered machine', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, { ...NEVER, log: recordingLog(), retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000 });
  t.teardown(() => store.close());
  for (let i = 1; i <= 60; i += 3) activate(store, i, 3);
  store.prune(); // committed
  // SQLITE_FULL from the database file alone, as when it is damaged or another process holds its lock.
  const db = connectionOf(store);
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 61;
  while (!store.hasPendingWrites && n < 3000) {
    activate(store, n, 25);
    n += 25;
    store.prune();
  }
  t.ok(store.hasPendingWrites, 'the database refuses writes');
  const answered: string[] = [];
  for (let i = n; i < n + 30; i += 3) {
    store.beginBatch();
    for (let j = i; j < i + 3; j++) {
      const o = obs(j, big);
      if (store.acceptsActivation(o)) {
        store.recordActivation(o, T0 + j, WINDOW);
        answered.push(o.clientMachineId);
      }
    }
    store.commitBatch();
  }
  t.equal(answered.length, 30, 'answered from memory during the outage');
  const copy = crashCopy(t, dir);
  SqliteStore.open(copy, { ...NEVER, log: recordingLog() }).close();
  const reader = SqliteStore.open(copy, { readonly: true });
  const stored = new Set(connectionOf(reader).prepare('SELECT cmid FROM clients').pluck().all() as string[]);
  reader.close();
  t.same(
    answered.filter((c) => !stored.has(c)),
    [],
    'after kill -9, every machine answered during the outage is stored',
  );
  t.equal(stored.size, n + 29, 'and every one before it, once');
  db.pragma('max_page_count = 1073741823');
  t.ok(store.flushPending(), 'the outage ends');
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'and the journal is emptied');
});

t.test('a FIFO or directory where the -wal or -shm file should be is refused at start by name, not met as I/O errors later', async (t) => {
  for (const [suffix, make] of [
    ['-wal', (f: string) => execFileSync('mkfifo', [f])],
    ['-shm', (f: string) => fs.mkdirSync(f)],
  ] as const) {
    const dir = tempDataDir(t);
    SqliteStore.open(dir).close();
    make(path.join(dir, `${DATABASE_FILE_NAME}${suffix}`));
    const expected = { code: 'KMS_ERR_STORE_OPEN', message: new RegExp(`${DATABASE_FILE_NAME}${suffix} is not a regular file`) };
    t.throws(() => SqliteStore.open(dir, NEVER), expected, `serve: ${suffix}`);
    const c = captureIo();
    t.equal(await statusCommand.run(['--data-dir', dir], c.io), 1, `status: ${suffix}`);
    t.match(c.stderr(), `${DATABASE_FILE_NAME}${suffix} is not a regular file`, `status names it: ${suffix}`);
  }
});
