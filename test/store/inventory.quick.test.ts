import t from 'tap';
import { loadCatalog } from '../../src/catalog/load';
import { SqliteStore } from '../../src/store/sqlite-store';
import { Inventory, MAX_NAMES_KEPT } from '../../src/store/inventory';
import { complianceReport } from '../../src/store/compliance';
import type { NameResolver } from '../../src/catalog/name-resolver';
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
import { OFFICE_2013_APP, WIN10_VOLUME_GROUP, WINDOWS_APP } from '../ids';

const NOW = Date.UTC(2026, 10, 20, 12, 0, 0);
const catalog = loadCatalog();
const names: NameResolver = {
  applicationName: (id) => catalog.describeApplication(id),
  groupName: (id) => catalog.describeKmsGroup(id),
  skuName: (a, g) => catalog.describeSku(a, g),
};
const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
const office = {
  applicationId: OFFICE_2013_APP,
  kmsCountedId: OFFICE_2019_GROUP,
  activationId: OFFICE_2019_EXCEL,
  requiredClientCount: 5,
};

/** 20 Windows 10 clients, 3 servers and 6 Office installs active; 2 Windows clients expired. */
function prepare(store: SqliteStore): void {
  for (let i = 1; i <= 20; i++) store.recordActivation(obs(i), NOW - i * 3600_000, WINDOW);
  for (let i = 21; i <= 23; i++) store.recordActivation(obs(i, server), NOW - DAY, WINDOW);
  for (let i = 1; i <= 6; i++) store.recordActivation(obs(i, office), NOW - 2 * DAY, WINDOW);
  for (let i = 90; i <= 91; i++) store.recordActivation(obs(i), NOW - 40 * DAY, WINDOW);
}

function setup(t: Parameters<typeof tempDataDir>[0]): { store: SqliteStore; inventory: Inventory; dir: string } {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, { clock: { now: () => NOW } });
  prepare(store);
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => {
    inventory.close();
    store.close();
  });
  return { store, inventory, dir };
}

t.test('summary per application and group: counts, thresholds, what is missing', async (t) => {
  const { inventory } = setup(t);
  const [windows, officeApp, ...rest] = inventory.summary(NOW);
  t.same(rest, []);
  t.match(windows, {
    applicationId: WINDOWS_APP,
    applicationName: 'Windows',
    activeMachines: 23,
    threshold: 25,
    reportedCount: 23,
    missing: 2,
    activates: false,
    lastActivationMs: NOW - 3600_000,
  });
  t.same(
    windows?.groups.map((g) => [g.groupName, g.activeMachines, g.requiredCount, g.activates]),
    [
      ['Windows 10/11 2015 (Volume)', 20, 25, false],
      ['Windows Server 2022', 3, 5, true],
    ],
  );
  t.match(officeApp, { applicationId: OFFICE_2013_APP, activeMachines: 6, threshold: 5, missing: 0, activates: true, reportedCount: 6 });
  // 41 days later nothing is in the window any more.
  const later = inventory.summary(NOW + 41 * DAY);
  t.match(later[0], { activeMachines: 0, threshold: 0, activates: false, lastActivationMs: null });
});

t.test('the read-only inventory sees new writes and never blocks the writer', async (t) => {
  const { store, inventory } = setup(t);
  const rows = inventory.clients({}, NOW);
  const first = rows.next(); // a read transaction is open while the generator is suspended
  t.equal(first.done, false);
  for (let i = 24; i <= 30; i++) store.recordActivation(obs(i), NOW, WINDOW);
  t.equal(store.hasPendingWrites, false, 'the writer was not blocked by the open reader');
  t.equal([...rows].length + 1, 31, 'the reader keeps its snapshot');
  t.match(inventory.summary(NOW)[0], { activeMachines: 30, missing: 0, activates: true });
  t.throws(() => inventory['db'].prepare('DELETE FROM clients').run(), { code: 'SQLITE_READONLY' });
});

t.test('client list filters by group, product, application and silence', async (t) => {
  const { store, inventory } = setup(t);
  store.recordRefusal(obs(50), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW);
  const all = [...inventory.clients({}, NOW)];
  t.equal(all.length, 6 + 20 + 3 + 2 + 1);
  const byGroup = [...inventory.clients({ group: 'server 2022' }, NOW)];
  t.same(
    byGroup.map((c) => c.cmid),
    [cmid(21), cmid(22), cmid(23)],
  );
  t.match(byGroup[0], { groupName: 'Windows Server 2022', skuName: 'Windows Server 2022 Standard', active: true, vm: false });
  t.equal([...inventory.clients({ group: WIN10_VOLUME_GROUP }, NOW)].length, 20 + 2 + 1, 'by id');
  t.equal([...inventory.clients({ product: 'excel' }, NOW)].length, 6);
  t.equal([...inventory.clients({ application: 'office' }, NOW)].length, 6);
  const silent = [...inventory.clients({ notSeenSinceMs: NOW - 30 * DAY }, NOW)];
  t.same(
    silent.map((c) => [c.cmid, c.active]),
    [
      [cmid(90), false],
      [cmid(91), false],
    ],
  );
  const refused = all.find((c) => c.cmid === cmid(50));
  t.match(refused, { lastCountedMs: null, active: false, lastHresult: 0xc004f06c });
});

t.test('duplicates: one CMID under several names, one name with several CMIDs', async (t) => {
  const { store, inventory } = setup(t);
  // An image deployed without sysprep: two machines share CMID 1 and alternate.
  store.recordActivation(obs(1, { workstationName: 'clone-b' }), NOW, WINDOW);
  store.recordActivation(obs(1), NOW + 1, WINDOW);
  // A DHCP renumbering (one address change) is not a duplicate; addresses switching back and forth are.
  store.recordActivation(obs(2, { clientAddress: '10.9.9.9' }), NOW, WINDOW);
  store.recordActivation(obs(3, { clientAddress: '10.9.9.8' }), NOW, WINDOW);
  store.recordActivation(obs(3), NOW + 1, WINDOW);
  // Re-imaged without a previous CMID: the name comes back under a new CMID.
  store.recordActivation(obs(200, { workstationName: 'PC-5.branch.example' }), NOW, WINDOW);
  const d = inventory.duplicates(NOW);
  t.same(
    d.sharedCmids.map((s) => s.cmid),
    [cmid(1), cmid(3)],
  );
  t.match(d.sharedCmids[0], { workstations: ['clone-b', 'pc-1.branch.example'], workstationChanges: 2, applications: ['Windows'] });
  t.match(d.sharedCmids[1], { addresses: ['10.0.0.3', '10.9.9.8'], addressChanges: 2, workstationChanges: 0 });
  t.same(d.sharedWorkstations, [{ workstation: 'pc-5.branch.example', cmids: [cmid(5), cmid(200)].sort(), application: 'Windows' }]);
});

t.test('duplicates: every name of a cloned CMID, per product line, served requests only', async (t) => {
  const { store, inventory } = setup(t);
  // Three machines from one image: the clients row remembers two names, the events all three.
  for (const [k, name] of ['clone-a', 'clone-b', 'clone-c', 'clone-a'].entries())
    store.recordActivation(obs(7, { workstationName: name }), NOW + k, WINDOW);
  // A PC's Windows and Office (different CMIDs, one name) are not "one name, several CMIDs".
  store.recordActivation(obs(300, { workstationName: 'desk-1' }), NOW, WINDOW);
  store.recordActivation(obs(301, { ...office, workstationName: 'desk-1' }), NOW, WINDOW);
  // Refused requests under another name prove nothing about clones.
  store.recordRefusal(obs(8, { workstationName: 'someone-else' }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW);
  store.recordActivation(obs(400, { workstationName: 'lab-1' }), NOW, WINDOW);
  store.recordRefusal(obs(401, { workstationName: 'lab-1' }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW);
  // A name with a newline is one name, not two entries.
  store.recordActivation(obs(9, { workstationName: 'evil\nfake-entry' }), NOW, WINDOW);
  store.recordActivation(obs(9), NOW + 1, WINDOW);
  const d = inventory.duplicates(NOW);
  const seven = d.sharedCmids.find((c) => c.cmid === cmid(7));
  t.same(seven?.workstations, ['clone-a', 'clone-b', 'clone-c', 'pc-7.branch.example'], 'all names, not only the last two');
  t.equal(seven?.workstationChanges, 4);
  t.notOk(
    d.sharedCmids.some((c) => c.cmid === cmid(8)),
    'a refused request under another name is no clone',
  );
  t.notOk(
    d.sharedWorkstations.some((w) => w.workstation === 'desk-1'),
    'Windows and Office of one PC are not duplicates',
  );
  t.notOk(
    d.sharedWorkstations.some((w) => w.workstation === 'lab-1'),
    'a refused CMID does not make a name shared',
  );
  const nine = d.sharedCmids.find((c) => c.cmid === cmid(9));
  t.same(nine?.workstations, ['evil\nfake-entry', 'pc-9.branch.example']);
  t.notOk(
    d.sharedCmids.some((c) => c.workstations.includes('fake-entry')),
    'no made-up entry',
  );
  // Bounded: a CMID answering under hundreds of names lists MAX_NAMES_KEPT of them.
  for (let k = 0; k < 100; k++) store.recordActivation(obs(10, { workstationName: `flood-${k}` }), NOW + k, WINDOW);
  t.equal(inventory.duplicates(NOW).sharedCmids.find((c) => c.cmid === cmid(10))?.workstations.length, MAX_NAMES_KEPT);
});

t.test('compliance: entitlements by group name, application id or SKU name; over-use and unlicensed groups', async (t) => {
  const { inventory } = setup(t);
  const rows = complianceReport(
    inventory.groupCounts(NOW),
    [
      { product: 'windows 10/11 2015 (volume)', licenses: 15 },
      { product: OFFICE_2013_APP, licenses: 10 },
      { product: 'Visio 2099', licenses: 3 },
      { product: 'windows server 2022 standard', licenses: 2 },
    ],
    inventory.nameResolver,
  );
  t.same(rows, [
    {
      product: 'windows 10/11 2015 (volume)',
      scope: 'group',
      groups: ['Windows 10/11 2015 (Volume)'],
      licenses: 15,
      activeMachines: 20,
      overUse: true,
      excess: 5,
    },
    { product: OFFICE_2013_APP, scope: 'application', groups: ['Office 2019'], licenses: 10, activeMachines: 6, overUse: false, excess: 0 },
    { product: 'Visio 2099', scope: 'unmatched', groups: [], licenses: 3, activeMachines: 0, overUse: false, excess: 0 },
    {
      product: 'windows server 2022 standard',
      scope: 'sku',
      groups: ['Windows Server 2022'],
      licenses: 2,
      activeMachines: 3,
      overUse: true,
      excess: 1,
    },
  ]);
  // Without entitlements every group in use is listed as unlicensed.
  const bare = complianceReport(inventory.groupCounts(NOW), [], inventory.nameResolver);
  t.same(
    bare.map((r) => [r.product, r.activeMachines, r.licenses]),
    [
      ['Office 2019', 6, null],
      ['Windows 10/11 2015 (Volume)', 20, null],
      ['Windows Server 2022', 3, null],
    ],
  );
});

t.test('database info names the file and counts rows', async (t) => {
  const { inventory, store } = setup(t);
  const info = inventory.info();
  t.equal(info.file, store.file);
  t.equal(info.clients, 20 + 3 + 6 + 2);
  t.equal(info.events, 31);
  t.ok(info.sizeBytes > 0);
});
