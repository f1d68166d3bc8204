// `kms-appliance fleet report` checked against what three sites sent: distinct machines per
// product organisation-wide (a CMID at two sites counts once) and per site, use against the
// organisation's entitlements with over-use, a silent site, and the CMIDs seen at two sites.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { fleetReport } from '../../src/cli/commands/fleet';
import type { FleetReport } from '../../src/fleet/fleet-report';
import { DAY, OFFICE_2019_EXCEL, OFFICE_2019_GROUP, WINDOW, cmid, obs } from '../store/observations';
import { OFFICE_2013_APP } from '../ids';
import { appliance, fleetDatabase, postgresForFile, READER, type FleetDb, type PgServer } from './fleet-fixture';

const NOW = Date.now();
const EDUCATION = 'Windows 10/11 Education';
const EXCEL = 'Office Excel 2019';
let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

async function runReport(fleet: FleetDb, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = fleet.fleetConfig('x').postgres;
  const config = path.join(pg.dir, `report-${fleet.database}.yaml`);
  fs.writeFileSync(
    config,
    `fleet:\n  silentAfterHours: 24\n  postgres:\n    host: ${p.host}\n    port: ${p.port}\n    database: ${p.database}\n` +
      `    user: ${READER}\n    passwordFile: ${fleet.passwordFiles.reader}\n    caFile: ${p.caFile}\n    serverName: localhost\n`,
  );
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await fleetReport.run(['--config', config, ...args], { stdout, stderr, env: {} });
  return { code, out, err };
}

t.test('the report adds up what the sites sent', async (t) => {
  const fleet = await fleetDatabase(pg);
  const north = appliance(t, fleet.fleetConfig('North'));
  const south = appliance(t, fleet.fleetConfig('South'));
  const east = appliance(t, fleet.fleetConfig('East'));
  const excel = {
    applicationId: OFFICE_2013_APP,
    kmsCountedId: OFFICE_2019_GROUP,
    activationId: OFFICE_2019_EXCEL,
    requiredClientCount: 5,
  };

  for (let n = 1; n <= 30; n++) north.store.recordActivation(obs(n), NOW - n * 1000, WINDOW);
  for (let n = 1; n <= 5; n++) north.store.recordActivation(obs(500 + n, excel), NOW, WINDOW);
  north.store.recordActivation(obs(900), NOW - 40 * DAY, WINDOW); // outside the 30 days: not counted
  // 21–30 are North's CMIDs too.
  for (let n = 21; n <= 40; n++) south.store.recordActivation(obs(n, { workstationName: `clone-${n}` }), NOW, WINDOW);
  south.store.recordRefusal(obs(950), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW); // refused: not counted
  for (let n = 100; n <= 103; n++) east.store.recordActivation(obs(n), NOW - 3 * DAY, WINDOW);
  for (const site of [north, south, east]) await site.forwarder.syncNow();

  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  await su.query("UPDATE kms_fleet.appliances SET last_contact = now() - interval '48 hours' WHERE site_name = 'East'");
  await su.query(`INSERT INTO kms_fleet.entitlements (product, licenses) VALUES ($1, 40), ('Office 2019', 10), ('Visio', 3)`, [EDUCATION]);

  const json = await runReport(fleet, ['--format', 'json']);
  t.equal(json.code, 0, json.err);
  const r = JSON.parse(json.out) as FleetReport;

  // Windows: North 1–30, South 21–40, East 100–103 → 30 + 10 new + 4 = 44 distinct machines.
  t.same(
    r.products.map((p) => [p.productName, p.activeMachines, p.sites]),
    [
      [EDUCATION, 44, 3],
      [EXCEL, 5, 1],
    ],
  );
  t.same(
    r.perSite.map((p) => [p.siteName, p.productName, p.activeMachines]),
    [
      ['East', EDUCATION, 4],
      ['North', EDUCATION, 30],
      ['North', EXCEL, 5],
      ['South', EDUCATION, 20],
    ],
  );
  t.same(
    r.compliance.map((c) => [c.product, c.licenses, c.activeMachines, c.excess, c.overUse]),
    [
      [EDUCATION, 40, 44, 4, true],
      ['Office 2019', 10, 5, 0, false],
      ['Visio', 3, 0, 0, false],
    ],
    'over-use is organisation-wide, against organisation licences',
  );
  const sites = new Map(r.sites.map((s) => [s.siteName, s]));
  t.equal(sites.get('East')?.silent, true, 'East has not reported for 48 h');
  t.ok((sites.get('East')?.silentHours ?? 0) >= 47.9);
  t.equal(sites.get('North')?.silent, false);
  t.same([sites.get('North')?.activeMachines, sites.get('South')?.activeMachines, sites.get('East')?.activeMachines], [35, 20, 4]);
  t.same(r.sharedCmids.map((c) => c.cmid).sort(), Array.from({ length: 10 }, (_, i) => cmid(21 + i)).sort(), 'the ten cloned CMIDs');
  t.same(r.sharedCmids[0]!.siteNames, ['North', 'South']);
  t.same(r.sharedCmids.find((c) => c.cmid === cmid(25))!.workstations, ['clone-25', 'pc-25.branch.example']);

  const relaxed = JSON.parse((await runReport(fleet, ['--json', '--silent-hours', '72'])).out) as FleetReport;
  t.equal(relaxed.sites.find((s) => s.siteName === 'East')?.silent, false, '--silent-hours moves the limit');

  const table = await runReport(fleet, []);
  t.equal(table.code, 0);
  t.match(table.out, /Over-used: Windows 10\/11 Education \(44 machines, 40 licences\)/);
  t.match(table.out, /Silent: East/);
  t.match(table.out, new RegExp(`${cmid(21)}\\s+North, South`));

  const csv = await runReport(fleet, ['--format', 'csv']);
  const lines = csv.out.trim().split('\r\n');
  t.equal(lines[0], 'section,site,product,machines,licenses,excess,overUse,lastContact,silentHours,silent,cmid,detail');
  t.ok(lines.includes(`entitlement,,${EDUCATION},44,40,4,yes,,,,,`), 'the over-used entitlement as a CSV row');
  t.equal(lines.filter((l) => l.startsWith('shared-cmid,')).length, 10);
});

t.test('a report without data or entitlements says so', async (t) => {
  const fleet = await fleetDatabase(pg);
  const r = await runReport(fleet, []);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /No organisation entitlements are recorded/);
  t.match(r.out, /none has reported yet/);
});

t.test('a site name another box chose is printed inert', async (t) => {
  const fleet = await fleetDatabase(pg);
  const evil = appliance(t, fleet.fleetConfig('Evil\u001b[2J\u202eSite'));
  evil.store.recordActivation(obs(1), NOW, WINDOW);
  await evil.forwarder.syncNow();
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  await su.query("UPDATE kms_fleet.appliances SET last_contact = now() - interval '48 hours'");
  const r = await runReport(fleet, []);
  t.notMatch(r.out, /\u001b|\u202e/, 'no escape or bidi character reaches the terminal');
  t.match(r.out, /Silent: Evil\\x1b\[2J\\u202eSite/, 'they are shown escaped');
});
