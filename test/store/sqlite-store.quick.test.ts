import t from 'tap';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { DATABASE_FILE_NAME } from '../../src/store/data-dir';
import {
  cmid,
  DAY,
  obs,
  OFFICE_2019_EXCEL,
  OFFICE_2019_GROUP,
  SERVER_2022_GROUP,
  SERVER_2022_STANDARD,
  tempDataDir,
  WINDOW,
} from './observations';
import { NIL_GUID, OFFICE_2013_APP, WINDOWS_APP } from '../ids';
import { until } from '../wait';

const T0 = Date.UTC(2025, 2, 1, 8, 0, 0);

/** What the host sends the client: the store's count, capped at 2 × the threshold (PROTOCOL.md §7.2). */
function reported(s: { activeClients: number; maxRequiredClientCount: number }): number {
  return Math.min(s.activeClients, 2 * s.maxRequiredClientCount);
}

function openStore(t: Parameters<typeof tempDataDir>[0], dir = tempDataDir(t)): SqliteStore {
  const store = SqliteStore.open(dir, {});
  t.teardown(() => store.close());
  return store;
}

type Row = Record<string, unknown>;
function clientRow(store: SqliteStore, id: string, app = WINDOWS_APP): Row | undefined {
  return connectionOf(store).prepare('SELECT * FROM clients WHERE application = ? AND cmid = ?').get(app, id) as Row | undefined;
}

t.test('distinct machines count 1, 2, 3 … and cross the threshold of 25 at the 25th', async (t) => {
  const store = openStore(t);
  const counts: number[] = [];
  for (let i = 1; i <= 25; i++) counts.push(reported(store.recordActivation(obs(i), T0 + i * 1000, WINDOW)));
  t.same(
    counts,
    Array.from({ length: 25 }, (_, i) => i + 1),
  );
  t.ok(counts[23]! < 25, 'the 24th machine is still below the Windows client threshold');
  t.equal(counts[24], 25);
});

t.test('a machine asking again does not raise the count', async (t) => {
  const store = openStore(t);
  store.recordActivation(obs(1), T0, WINDOW);
  store.recordActivation(obs(2), T0 + 1, WINDOW);
  for (let i = 0; i < 5; i++) t.equal(reported(store.recordActivation(obs(1), T0 + 10 + i, WINDOW)), 2);
  t.equal(clientRow(store, cmid(1))?.['requests'], 6);
});

t.test('the count is capped at twice the largest threshold in the window', async (t) => {
  const store = openStore(t);
  const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
  let last = store.recordActivation(obs(0, server), T0, WINDOW);
  for (let i = 1; i < 12; i++) last = store.recordActivation(obs(i, server), T0 + i, WINDOW);
  t.equal(last.maxRequiredClientCount, 5);
  t.equal(reported(last), 10, 'servers alone: cap 2 × 5');
  t.ok(last.activeClients >= 10);

  // One Windows client (threshold 25) raises the cap for the whole application.
  const client = store.recordActivation(obs(100), T0 + 100, WINDOW);
  t.equal(client.maxRequiredClientCount, 25);
  t.equal(reported(client), 13, 'exact below the new cap');
  for (let i = 101; i < 160; i++) last = store.recordActivation(obs(i), T0 + i, WINDOW);
  t.equal(reported(last), 50);
});

t.test('the largest threshold only counts while it was served inside the window', async (t) => {
  const store = openStore(t);
  store.recordActivation(obs(1), T0, WINDOW); // threshold 25
  const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
  const inside = store.recordActivation(obs(2, server), T0 + WINDOW, WINDOW);
  t.equal(inside.maxRequiredClientCount, 25);
  const after = store.recordActivation(obs(3, server), T0 + WINDOW + 1, WINDOW);
  t.equal(after.maxRequiredClientCount, 5);
  // RequiredClientCount 0 is served as 1 (PROTOCOL.md §7.1 step 4).
  const office = store.recordActivation(obs(4, { applicationId: OFFICE_2013_APP, requiredClientCount: 0 }), T0, WINDOW);
  t.equal(office.maxRequiredClientCount, 1);
});

t.test('a machine silent for 30 days drops out of the count', async (t) => {
  const store = openStore(t);
  store.recordActivation(obs(1), T0, WINDOW);
  t.equal(reported(store.recordActivation(obs(2), T0 + WINDOW, WINDOW)), 2, 'seen exactly 30 days ago still counts');
  t.equal(reported(store.recordActivation(obs(3), T0 + WINDOW + 1, WINDOW)), 2, 'machine 1 is out after 30 days');
  t.equal(reported(store.recordActivation(obs(1), T0 + WINDOW + 5, WINDOW)), 3, 'and back in when it asks again');
  t.ok(clientRow(store, cmid(1)), 'an expired machine is not forgotten, only not counted');
});

t.test('clients renewing every 7 days keep their place; a silent one leaves', async (t) => {
  const store = openStore(t);
  for (let i = 1; i <= 30; i++) store.recordActivation(obs(i), T0, WINDOW);
  store.recordActivation(obs(99), T0, WINDOW); // never renews
  let snap = { activeClients: 0, maxRequiredClientCount: 1 };
  for (let week = 1; week <= 9; week++) {
    const now = T0 + week * 7 * DAY;
    // Renewals carry LicenseStatus 1 (licensed) and count like first requests (§7.6).
    for (let i = 1; i <= 30; i++) snap = store.recordActivation(obs(i, { licenseStatus: 1 }), now + i, WINDOW);
  }
  t.equal(reported(snap), 30);
  t.equal(clientRow(store, cmid(1))?.['requests'], 10);
  t.equal(clientRow(store, cmid(1))?.['license_status'], 1);
});

t.test('refused requests are logged but never counted', async (t) => {
  const store = openStore(t);
  store.recordRefusal(obs(1), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', T0);
  store.recordRefusal({ clientAddress: '10.9.9.9', protocolVersion: 7 }, 0x8007000d, 'KMS_ERR_KMS_VERSION', T0 + 1);
  t.equal(reported(store.recordActivation(obs(2), T0 + 2, WINDOW)), 1);
  const refused = clientRow(store, cmid(1));
  t.equal(refused?.['last_counted_ms'], null);
  t.equal(refused?.['last_hresult'], 0xc004f06c);
  // A refusal of a machine that was served before keeps it counted, and records what it was told.
  store.recordRefusal(obs(2), 0xc004f042, 'KMS_ERR_KMS_UNKNOWN_GROUP', T0 + 3);
  t.equal(clientRow(store, cmid(2))?.['last_counted_ms'], T0 + 2);
  t.equal(reported(store.recordActivation(obs(3), T0 + 4, WINDOW)), 2);
  const events = connectionOf(store).prepare('SELECT served, hresult, code FROM events ORDER BY id').all();
  t.same(events, [
    { served: 0, hresult: 0xc004f06c, code: 'KMS_ERR_KMS_TIME_SKEW' },
    { served: 0, hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION' },
    { served: 1, hresult: 0, code: '' },
    { served: 0, hresult: 0xc004f042, code: 'KMS_ERR_KMS_UNKNOWN_GROUP' },
    { served: 1, hresult: 0, code: '' },
  ]);
});

t.test('a request naming a known previous CMID replaces that machine', async (t) => {
  const store = openStore(t);
  store.recordActivation(obs(1), T0, WINDOW);
  store.recordActivation(obs(2), T0, WINDOW);
  const reimaged = store.recordActivation(obs(3, { previousClientMachineId: cmid(1).toUpperCase() }), T0 + 1, WINDOW);
  t.equal(reported(reimaged), 2, 'the re-imaged machine counts once');
  t.notOk(clientRow(store, cmid(1)));
  t.match(clientRow(store, cmid(3)), { first_seen_ms: T0, requests: 2 }, 'and keeps the history of its old entry');
  // The new CMID already known: the old entry just goes.
  store.recordActivation(obs(2, { previousClientMachineId: cmid(3) }), T0 + 1, WINDOW);
  t.notOk(clientRow(store, cmid(3)));
  store.recordActivation(obs(3), T0 + 1, WINDOW);
  const unknownPrevious = store.recordActivation(obs(4, { previousClientMachineId: cmid(77) }), T0 + 2, WINDOW);
  t.equal(reported(unknownPrevious), 3);
  // The previous CMID of another application is not this application's machine.
  store.recordActivation(
    obs(5, { applicationId: OFFICE_2013_APP, kmsCountedId: OFFICE_2019_GROUP, activationId: OFFICE_2019_EXCEL, requiredClientCount: 5 }),
    T0,
    WINDOW,
  );
  const crossApp = store.recordActivation(obs(6, { previousClientMachineId: cmid(5) }), T0 + 3, WINDOW);
  t.equal(reported(crossApp), 4);
  t.ok(clientRow(store, cmid(5), OFFICE_2013_APP));
  const self = store.recordActivation(obs(6, { previousClientMachineId: cmid(6) }), T0 + 4, WINDOW);
  t.equal(reported(self), 4, 'naming itself as previous removes nothing');
});

t.test('applications are counted separately; VMs count like physical machines', async (t) => {
  const store = openStore(t);
  const office = {
    applicationId: OFFICE_2013_APP,
    kmsCountedId: OFFICE_2019_GROUP,
    activationId: OFFICE_2019_EXCEL,
    requiredClientCount: 5,
  };
  store.recordActivation(obs(1, { vmInfo: 1 }), T0, WINDOW);
  store.recordActivation(obs(2), T0, WINDOW);
  // The same machine (CMID) activating Office is a first Office client.
  t.equal(reported(store.recordActivation(obs(1, office), T0 + 1, WINDOW)), 1);
  t.equal(reported(store.recordActivation(obs(3, { vmInfo: 1 }), T0 + 2, WINDOW)), 3);
  t.equal(clientRow(store, cmid(1))?.['vm'], 1);
});

t.test('clock jumps never lose or double-count machines', async (t) => {
  const store = openStore(t);
  const later = T0 + 10 * DAY;
  store.recordActivation(obs(1), later, WINDOW);
  // The clock is set back 10 days: machine 1 (seen "in the future") still counts, once.
  t.equal(reported(store.recordActivation(obs(2), T0, WINDOW)), 2);
  t.equal(reported(store.recordActivation(obs(1), T0 + 1, WINDOW)), 2);
  t.equal(clientRow(store, cmid(1))?.['last_counted_ms'], later, 'last counted never moves backwards');
  // Forward again to 29 days after the newest time: still counted.
  t.equal(reported(store.recordActivation(obs(3), later + 29 * DAY, WINDOW)), 2, 'machine 2 expired, machine 1 not');
  // A jump of a year forward: everyone silent for 30 days expires, nobody is counted twice.
  const far = later + 365 * DAY;
  t.equal(reported(store.recordActivation(obs(1), far, WINDOW)), 1);
  t.equal(reported(store.recordActivation(obs(2), far, WINDOW)), 2);
  t.equal(reported(store.recordActivation(obs(1), far + 1, WINDOW)), 2);
});

t.test('counts, settings and rows survive close and reopen', async (t) => {
  const dir = tempDataDir(t);
  const first = SqliteStore.open(dir, {});
  for (let i = 1; i <= 7; i++) first.recordActivation(obs(i), T0 + i, WINDOW);
  first.setSetting('hwid', '0123456789abcdef');
  t.equal(first.file.endsWith(DATABASE_FILE_NAME), true);
  first.close();
  const second = SqliteStore.open(dir, {});
  t.teardown(() => second.close());
  t.equal(second.getSetting('hwid'), '0123456789abcdef');
  t.equal(second.getSetting('missing'), undefined);
  t.equal(reported(second.recordActivation(obs(8), T0 + 100, WINDOW)), 8);
  t.equal(reported(second.recordActivation(obs(3), T0 + 101, WINDOW)), 8);
  second.setSetting('hwid', 'fedcba9876543210');
  t.equal(second.getSetting('hwid'), 'fedcba9876543210');
  t.equal(connectionOf(second).pragma('journal_mode', { simple: true }), 'wal');
  t.equal(connectionOf(second).pragma('synchronous', { simple: true }), 1, 'NORMAL');
});

t.test('the event log keeps 12290 fields and is pruned by age and by size', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, { eventRetentionDays: 10, maxEvents: 5 });
  t.teardown(() => store.close());
  store.recordActivation(obs(1, { vmInfo: 1, requestTimeMs: T0 - 5000 }), T0, WINDOW);
  const e = connectionOf(store).prepare('SELECT * FROM events').get() as Row;
  t.match(e, {
    time_ms: T0,
    served: 1,
    hresult: 0,
    application: WINDOWS_APP,
    cmid: cmid(1),
    previous_cmid: NIL_GUID,
    workstation: 'pc-1.branch.example',
    required_count: 25,
    license_status: 2,
    vm: 1,
    protocol_version: 6,
    client_address: '10.0.0.1',
    request_time_ms: T0 - 5000,
    current_count: 1,
  });
  for (let i = 2; i <= 4; i++) store.recordActivation(obs(i), T0 + i * DAY, WINDOW);
  // Retention 10 days: at T0 + 12 d the event of T0 + 2 d is exactly 10 days old and stays.
  t.equal(store.prune(T0 + 12 * DAY), 1);
  t.equal(store.prune(T0 + 12 * DAY + 1), 1);
  const left = connectionOf(store).prepare('SELECT time_ms FROM events ORDER BY id').pluck().all();
  t.same(left, [T0 + 3 * DAY, T0 + 4 * DAY]);
  for (let i = 5; i <= 12; i++) store.recordActivation(obs(i), T0 + 11 * DAY, WINDOW);
  t.equal(store.prune(T0 + 12 * DAY), 5, 'at most maxEvents rows are kept');
  t.equal(connectionOf(store).prepare('SELECT count(*) FROM events').pluck().get(), 5);
  t.equal(connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get(), 12, 'pruning touches only events');

  // Everything past retention: the newest row stays, so event ids keep increasing.
  const lastId = connectionOf(store).prepare('SELECT MAX(id) FROM events').pluck().get() as number;
  t.equal(store.prune(T0 + 100 * DAY), 4);
  t.same(connectionOf(store).prepare('SELECT id FROM events').pluck().all(), [lastId]);
  store.recordRefusal(obs(99), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', T0 + 100 * DAY);
  t.equal(connectionOf(store).prepare('SELECT MAX(id) FROM events').pluck().get(), lastId + 1, 'ids never start again');
});

t.test('thresholds survive a restart with their exact last-served time', async (t) => {
  const dir = tempDataDir(t);
  const first = SqliteStore.open(dir, {});
  first.recordActivation(obs(1), T0, WINDOW);
  // 30 s later: inside the write granularity, so only memory has the newer time until close().
  first.recordActivation(obs(2), T0 + 30_000, WINDOW);
  first.close();
  const second = SqliteStore.open(dir, {});
  t.teardown(() => second.close());
  const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
  t.equal(second.recordActivation(obs(3, server), T0 + WINDOW + 20_000, WINDOW).maxRequiredClientCount, 25);
  t.equal(second.recordActivation(obs(4, server), T0 + WINDOW + 30_001, WINDOW).maxRequiredClientCount, 5);
});

t.test('a flood of requests cannot outgrow store.maxEvents until the hourly prune: a prune follows every twentieth', async (t) => {
  const dir = tempDataDir(t);
  const maxEvents = 20_000;
  const now = Date.now(); // inside the retention period: only the cap prunes
  const store = SqliteStore.open(dir, { maxEvents, journalCommitMs: 2, backgroundCheckpointMs: 50 });
  t.teardown(() => store.close());
  const events = (): number => connectionOf(store).prepare('SELECT count(*) FROM events').pluck().get() as number;
  let most = 0;
  // As a server takes them: groups of requests, a turn of the event loop between them.
  for (let i = 0; i < 40_000; i += 500) {
    store.beginBatch();
    for (let j = i; j < i + 500; j++) store.recordRefusal(obs(j % 100), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now + j);
    store.commitBatch();
    await new Promise((resolve) => setTimeout(resolve, 1));
    most = Math.max(most, events());
  }
  t.ok(most <= maxEvents * 1.1, `40,000 refused requests: at most ${most} events kept at any time (cap ${maxEvents})`);
  t.ok(events() >= maxEvents - 1000, 'and the newest are kept');

  // A cap lowered by the admin: the excess goes in chunks over the next turns, not in one statement.
  store.close();
  const lowered = SqliteStore.open(dir, { maxEvents: 500 });
  t.teardown(() => lowered.close());
  const left = (): number => connectionOf(lowered).prepare('SELECT count(*) FROM events').pluck().get() as number;
  t.ok(left() > 500, 'the first prune at open deletes one chunk');
  await until(() => left() === 500, 'the rest pruned in the next turns', { everyMs: 5 });
  t.equal(left(), 500, 'down to the lowered cap in the next turns, a chunk at a time');
});
