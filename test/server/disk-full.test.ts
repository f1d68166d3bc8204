// A full disk under a serving host (SQLITE_FULL, simulated with PRAGMA max_page_count exactly as
// a full file system fails): clients keep being served with honest counts, one clear error is
// logged naming the database, and once space returns everything answered is on disk.
import t from 'tap';
import { activate } from '../../src/client/kms-client';
import { SqliteStore } from '../../src/store/sqlite-store';
import { product, startHarness } from './appliance-harness';

t.test('disk full: served and counted from memory, one error, written back when space returns', async (t) => {
  const h = await startHarness(t);
  // Threshold 1000 (the largest legal): the cap (2000) stays above every count here, so each
  // count must be exactly the number of machines.
  const win = { ...product('Windows Server 2022 Standard'), requiredClientCount: 1000 };
  const office = product('Office LTSC Professional Plus 2021');
  const [first] = await activate({ host: h.host, port: h.port, product: office });
  t.equal(first?.verified?.base.currentCount, 1);
  const db = h.appliance.store.connection;
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 0;
  let honest = true;
  // Free space inside the file absorbs some writes before the first one needs a new page.
  while (!h.appliance.store.hasPendingWrites && n < 2000) {
    const [r] = await activate({ host: h.host, port: h.port, product: win, workstation: `srv-${n}` });
    n++;
    if (r?.hresult !== 0 || r.verified?.base.currentCount !== n) honest = false;
  }
  t.ok(h.appliance.store.hasPendingWrites, `the disk filled up after ${n} machines`);
  for (let i = 0; i < 20; i++, n++) {
    const [r] = await activate({ host: h.host, port: h.port, product: win, workstation: `srv-${n}` });
    if (r?.hresult !== 0 || r.verified?.base.currentCount !== n + 1) honest = false;
  }
  t.ok(honest, 'every client was served, and every count was the number of machines so far');
  const errors = h.logs.filter((l) => l['code'] === 'KMS_ERR_STORE_WRITE_FAILED' && l['level'] === 'error');
  t.equal(errors.length, 1, 'one error for the whole outage');
  t.match(String(errors[0]?.['msg']), h.appliance.databaseFile);

  db.pragma('max_page_count = 1073741823');
  t.equal(h.appliance.store.flushPending(), true, 'written once space returns');
  const dataDir = h.dataDir;
  await h.appliance.stop();
  const reopened = SqliteStore.open(dataDir, {});
  t.equal(reopened.connection.prepare('SELECT count(*) FROM clients').pluck().get(), n + 1, 'every machine answered is stored');
  reopened.close();
});
