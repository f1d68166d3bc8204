// A full disk (simulated with PRAGMA max_page_count, which makes SQLite fail with SQLITE_FULL
// exactly as a full file system does) must not stop the host: one error, answers go on from
// stored + pending, everything is written once space returns, nothing stored is lost.

import t from 'tap';
type Tap = Pick<typeof t, 'equal'>;
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteStore } from '../../src/store/sqlite-store';
import { cmid, obs, recordingLog, tempDataDir, WINDOW } from './observations';

const T0 = Date.now() - 86_400_000; // recent: reopening prunes events older than the retention
// Threshold 1000: the cap (2000) stays above every count in these tests, so counts are exact.
const big = { requiredClientCount: 1000 };

function fillUntilFull(t: Tap, store: SqliteStore, from: number): number {
  const db = store.connection;
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = from;
  // Free pages may absorb a few writes before one needs a new page.
  while (!store.hasPendingWrites && n < from + 5000) {
    t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n);
    n++;
  }
  return n;
}

t.test('disk full: one error, counting goes on, recovery on the next write, nothing lost', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const store = SqliteStore.open(dir, { log, retryIntervalMs: 0, retryTimerMs: 3_600_000 });
  for (let i = 1; i <= 50; i++) store.recordActivation(obs(i, big), T0 + i, WINDOW);
  let n = fillUntilFull(t, store, 51);
  t.ok(store.hasPendingWrites, 'the limit was hit');

  // The outage goes on: distinct machines keep counting, repeats do not, refusals are kept.
  const firstPending = n - 1;
  for (const end = n + 200; n < end; n++) {
    t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n, `machine ${n} during the outage`);
  }
  t.equal(store.recordActivation(obs(3, big), T0 + n, WINDOW).activeClients, n - 1, 'a stored machine is not counted twice');
  t.equal(store.recordActivation(obs(firstPending, big), T0 + n, WINDOW).activeClients, n - 1, 'nor a pending one');
  store.recordRefusal(obs(9000), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', T0 + n);
  store.setSetting('epid:206', '03612-00206-556-123727-03-1033-17763.0000-2972018');
  t.equal(store.getSetting('epid:206'), '03612-00206-556-123727-03-1033-17763.0000-2972018');

  const errors = log.lines.filter((l) => l.level === 'error');
  t.equal(errors.length, 1, 'exactly one error for the whole outage');
  t.match(errors[0]?.obj, { code: 'KMS_ERR_STORE_WRITE_FAILED', file: store.file, sqliteCode: 'SQLITE_FULL' });
  t.ok(errors[0]?.msg.includes(store.file), 'the message names the file');

  // Space returns: the next write stores everything.
  store.connection.pragma('max_page_count = 1073741823');
  t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n);
  t.equal(store.hasPendingWrites, false);
  const recovered = log.lines.filter((l) => l.level === 'info');
  t.equal(recovered.length, 1);
  t.match(recovered[0]?.obj, { file: store.file });
  store.close();

  const reopened = SqliteStore.open(dir, {});
  t.teardown(() => reopened.close());
  const db = reopened.connection;
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  t.equal(db.prepare('SELECT count(*) FROM clients WHERE last_counted_ms IS NOT NULL').pluck().get(), n);
  const missing = [];
  for (let i = 1; i <= n; i++) if (!db.prepare('SELECT 1 FROM clients WHERE cmid = ?').get(cmid(i))) missing.push(i);
  t.same(missing, [], 'every machine answered during the outage is stored');
  t.equal(db.prepare('SELECT requests FROM clients WHERE cmid = ?').pluck().get(cmid(firstPending)), 2);
  t.equal(db.prepare("SELECT last_hresult FROM clients WHERE cmid = ?").pluck().get(cmid(9000)), 0xc004f06c);
  t.equal(db.prepare('SELECT count(*) FROM events').pluck().get(), n + 3, 'served, repeated and refused requests');
  t.equal(reopened.getSetting('epid:206'), '03612-00206-556-123727-03-1033-17763.0000-2972018');
  t.equal(reopened.recordActivation(obs(1, big), T0 + n + 1, WINDOW).activeClients, n);
});

t.test('the retry timer recovers without new requests', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, retryIntervalMs: 3_600_000, retryTimerMs: 20 });
  t.teardown(() => store.close());
  const n = fillUntilFull(t, store, 1);
  store.connection.pragma('max_page_count = 1073741823');
  for (let i = 0; i < 100 && store.hasPendingWrites; i++) await sleep(20);
  t.equal(store.hasPendingWrites, false);
  t.equal(store.connection.prepare('SELECT count(*) FROM clients').pluck().get(), n - 1);
  t.equal(log.lines.filter((l) => l.level === 'error').length, 1);
  t.equal(log.lines.filter((l) => l.level === 'info').length, 1);
});

t.test('a second outage after recovery is reported again; closing while full says what is lost', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, retryIntervalMs: 0, retryTimerMs: 3_600_000 });
  let n = fillUntilFull(t, store, 1);
  store.connection.pragma('max_page_count = 1073741823');
  store.recordActivation(obs(n++, big), T0 + n, WINDOW);
  n = fillUntilFull(t, store, n);
  t.equal(log.lines.filter((l) => l.level === 'error').length, 2);
  store.close();
  const last = log.lines.at(-1);
  t.equal(last?.level, 'error');
  t.match(last?.obj, { code: 'KMS_ERR_STORE_WRITE_FAILED', lostWrites: Number });
  t.ok((last?.obj['lostWrites'] as number) > 0);
});

t.test('pending writes are bounded', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), {
    log,
    retryIntervalMs: 3_600_000,
    retryTimerMs: 3_600_000,
    pendingLimits: { maxOps: 30, maxEvents: 10 },
  });
  t.teardown(() => store.close());
  let n = fillUntilFull(t, store, 1);
  for (let i = 0; i < 40; i++, n++) store.recordActivation(obs(n, big), T0 + n, WINDOW);
  t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n, 'counting in memory goes on');
  const warnings = log.lines.filter((l) => l.level === 'warn');
  t.equal(warnings.length, 1, 'one warning when the bound is reached');
  t.match(warnings[0]?.obj, { code: 'KMS_ERR_STORE_WRITE_FAILED', file: store.file });
});
