// store.maxMachines: a client that invents a machine id per request adds a row each time, and
// nothing else would ever delete one, so the disk would fill. Past the cap the machines no count
// includes go first (refused only, or counted before the window), longest unseen first; when every
// stored machine is counted, new machines are refused (0xC004D104) and known ones still renew.
import t from 'tap';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { randomUUID } from 'node:crypto';
import { activate } from '../../src/client/kms-client';
import { product, startHarness } from '../server/appliance-harness';
import { cmid, DAY, obs, recordingLog, tempDataDir, WINDOW } from './observations';
import { WINDOWS_APP } from '../ids';

const NOW = Date.now() - DAY;
const CAP = 100;
const big = { requiredClientCount: 1000 };

function rows(store: SqliteStore): number {
  return connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
}

function stored(store: SqliteStore, n: number): boolean {
  const row = connectionOf(store).prepare('SELECT 1 FROM clients WHERE cmid = ?').get(cmid(n));
  return row !== undefined;
}

t.test('past the cap, the machines no count includes go, longest unseen first; counted ones stay', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, maxMachines: CAP });
  t.teardown(() => store.close());
  // 80 machines counted 40 days ago (outside the window), 20 refused only, 50 counted now.
  for (let n = 1; n <= 80; n++) store.recordActivation(obs(n, big), NOW - 40 * DAY + n, WINDOW);
  for (let n = 81; n <= 100; n++) store.recordRefusal(obs(n), 0xc004f042, 'KMS_ERR_KMS_RETAIL_GROUP', NOW - 10 * DAY + n);
  for (let n = 101; n <= 150; n++) store.recordActivation(obs(n, big), NOW + n, WINDOW);
  const counted = store.countSince(WINDOWS_APP, NOW - WINDOW, 1000);
  t.equal(rows(store), 150);

  store.prune(NOW + 1000);
  t.equal(rows(store), 90, 'down to 90% of the cap');
  t.ok(
    Array.from({ length: 50 }, (_, i) => 101 + i).every((n) => stored(store, n)),
    'every machine counted in the window stays',
  );
  t.equal(store.countSince(WINDOWS_APP, NOW - WINDOW, 1000), counted, 'the count is the same');
  // 60 deleted, longest unseen first: the 60 oldest of the 80 counted before the window.
  t.notOk(stored(store, 60), 'an old one went');
  t.ok(stored(store, 61) && stored(store, 80) && stored(store, 81), 'the more recently seen stayed');
  t.match(
    log.lines.find((l) => l.obj.code === 'KMS_ERR_STORE_MACHINE_CAP'),
    {
      level: 'warn',
      obj: { machines: 150, maxMachines: CAP, deleted: 60 },
      msg: /raise store\.maxMachines/,
    },
  );
  t.equal(store.stats().machineCapReached, false);
  t.equal(store.acceptsActivation(obs(999, big)), true, 'new machines are still taken');
});

t.test('far past the cap (a store from before it): cut back in steps of a thousand, counted ones kept, one line each way', async (t) => {
  const log = recordingLog();
  const dir = tempDataDir(t);
  const cap = 500;
  // Written with the cap out of the way, as a store of an older version would be.
  const before = SqliteStore.open(dir, { maxMachines: 1_000_000 });
  for (let n = 1; n <= 3000; n++) before.recordRefusal(obs(n), 0xc004f042, 'KMS_ERR_KMS_RETAIL_GROUP', NOW - 10 * DAY + n);
  for (let n = 3001; n <= 3100; n++) before.recordActivation(obs(n), NOW + n, WINDOW);
  before.close();
  const store = SqliteStore.open(dir, { log, maxMachines: cap }); // its first prune is the first step
  t.teardown(() => store.close());
  let steps = 1;
  while (store.prune(NOW + 5000) > 0 && steps < 100) steps++;
  t.equal(rows(store), Math.floor(cap * 0.9), 'down to 90% of the cap');
  t.ok(steps >= 3, `in ${steps} steps, none of more than a thousand machines`);
  t.ok(
    Array.from({ length: 100 }, (_, i) => 3001 + i).every((n) => stored(store, n)),
    'every machine counted in the window stays',
  );
  const lines = log.lines.filter((l) => l.obj.code === 'KMS_ERR_STORE_MACHINE_CAP');
  t.equal(lines.length, 2, 'one line when the cut starts, one when it ends');
  t.match(lines[0], { level: 'info', obj: { machines: 3100 }, msg: /1000 at a time, down to 450/ });
  t.match(lines[1], { level: 'warn', obj: { machines: 3100, deleted: 3100 - 450 } });
  t.equal(store.stats().machineCapReached, false);
});

t.test('every stored machine counted: new machines refused, known ones renew, until the window lets some go', async (t) => {
  const log = recordingLog();
  const store = SqliteStore.open(tempDataDir(t), { log, maxMachines: CAP });
  t.teardown(() => store.close());
  for (let n = 1; n <= 130; n++) store.recordActivation(obs(n, big), NOW + n, WINDOW);
  store.prune(NOW + 1000);
  t.equal(rows(store), 130, 'nothing counted is deleted');
  t.equal(store.stats().machineCapReached, true);
  const error = log.lines.find((l) => l.level === 'error' && l.obj.code === 'KMS_ERR_STORE_MACHINE_CAP');
  t.match(error?.msg, /refused \(0xC004D104\) while known ones renew.*raise store\.maxMachines/);

  t.equal(store.acceptsActivation(obs(500, big)), false, 'a machine never seen is refused');
  t.equal(store.refusalCode(), 'KMS_ERR_STORE_MACHINE_CAP');
  t.equal(store.acceptsActivation(obs(7, big)), true, 'a stored machine renews');
  store.recordRefusal(obs(501), 0xc004d104, 'KMS_ERR_STORE_MACHINE_CAP', NOW + 2000);
  t.notOk(stored(store, 501), 'a refused unknown machine leaves only its event, not a row');
  store.recordRefusal(obs(8), 0xc004f042, 'KMS_ERR_KMS_RETAIL_GROUP', NOW + 2000);
  t.ok(stored(store, 8), 'a known one keeps its row');
  t.equal(store.stats().refusedMachines, 1);

  // 31 days on, the 130 are outside the window: the prune deletes down to 90 and leaves the cap.
  store.prune(NOW + 31 * DAY);
  t.equal(rows(store), 90);
  t.equal(store.stats().machineCapReached, false);
  t.equal(store.acceptsActivation(obs(500, big)), true, 'new machines are served again');
  t.ok(log.lines.some((l) => l.level === 'info' && /new machines are served again/.test(l.msg)));
});

t.test('a served host past the cap: a new machine is told 0xC004D104 with the cap as the reason, a known one renews', async (t) => {
  const h = await startHarness(t, (c) => {
    c.store.maxMachines = CAP;
  });
  const win = { ...product('Windows Server 2022 Standard'), requiredClientCount: 1000 };
  const known = randomUUID();
  await activate({ host: h.host, port: h.port, product: win, cmid: known });
  // Many requests on one connection, each from a machine id never seen: what a hostile client does.
  await activate({ host: h.host, port: h.port, product: win, requests: CAP });
  h.appliance.store.prune();
  t.equal(h.appliance.store.stats().machineCapReached, true);
  const [fresh] = await activate({ host: h.host, port: h.port, product: win });
  t.equal(fresh?.hresult, 0xc004d104, 'a machine never seen is refused');
  const [renewal] = await activate({ host: h.host, port: h.port, product: win, cmid: known });
  t.equal(renewal?.hresult, 0, 'a known machine renews');
  t.equal(renewal?.verified?.base.currentCount, CAP + 1, 'and the count is every machine heard from');
  const refusal = h.logs.find((l) => l['code'] === 'KMS_ERR_STORE_MACHINE_CAP' && l['event'] === 'kms-request-refused');
  t.match(refusal, { errorCode: '0xC004D104', explanation: /store\.maxMachines/ });
});
