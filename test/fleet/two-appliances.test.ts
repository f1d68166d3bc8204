// Two branch appliances report into one fleet database: every machine and every request arrives
// once, under each site's stable id; sending again sends nothing; a renewal sends only that machine.

import t from 'tap';
import { OFFICE_2019_EXCEL, OFFICE_2019_GROUP, WINDOW, cmid, obs } from '../store/observations';
import { OFFICE_2013_APP } from '../ids';
import { connectionOf } from '../../src/store/testing';
import { appliance, fleetDatabase, postgresForFile, rows, type PgServer } from './fleet-fixture';

const NOW = Date.now();
let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

t.test('two appliances, one database', async (t) => {
  const fleet = await fleetDatabase(pg);
  const north = appliance(t, fleet.fleetConfig('North'));
  const south = appliance(t, fleet.fleetConfig('South'));

  // North: 30 Windows machines and 5 Office ones; South: 20 Windows machines, 4 of them with
  // CMIDs North has too (a cloned image), and two refusals.
  for (let n = 1; n <= 30; n++) north.store.recordActivation(obs(n), NOW - n * 60_000, WINDOW);
  for (let n = 1; n <= 5; n++) {
    north.store.recordActivation(
      obs(1000 + n, {
        applicationId: OFFICE_2013_APP,
        kmsCountedId: OFFICE_2019_GROUP,
        activationId: OFFICE_2019_EXCEL,
        requiredClientCount: 5,
      }),
      NOW,
      WINDOW,
    );
  }
  for (let n = 27; n <= 46; n++) south.store.recordActivation(obs(n, { workstationName: `south-${n}` }), NOW - 1000, WINDOW);
  south.store.recordRefusal(obs(99), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW);
  south.store.recordRefusal({ clientAddress: '10.9.9.9' }, 0x8007000d, 'KMS_ERR_KMS_VERSION', NOW);

  const n1 = await north.forwarder.syncNow();
  const s1 = await south.forwarder.syncNow();
  t.same([n1.machines, n1.events], [35, 35], 'North sent its 35 machines and 35 requests');
  t.same([s1.machines, s1.events], [21, 22], 'South sent 20 served machines, the refused one, and 22 requests');

  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const sites = await rows<{ appliance_id: string; site_name: string; host_name: string }>(
    db,
    'SELECT appliance_id, site_name, host_name FROM kms_fleet.appliances ORDER BY site_name',
  );
  t.same(
    sites.map((s) => s.site_name),
    ['North', 'South'],
  );
  const northId = north.store.getSetting('fleet.appliance_id');
  t.equal(sites[0]!.appliance_id, northId, 'the appliance id is the one kept in the local settings');
  t.not(sites[0]!.appliance_id, sites[1]!.appliance_id, 'each site has its own id');

  const perSite = await rows<{ site_name: string; machines: string; events: string }>(
    db,
    `
    SELECT a.site_name, (SELECT count(*) FROM kms_fleet.machines m WHERE m.appliance_id = a.appliance_id) AS machines,
      (SELECT count(*) FROM kms_fleet.events e WHERE e.appliance_id = a.appliance_id) AS events
    FROM kms_fleet.appliances a ORDER BY a.site_name`,
  );
  t.same(
    perSite.map((r) => [r.site_name, Number(r.machines), Number(r.events)]),
    [
      ['North', 35, 35],
      ['South', 21, 22],
    ],
  );

  // The machine as the local store holds it: names, address, product, times, result.
  const [m] = await rows<Record<string, unknown>>(
    db,
    `SELECT * FROM kms_fleet.machines m JOIN kms_fleet.appliances a USING (appliance_id)
    WHERE a.site_name = 'South' AND m.cmid = $1`,
    [cmid(27)],
  );
  t.equal(m!.workstation, 'south-27');
  t.equal(m!.address, obs(27).clientAddress);
  t.equal(m!.product_name, 'Windows 10/11 Education', 'the product by its catalogue name');
  t.equal(m!.group_name, 'Windows 10/11 2015 (Volume)');
  t.equal(m!.application_name, 'Windows');
  t.equal((m!.last_seen as Date).getTime(), NOW - 1000);
  t.equal(m!.last_result, 'activated');
  const [refused] = await rows<Record<string, unknown>>(db, 'SELECT * FROM kms_fleet.machines WHERE cmid = $1', [cmid(99)]);
  t.equal(refused!.last_counted, null, 'a refused machine is not counted');
  t.match(refused!.last_result as string, /^0xC004F06C /, 'and its last result is the refusal the client saw');
  const refusals = await rows<{ code: string; served: boolean }>(
    db,
    'SELECT code, served FROM kms_fleet.events WHERE NOT served ORDER BY code',
  );
  t.same(
    refusals.map((r) => r.code),
    ['KMS_ERR_KMS_TIME_SKEW', 'KMS_ERR_KMS_VERSION'],
    'refusal events with their codes',
  );

  // Local event ids arrive as they are, so a row can be traced back to the box's own log.
  const localIds = connectionOf(north.store).prepare('SELECT id FROM events ORDER BY id').pluck().all() as number[];
  const remoteIds = (
    await rows<{ event_id: string }>(db, 'SELECT event_id FROM kms_fleet.events WHERE appliance_id = $1 ORDER BY event_id', [northId])
  ).map((r) => Number(r.event_id));
  t.same(remoteIds, localIds);

  const again = await north.forwarder.syncNow();
  t.same([again.machines, again.events], [0, 0], 'a second send finds nothing new');

  // Renewals of three machines: those three and their requests are sent, nothing else.
  for (const n of [3, 4, 5]) north.store.recordActivation(obs(n, { workstationName: `renamed-${n}` }), NOW + 60_000, WINDOW);
  const renewal = await north.forwarder.syncNow();
  t.same([renewal.machines, renewal.events], [3, 3]);
  const [renamed] = await rows<{ workstation: string; names_seen: string[]; requests: number }>(
    db,
    'SELECT workstation, names_seen, requests FROM kms_fleet.machines WHERE appliance_id = $1 AND cmid = $2',
    [northId, cmid(3)],
  );
  t.equal(renamed!.workstation, 'renamed-3');
  t.same(renamed!.names_seen, ['pc-3.branch.example', 'renamed-3'], 'every name the CMID answered under');
  t.equal(renamed!.requests, 2);
  const total = await rows<{ n: string }>(db, 'SELECT count(*) AS n FROM kms_fleet.events');
  t.equal(Number(total[0]!.n), 35 + 22 + 3, 'every request once');

  // A third box started from a copy of North's disk carries North's appliance id: it is told.
  const clone = appliance(t, fleet.fleetConfig('North'), { hostName: 'copy-box' });
  clone.store.setSetting('fleet.appliance_id', northId!);
  clone.store.recordActivation(obs(7000), NOW, WINDOW);
  await clone.forwarder.syncNow();
  const cloneWarning = clone.log.lines.find((l) => l.level === 'warn' && l.obj.code === 'KMS_ERR_FLEET_CONFIG');
  t.equal(cloneWarning?.obj.otherHost, 'North-box', "a box reporting under another host's appliance id is warned");
  t.match(cloneWarning?.msg ?? '', /cloned/);
  await clone.forwarder.syncNow();
  t.equal(clone.log.lines.filter((l) => l.obj.code === 'KMS_ERR_FLEET_CONFIG').length, 1, 'once');
  t.notOk(
    north.log.lines.some((l) => l.obj.code === 'KMS_ERR_FLEET_CONFIG'),
    'North itself was never told',
  );

  const health = north.forwarder.health();
  t.equal(health.backlogEvents, 0);
  t.ok(health.lastSuccessMs !== null && health.lastSuccessMs >= NOW, 'health shows the last successful send');
  t.same(health.problems, []);
});

t.test('batches are bounded: a backlog larger than batchSize goes in several transactions', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Batch', { batchSize: 10 }));
  for (let n = 1; n <= 95; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [95, 95]);
  t.ok(r.batches >= 10, `sent in ${r.batches} transactions of at most 10 of each`);
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const [n] = await rows<{ m: string; e: string }>(
    db,
    'SELECT (SELECT count(*) FROM kms_fleet.machines) AS m, (SELECT count(*) FROM kms_fleet.events) AS e',
  );
  t.same([Number(n!.m), Number(n!.e)], [95, 95]);
});

t.test('names a hostile client chose cannot stop the reporting', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Hostile'));
  const names = [
    'nul\u0000inside',
    'lone\ud800surrogate',
    'quote\'"\\back',
    'bidi\u202eevil',
    "'; DROP TABLE kms_fleet.machines; --",
    'x'.repeat(300),
  ];
  names.forEach((w, i) => {
    site.store.recordActivation(obs(i + 1, { workstationName: w }), NOW, WINDOW);
  });
  site.store.recordRefusal(obs(99, { workstationName: 'nul\u0000refused' }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW);
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [names.length + 1, names.length + 1], 'every machine and event arrived');
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const got = await rows<{ workstation: string }>(db, 'SELECT workstation FROM kms_fleet.machines ORDER BY cmid');
  t.equal(got.length, names.length + 1);
  t.equal(got[0]!.workstation, 'nul\ufffdinside', 'a NUL (which PostgreSQL text cannot hold) arrives as U+FFFD');
  t.equal(got[2]!.workstation, 'quote\'"\\back', 'quotes and backslashes arrive as they are');
  t.equal(got[4]!.workstation, "'; DROP TABLE kms_fleet.machines; --", 'SQL in a name is just a name');
});

t.test('a row PostgreSQL refuses is skipped with a warning; the rest of its batch arrives', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Odd'));
  for (let n = 1; n <= 10; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  // A request count beyond PostgreSQL's integer (SQLite's is 64-bit): the row cannot be stored.
  connectionOf(site.store).prepare('UPDATE clients SET requests = 3000000000 WHERE cmid = ?').run(cmid(4));
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [10, 10], 'the batch was dealt with');
  const warning = site.log.lines.find((l) => l.level === 'warn' && l.obj.skippedMachines !== undefined);
  t.same([warning?.obj.skippedMachines, warning?.obj.skippedEvents], [1, 0], 'one machine skipped, said once');
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const [n] = await rows<{ m: string; e: string }>(
    db,
    'SELECT (SELECT count(*) FROM kms_fleet.machines) AS m, (SELECT count(*) FROM kms_fleet.events) AS e',
  );
  t.same([Number(n!.m), Number(n!.e)], [9, 10], 'every other row arrived');
  const again = await site.forwarder.syncNow();
  t.same([again.machines, again.events], [0, 0], 'and the refused row is not retried forever');
  t.equal(site.forwarder.health().failingSinceMs, null, 'reporting is healthy');
});
