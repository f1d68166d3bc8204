// A full disk (simulated with PRAGMA max_page_count, which makes SQLite fail with SQLITE_FULL
// exactly as a full file system does) must not stop the host: one error, answers go on from
// stored + pending, everything is written once space returns, nothing stored is lost.

import t from 'tap';
type Tap = Pick<typeof t, 'equal'>;
import * as fs from 'node:fs';
import { until } from '../wait';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { cmid, obs, recordingLog, tempDataDir, WINDOW } from './observations';

const T0 = Date.now() - 86_400_000; // recent: reopening prunes events older than the retention
// Threshold 1000: the cap (2000) stays above every count in these tests, so counts are exact.
const big = { requiredClientCount: 1000 };

function fillUntilFull(t: Tap, store: SqliteStore, from: number): number {
  const db = connectionOf(store);
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
  connectionOf(store).pragma('max_page_count = 1073741823');
  t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n);
  t.equal(store.hasPendingWrites, false);
  const recovered = log.lines.filter((l) => l.level === 'info');
  t.equal(recovered.length, 1);
  t.match(recovered[0]?.obj, { file: store.file });
  store.close();

  const reopened = SqliteStore.open(dir, {});
  t.teardown(() => reopened.close());
  const db = connectionOf(reopened);
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  t.equal(db.prepare('SELECT count(*) FROM clients WHERE last_counted_ms IS NOT NULL').pluck().get(), n);
  const missing = [];
  for (let i = 1; i <= n; i++) if (!db.prepare('SELECT 1 FROM clients WHERE cmid = ?').get(cmid(i))) missing.push(i);
  t.same(missing, [], 'every machine answered during the outage is stored');
  t.equal(db.prepare('SELECT requests FROM clients WHERE cmid = ?').pluck().get(cmid(firstPending)), 2);
  t.equal(db.prepare('SELECT last_hresult FROM clients WHERE cmid = ?').pluck().get(cmid(9000)), 0xc004f06c);
  t.equal(db.prepare('SELECT count(*) FROM events').pluck().get(), n + 3, 'served, repeated and refused requests');
  t.equal(reopened.getSetting('epid:206'), '03612-00206-556-123727-03-1033-17763.0000-2972018');
  t.equal(reopened.recordActivation(obs(1, big), T0 + n + 1, WINDOW).activeClients, n);
});

t.test('the retry timer recovers without new requests', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, retryIntervalMs: 3_600_000, retryTimerMs: 20 });
  t.teardown(() => store.close());
  const n = fillUntilFull(t, store, 1);
  connectionOf(store).pragma('max_page_count = 1073741823');
  // The retry timer fires every 20 ms on its own: the store is asked again at the same pace.
  await until(() => !store.hasPendingWrites, 'the retry timer writing the pending rows', { everyMs: 10 });
  t.equal(store.hasPendingWrites, false);
  t.equal(connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get(), n - 1);
  t.equal(log.lines.filter((l) => l.level === 'error').length, 1);
  t.equal(log.lines.filter((l) => l.level === 'info').length, 1);
});

t.test('a second outage after recovery is reported again; closing while full says what is lost', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, retryIntervalMs: 0, retryTimerMs: 3_600_000 });
  let n = fillUntilFull(t, store, 1);
  connectionOf(store).pragma('max_page_count = 1073741823');
  store.recordActivation(obs(n++, big), T0 + n, WINDOW);
  n = fillUntilFull(t, store, n);
  t.equal(log.lines.filter((l) => l.level === 'error').length, 2);
  store.close();
  const last = log.lines.at(-1);
  t.equal(last?.level, 'error');
  t.match(last?.obj, { code: 'KMS_ERR_STORE_WRITE_FAILED', lostWrites: Number });
  t.ok((last?.obj['lostWrites'] as number) > 0);
});

t.test('a long outage: writes coalesce per machine, events overflow counted, then new machines refused', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const limits = { maxMachines: 300, maxEvents: 50 };
  const store = SqliteStore.open(dir, { log, retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000, pendingLimits: limits });
  let n = fillUntilFull(t, store, 1);
  const stored = n - 1; // the last one went to the pending path
  const acknowledged: number[] = [n - 1];
  // Far more distinct machines than the event buffer holds, each asking three times.
  let refusedAt = 0;
  for (let i = 0; i < 400; i++, n++) {
    if (!store.acceptsActivation(obs(n, big))) {
      refusedAt = n;
      break;
    }
    for (let k = 0; k < 3; k++) store.recordActivation(obs(n, { ...big, workstationName: `pc-${n}-${k % 2}` }), T0 + n * 10 + k, WINDOW);
    acknowledged.push(n);
  }
  const stats = store.stats();
  t.ok(refusedAt > 0, 'the machine bound was reached');
  t.equal(stats.pendingMachines, limits.maxMachines, 'memory holds at most the bound of machines');
  t.equal(stats.pendingEvents, limits.maxEvents, 'and at most the bound of events');
  t.ok(acknowledged.length - 1 > limits.maxEvents, 'more distinct machines than the event bound were answered');
  t.equal(stats.droppedEvents, acknowledged.length * 3 - 2 - limits.maxEvents, 'every event past the bound is counted as dropped');
  t.equal(stats.writable, false);
  t.match(stats.lastWriteError, /^SQLITE_FULL/);

  // A machine already waiting is still served; a refused one was never counted.
  t.equal(store.acceptsActivation(obs(acknowledged[5]!, big)), true);
  t.equal(store.recordActivation(obs(acknowledged[5]!, big), T0 + n * 10, WINDOW).activeClients, stored + acknowledged.length - 1);
  t.equal(store.acceptsActivation(obs(refusedAt + 1, big)), false);
  t.equal(store.stats().refusedMachines, 2);
  const errors = log.lines.filter((l) => l.level === 'error');
  t.same(
    errors.map((l) => l.obj['code']),
    ['KMS_ERR_STORE_WRITE_FAILED', 'KMS_ERR_STORE_WRITE_FAILED', 'KMS_ERR_STORE_BACKLOG_FULL'],
    'one error for the outage, one when events overflow, one when machines are refused',
  );

  connectionOf(store).pragma('max_page_count = 1073741823');
  t.equal(store.flushPending(), true);
  t.same(store.stats().pendingMachines, 0);
  store.close();

  const reopened = SqliteStore.open(dir, {});
  t.teardown(() => reopened.close());
  const db = connectionOf(reopened);
  const row = db.prepare(
    'SELECT requests, workstation, previous_workstation, workstation_changes, last_counted_ms FROM clients WHERE cmid = ?',
  );
  const missing = acknowledged.filter((i) => row.get(cmid(i)) === undefined);
  t.same(missing, [], 'every acknowledged machine is on disk');
  t.equal(row.get(cmid(refusedAt)), undefined, 'the refused machine is not');
  t.same(
    row.get(cmid(acknowledged[7]!)),
    {
      requests: 3,
      workstation: `pc-${acknowledged[7]}-0`,
      previous_workstation: `pc-${acknowledged[7]}-1`,
      workstation_changes: 2,
      last_counted_ms: T0 + acknowledged[7]! * 10 + 2,
    },
    'three requests folded into one row exactly as three writes would be',
  );
  t.equal(db.prepare('SELECT count(*) FROM clients WHERE last_counted_ms IS NOT NULL').pluck().get(), stored + acknowledged.length - 1);
});

t.test('damage found while serving is reported as corruption, not as a full disk', async (t) => {
  const dir = tempDataDir(t);
  const first = SqliteStore.open(dir, {});
  for (let i = 1; i <= 3000; i++) first.recordActivation(obs(i, big), T0 + i, WINDOW);
  first.close();
  const log = recordingLog();
  const store = SqliteStore.open(dir, { log, retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000 });
  t.teardown(() => store.close());
  const db = connectionOf(store);
  // Overwrite b-tree pages under the open connection, and make it read them again.
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const fd = fs.openSync(store.file, 'r+');
  fs.writeSync(fd, Buffer.alloc(pageSize * 40, 0xa5), 0, pageSize * 40, pageSize * 3);
  fs.closeSync(fd);
  db.pragma('shrink_memory');
  for (let i = 5000; i < 5100; i++)
    t.equal(store.recordActivation(obs(i, big), T0 + i, WINDOW).activeClients, Math.min(2000, i - 5000 + 3001));
  const errors = log.lines.filter((l) => l.level === 'error');
  t.equal(errors.length, 1);
  t.match(errors[0]?.obj, { code: 'KMS_ERR_STORE_CORRUPT', sqliteCode: /^SQLITE_CORRUPT/, file: store.file });
  t.notMatch(errors[0]?.msg, /free disk space/);
  t.match(errors[0]?.msg, /backup/);
  t.equal(store.stats().writable, false);
});
