// A full disk under a serving host (SQLITE_FULL, simulated with PRAGMA max_page_count exactly as
// a full file system fails): clients keep being served with honest counts, one clear error is
// logged naming the database, more machines than the event buffer holds are answered, every one
// of them is on disk once space returns, and past the machine bound new machines are refused
// (0xC004D104) instead of being acknowledged.
import t from 'tap';
import { activate } from '../../src/client/kms-client';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { product, startHarness } from './appliance-harness';

const TOO_MANY_CLIENTS = 0xc004d104;

t.test('disk full: served and counted from memory, bounded, refused past the bound, all written back', async (t) => {
  const h = await startHarness(t, (c) => {
    c.store.pendingEvents = 100; // the smallest allowed: the outage below answers more machines than this
    c.store.pendingMachines = 160;
  });
  // Threshold 1000 (the largest legal): the cap (2000) stays above every count here, so each
  // count must be exactly the number of machines.
  const win = { ...product('Windows Server 2022 Standard'), requiredClientCount: 1000 };
  const office = product('Office LTSC Professional Plus 2021');
  const [first] = await activate({ host: h.host, port: h.port, product: office });
  t.equal(first?.verified?.base.currentCount, 1);
  const store = h.appliance.store;
  const db = connectionOf(store);
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 0;
  let honest = true;
  // Free space inside the file absorbs some writes before the first one needs a new page.
  while (!store.hasPendingWrites && n < 2000) {
    const [r] = await activate({ host: h.host, port: h.port, product: win, workstation: `srv-${n}` });
    n++;
    if (r?.hresult !== 0 || r.verified?.base.currentCount !== n) honest = false;
  }
  t.ok(store.hasPendingWrites, `the disk filled up after ${n} machines`);
  // More distinct machines than the event buffer holds, up to the machine bound.
  let refused = 0;
  let served = 0;
  for (let i = 0; i < 180; i++) {
    const [r] = await activate({ host: h.host, port: h.port, product: win, workstation: `srv-${n}` });
    if (r?.hresult === TOO_MANY_CLIENTS) {
      refused++;
      n++;
      continue;
    }
    served++;
    if (r?.hresult !== 0 || r.verified?.base.currentCount !== n - refused + 1) honest = false;
    n++;
  }
  t.ok(honest, 'every client answered was served, and every count was the number of machines kept so far');
  t.ok(served > 100, `more machines (${served}) than the event buffer (100) were answered during the outage`);
  t.ok(refused > 0, `past the machine bound ${refused} new machines were refused with 0xC004D104`);
  const stats = store.stats();
  t.ok(stats.pendingMachines <= 160, 'at most the machine bound waits in memory');
  t.equal(stats.pendingEvents, 100, 'at most the event bound waits in memory');
  t.ok(stats.droppedEvents > 0, 'the events past the bound are counted');
  const errors = h.logs.filter((l) => l['level'] === 50 || l['level'] === 'error');
  t.same(
    errors.map((l) => l['code']),
    ['KMS_ERR_STORE_WRITE_FAILED', 'KMS_ERR_STORE_WRITE_FAILED', 'KMS_ERR_STORE_BACKLOG_FULL'],
    'one error for the outage, one when the request log overflows, one when machines are refused',
  );
  t.match(String(errors[0]?.['msg']), h.appliance.databaseFile);

  db.pragma('max_page_count = 1073741823');
  t.equal(store.flushPending(), true, 'written once space returns');
  const dataDir = h.dataDir;
  await h.appliance.stop();
  const reopened = SqliteStore.open(dataDir, {});
  const kept = connectionOf(reopened).prepare('SELECT count(*) FROM clients WHERE last_counted_ms IS NOT NULL').pluck().get();
  t.equal(kept, n - refused + 1, 'every machine answered is stored, none of the refused ones is counted');
  reopened.close();
});
