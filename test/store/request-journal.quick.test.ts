// The request journal (src/store/request-journal.ts): a group commit is durable once its lines are
// appended, SQLite commits later, a restart replays what a crash left (once, never twice), a
// damaged or cut-short journal gives up only its bad lines, and a journal that cannot be written
// makes the store commit every group as it did without one.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { decodeRecord, encodeRecord, RecordLines, type JournaledWrite } from '../../src/store/journal-records';
import { refusedEvent, refusedRowOf, servedFacts, servedRow } from '../../src/store/request-rows';
import { NODE_JOURNAL_IO, type JournalIo } from '../../src/store/request-journal';
import { JOURNAL_FILE_NAME } from '../../src/store/data-dir';
import { cmid, obs, recordingLog, tempDataDir, WINDOW } from './observations';
import { seededRandom } from '../prng';
import { isDeepStrictEqual } from 'node:util';

/** Equal as values, whatever the key order; an absent key and an undefined one alike. */
const sameValue = (a: unknown, b: unknown): boolean => isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));

const T0 = Date.now() - 86_400_000;
const big = { requiredClientCount: 1000 };
/** Long enough that nothing commits by age during a test: what is in the file came from the journal. */
const NEVER = { journalCommitMs: 3_600_000 };

const journalOf = (dir: string) => path.join(dir, JOURNAL_FILE_NAME);
const linesOf = (dir: string) =>
  fs
    .readFileSync(journalOf(dir), 'utf8')
    .split('\n')
    .filter((l) => l !== '');

function rowsIn(dir: string): { clients: number; events: number; requests: number } {
  const reader = SqliteStore.open(dir, { readonly: true });
  try {
    const db = connectionOf(reader);
    return {
      clients: db.prepare('SELECT count(*) FROM clients').pluck().get() as number,
      events: db.prepare('SELECT count(*) FROM events').pluck().get() as number,
      requests: (db.prepare('SELECT COALESCE(SUM(requests), 0) FROM clients').pluck().get() as number) ?? 0,
    };
  } finally {
    reader.close();
  }
}

/** n activations, one group commit of `per` requests at a time, as the server's gate makes them. */
function activate(store: SqliteStore, from: number, n: number, per = 3): void {
  for (let i = from; i < from + n; i += per) {
    store.beginBatch();
    for (let j = i; j < Math.min(i + per, from + n); j++) store.recordActivation(obs(j, big), T0 + j, WINDOW);
    store.commitBatch();
  }
}

t.test('every kind of write reads back from its line as the same write', async (t) => {
  const o = obs(7, { previousClientMachineId: cmid(6), workstationName: 'pc "7"\u202e\n.example', requestTimeMs: 1.5e12 + 0.75 });
  const row = servedRow(o, T0);
  const writes: JournaledWrite[] = [
    {
      kind: 'served',
      row,
      previous: cmid(6),
      ...servedFacts(o, { activeClients: 9, maxRequiredClientCount: 5 }),
      persistRequired: 25,
      servedMs: T0,
    },
    {
      kind: 'served',
      row,
      previous: undefined,
      ...servedFacts(o, { activeClients: 3, maxRequiredClientCount: 1 }),
      persistRequired: 0,
      servedMs: T0,
    },
    {
      kind: 'refused',
      row: refusedRowOf(refusedEvent(o, 0xc004f042, 'KMS_ERR_X', T0)),
      event: refusedEvent(o, 0xc004f042, 'KMS_ERR_X', T0),
    },
    { kind: 'refused', row: undefined, event: refusedEvent({ clientAddress: '::1' }, 0xc004f06c, 'KMS_ERR_Y', T0) },
    { kind: 'setting', key: 'host.epid', value: 'x\ny' },
  ];
  writes.forEach((w, i) => {
    const line = encodeRecord(i + 1, w);
    t.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, `${w.kind} is one line`);
    t.same(decodeRecord(line.slice(0, -1)), { seq: i + 1, write: w }, `${w.kind} ${i} round-trips`);
  });
  // A turn's lines, written into one growing buffer, are those same lines one after the other.
  const lines = new RecordLines();
  const expected: string[] = [];
  for (let i = 0; i < 200; i++) {
    // Long, escaped, multi-byte values too.
    const w: JournaledWrite = i % 7 === 6 ? { kind: 'setting', key: 'k', value: 'é"\u2028'.repeat(i) } : writes[i % writes.length]!;
    lines.add(1000 + i, w);
    expected.push(encodeRecord(1000 + i, w));
    if (i % 70 === 69) t.equal(lines.take().toString(), expected.splice(0).join(''), `a turn of lines up to ${i}`);
  }
  t.notOk(lines.empty);
  const rest = lines.take().toString();
  t.equal(rest, expected.join(''));
  t.ok(lines.empty, 'take() leaves nothing behind');
  t.same(
    rest
      .split('\n')
      .slice(0, -1)
      .map((l) => decodeRecord(l)?.seq),
    Array.from({ length: 60 }, (_, k) => 1140 + k),
    'each line decodes',
  );
  const served = encodeRecord(3, writes[0]!).slice(0, -1);
  for (const bad of [
    served.slice(0, -5),
    '',
    '{}',
    '[0,"a"]',
    served.replace('[3,', '[3.5,'),
    served.replace('"a"', '"z"'),
    served.replace(`"${cmid(7)}"`, '7'),
    served.replace(/,\d+\]$/, ',null]'),
  ]) {
    t.equal(decodeRecord(bad), undefined, `not a record: ${bad.slice(0, 40)}…`);
  }
});

t.test('client-chosen text of any kind comes back from a journal line unchanged (seeded)', async (t) => {
  const seed = 0x1e_7e_4a;
  const random = seededRandom(seed);
  const alphabet = [...'ab.-_ "\\/\x00\x01\x1f\x7f\x85\u00ad\u200e\u2028\u202e\ufeffé日💻\ud800\udfff'];
  const text = (max: number) => {
    let s = '';
    for (let i = Math.floor(random() * max); i > 0; i--) s += alphabet[Math.floor(random() * alphabet.length)];
    return s;
  };
  const lines = new RecordLines();
  const writes: JournaledWrite[] = [];
  for (let i = 0; i < 300; i++) {
    // Ids and codes are the host's own (a GUID the codec formats, a code of the registry): a line
    // holding anything else is refused at replay (red-team-storage.test.ts).
    const o = obs(i, { workstationName: text(64), clientAddress: text(20), previousClientMachineId: cmid(i + 1000) });
    const row = servedRow(o, T0 + i);
    const refusal = refusedEvent(o, 0xc004f042, `KMS_"\\/${i}`, T0);
    writes.push(
      i % 3 === 2
        ? { kind: 'refused', row: refusedRowOf(refusal), event: refusal }
        : {
            kind: 'served',
            row,
            previous: undefined,
            ...servedFacts(o, { activeClients: i, maxRequiredClientCount: 5 }),
            persistRequired: 0,
            servedMs: T0,
          },
    );
    lines.add(i + 1, writes[i]!);
  }
  const back = lines
    .take()
    .toString('utf8')
    .split('\n')
    .slice(0, -1)
    .map((l) => decodeRecord(l));
  const differing = back.flatMap((r, i) => (sameValue(r, { seq: i + 1, write: writes[i] }) ? [] : [i]));
  t.same(differing.slice(0, 3), [], `seed ${seed}: 300 writes, every line decodes to its write`);
});

t.test('a group is durable in the journal first and in SQLite at the commit; the journal is then emptied', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, NEVER);
  activate(store, 1, 10);
  t.equal(rowsIn(dir).clients, 0, 'another connection sees nothing yet: the transaction is open');
  t.equal(linesOf(dir).length, 10, 'one journal line per answered request');
  t.equal(store.countSince(obs(1).applicationId, T0 - WINDOW, 10_000), 10, 'counting does not wait for the commit');
  store.prune(); // the hourly prune commits what is open first
  t.same(rowsIn(dir), { clients: 10, events: 10, requests: 10 }, 'committed');
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'and the journal emptied');
  activate(store, 11, 5);
  store.close();
  t.same(rowsIn(dir), { clients: 15, events: 15, requests: 15 }, 'close commits the rest');
  t.equal(fs.statSync(journalOf(dir)).size, 0);
});

t.test("a read on the store's own connection sees the writes whose statements wait for the commit", async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, NEVER);
  t.teardown(() => store.close());
  store.beginBatch();
  store.setSetting('site.name', 'branch 7');
  store.commitBatch();
  t.equal(linesOf(dir).length, 1, 'journaled');
  t.equal(store.getSetting('site.name'), 'branch 7', 'and read back before any commit');
});

t.test('the transaction commits once it is journalCommitMs old', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, { journalCommitMs: 5 });
  t.teardown(() => store.close());
  activate(store, 1, 4);
  const opened = performance.now();
  while (performance.now() - opened < 10); // older than journalCommitMs, without letting a timer run
  activate(store, 5, 1, 1);
  t.equal(rowsIn(dir).clients, 0, 'the group that finds it old is answered first');
  await new Promise(setImmediate);
  t.equal(rowsIn(dir).clients, 5, 'and commits it right after');
  activate(store, 6, 2, 2);
  t.equal(rowsIn(dir).clients, 5, 'the next one opens a new transaction');
  await new Promise((resolve) => setTimeout(resolve, 40));
  t.equal(rowsIn(dir).clients, 7, 'and a timer commits it when no request comes');
});

t.test('a restart replays what a crash left in the journal, once', async (t) => {
  const dir = tempDataDir(t);
  const first = SqliteStore.open(dir, NEVER);
  activate(first, 1, 6);
  first.close();
  // What the journal would have held had the process died before the commit above (seqs 1–6),
  // and a crash after it: six requests answered by the next run (seqs 7–12) never committed.
  const committed = [1, 2, 3, 4, 5, 6].map((i) => ({ i, seq: i }));
  const crashed = [7, 8, 9, 10, 11, 12].map((i) => ({ i, seq: i }));
  const line = ({ i, seq }: { i: number; seq: number }) => {
    const o = obs(i, big);
    const row = servedRow(o, T0 + i);
    const facts = servedFacts(o, { activeClients: i, maxRequiredClientCount: 1000 });
    return encodeRecord(seq, { kind: 'served', row, previous: undefined, ...facts, persistRequired: 0, servedMs: T0 + i });
  };
  fs.writeFileSync(journalOf(dir), [...committed, ...crashed].map(line).join(''));
  const log = recordingLog();
  const second = SqliteStore.open(dir, { ...NEVER, log });
  t.same(rowsIn(dir), { clients: 12, events: 12, requests: 12 }, 'the six lost ones are stored, the six committed ones not twice');
  t.equal(second.countSince(obs(1).applicationId, T0 - WINDOW, 10_000), 12, 'and counted');
  const replayed = log.lines.find((l) => l.obj['event'] === 'store-journal-replayed');
  t.equal(replayed?.obj['requests'], 6, 'the replay is logged with how many writes it took');
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'the journal is empty once they are committed');
  activate(second, 13, 3);
  t.match(decodeRecord(linesOf(dir)[0]!), { seq: 13 }, 'numbering goes on after the highest seq seen');
  second.close();
  const third = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  third.close();
  t.same(rowsIn(dir), { clients: 15, events: 15, requests: 15 });
});

t.test('damaged lines and a cut-short end are skipped, every whole record is replayed', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  const lines = [1, 2, 3].map((i) => {
    const o = obs(i, big);
    const row = servedRow(o, T0 + i);
    return encodeRecord(i, {
      kind: 'served',
      row,
      previous: undefined,
      ...servedFacts(o, { activeClients: i, maxRequiredClientCount: 1000 }),
      persistRequired: 0,
      servedMs: T0 + i,
    });
  });
  const torn = lines[2]!.slice(0, 30);
  fs.writeFileSync(journalOf(dir), `${lines[0]}\u0000\u0000garbage\n${lines[1]}${torn}`);
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log });
  t.equal(rowsIn(dir).clients, 2, 'the two whole records');
  const damaged = log.lines.find((l) => l.obj['code'] === 'KMS_ERR_STORE_JOURNAL_DAMAGED');
  t.match(damaged?.obj, { damagedLines: 1, tornBytes: torn.length }, 'the damage is reported with its size');
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'the journal is emptied after the replay');
  activate(store, 10, 2);
  t.equal(linesOf(dir).length, 2, 'and takes whole lines again');
  store.close();
});

t.test('a torn end is cut off at open, so the next append is not glued to it', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, NEVER).close();
  fs.writeFileSync(journalOf(dir), '[99,"a","cut sho');
  const store = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  activate(store, 1, 2);
  t.same(
    linesOf(dir).map((l) => decodeRecord(l)?.seq),
    [1, 2],
    'two whole records and nothing else',
  );
  store.close();
});

/** File operations that fail like a full disk while `full` is set. */
function fillableIo(): JournalIo & { full: boolean; cutFails: boolean; writes: number } {
  const io = {
    full: false,
    cutFails: false,
    writes: 0,
    write(fd: number, data: Buffer): number {
      io.writes++;
      if (!io.full) return NODE_JOURNAL_IO.write(fd, data);
      // Half the bytes fit, as on a disk that fills up mid-write.
      NODE_JOURNAL_IO.write(fd, data.subarray(0, data.length >> 1));
      return data.length >> 1;
    },
    truncate(fd: number, length: number): void {
      if (io.cutFails) throw Object.assign(new Error('EIO: i/o error, ftruncate'), { code: 'EIO' });
      NODE_JOURNAL_IO.truncate(fd, length);
    },
  };
  return io;
}

t.test('when the journal cannot take a group, the group is committed to SQLite instead', async (t) => {
  const dir = tempDataDir(t);
  const io = fillableIo();
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log, journalIo: io } satisfies SqliteStoreOptions);
  t.teardown(() => store.close());
  activate(store, 1, 3);
  t.equal(rowsIn(dir).clients, 0, 'journaled, not committed');
  io.full = true;
  activate(store, 4, 6);
  t.equal(rowsIn(dir).clients, 9, 'each group the journal refused was committed before its replies');
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'the half-written line was cut off (and the committed ones emptied)');
  t.equal(log.lines.filter((l) => l.msg.includes('cannot append to the request journal')).length, 1, 'one warning per outage');
  io.full = false;
  activate(store, 10, 3);
  t.equal(rowsIn(dir).clients, 9, 'journaled again once it can be written');
  t.equal(linesOf(dir).length, 3);
});

t.test('a journal that cannot be cut back is no longer used, and nothing is lost', async (t) => {
  const dir = tempDataDir(t);
  const io = fillableIo();
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log, journalIo: io });
  activate(store, 1, 3);
  t.equal(store.stats().journalInUse, true, 'in use while it can be written');
  io.full = true;
  io.cutFails = true;
  activate(store, 4, 3);
  t.ok(
    log.lines.some((l) => l.level === 'error' && l.msg.includes('no longer used')),
    'said loudly',
  );
  t.equal(store.stats().journalInUse, false, 'and reported to the metrics');
  t.equal(rowsIn(dir).clients, 6, 'committed instead');
  const writes = io.writes;
  activate(store, 7, 3);
  t.equal(io.writes, writes, 'no more appends');
  t.equal(rowsIn(dir).clients, 9, 'every group committed on its own');
  store.close();
  // The journal still ends in a torn line; the next start skips it and stores nothing twice.
  const again = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  again.close();
  t.same(rowsIn(dir), { clients: 9, events: 9, requests: 9 });
});

t.test('a journal path that cannot be opened, or is not a regular file, is not used', async (t) => {
  for (const [what, make, reason] of [
    ['a directory', (f: string) => fs.mkdirSync(f), 'cannot open the request journal'],
    ['a device', (f: string) => fs.symlinkSync('/dev/null', f), 'is not a regular file'],
  ] as const) {
    const dir = tempDataDir(t);
    make(journalOf(dir));
    const log = recordingLog();
    const store = SqliteStore.open(dir, { ...NEVER, log });
    activate(store, 1, 3);
    t.equal(rowsIn(dir).clients, 3, `${what}: groups commit on their own`);
    t.ok(
      log.lines.some((l) => l.level === 'warn' && l.msg.includes(reason)),
      `${what}: the reason is logged`,
    );
    store.close();
  }
});

t.test('a commit that fails (disk full) keeps the batch in memory and in the journal until it is written', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log, retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000 });
  activate(store, 1, 50);
  store.prune();
  const db = connectionOf(store);
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 51;
  while (!store.hasPendingWrites && n < 5000) {
    activate(store, n, 25, 25);
    n += 25;
    store.prune();
  }
  t.ok(store.hasPendingWrites, 'the disk filled up at a commit');
  const journaled = linesOf(dir).length;
  t.ok(journaled > 0, `the journal keeps the ${journaled} lines of what failed`);
  db.pragma('max_page_count = 1073741823');
  t.equal(store.flushPending(), true);
  t.equal(fs.statSync(journalOf(dir)).size, 0, 'emptied once they are written');
  store.close();
  t.equal(rowsIn(dir).clients, n - 1, 'every answered machine is stored, once');
  t.equal(rowsIn(dir).requests, n - 1);
});

t.test('a second store on the same data directory leaves the journal to the first', async (t) => {
  const dir = tempDataDir(t);
  const first = SqliteStore.open(dir, NEVER);
  activate(first, 1, 3);
  first.prune(); // committed, journal emptied
  activate(first, 4, 3);
  t.equal(linesOf(dir).length, 3, 'the first store journals what it answers');
  const log = recordingLog();
  const second = SqliteStore.open(dir, { ...NEVER, log, busyTimeoutMs: 0 });
  t.equal(second.stats().journalInUse, false, 'the second does not use it');
  t.ok(
    log.lines.some((l) => l.level === 'warn' && l.msg.includes('another process serves from this data directory')),
    'and says why',
  );
  t.equal(linesOf(dir).length, 3, 'nor replays or empties it');
  second.close();
  first.close();
  t.same(rowsIn(dir), { clients: 6, events: 6, requests: 6 });
  const third = SqliteStore.open(dir, { ...NEVER, log: recordingLog() });
  t.equal(third.stats().journalInUse, true, 'the lock goes with the store that held it');
  third.close();
});

t.test('the waiting statements run in chunks after the replies, not only at the commit', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const store = SqliteStore.open(dir, { ...NEVER, log, retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000 });
  t.teardown(() => store.close());
  // A full file makes running the statements fail: that shows when they run.
  const db = connectionOf(store);
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  activate(store, 1, 10, 10);
  await new Promise(setImmediate);
  t.equal(store.hasPendingWrites, false, 'ten waiting statements wait for the commit');
  activate(store, 11, 60, 10);
  t.equal(store.hasPendingWrites, false, 'nothing ran during the turns');
  await new Promise(setImmediate);
  t.equal(store.hasPendingWrites, true, 'seventy ran (and met the full disk) right after the turn, before any commit');
  t.equal(store.countSince(obs(1).applicationId, T0 - WINDOW, 10_000), 70, 'every answered machine still counted');
  t.equal(linesOf(dir).length, 70, 'and in the journal');
  db.pragma('max_page_count = 1073741823');
  t.equal(store.flushPending(), true);
  t.equal(rowsIn(dir).clients, 70);
});
