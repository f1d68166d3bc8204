// `kms-appliance fleet init`: creates the schema, upgrades an older one in place (rows kept),
// changes nothing when run again, survives two runs at once, and grants exactly what it says.
// An appliance facing a schema older than it needs says what to run instead of failing obscurely.

import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { PassThrough } from 'node:stream';
import { fleetInit } from '../../src/cli/commands/fleet';
import { REMOTE_SCHEMA_VERSION, grantWriter, migrateRemote, remoteSchemaVersion } from '../../src/fleet/remote-schema';
import { WINDOW, obs } from '../store/observations';
import { appliance, fleetDatabase, postgresForFile, rows, OWNER, WRITER, type FleetDb, type PgServer } from './fleet-fixture';
import { WINDOWS_APP } from '../ids';
import { until } from '../wait';

let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

/** A configuration file naming the fleet database (as head office's admin box would have). */
function configFile(fleet: FleetDb): string {
  const p = fleet.fleetConfig('x').postgres;
  const file = path.join(pg.dir, `${fleet.database}.yaml`);
  fs.writeFileSync(
    file,
    [
      'fleet:',
      '  postgres:',
      `    host: ${p.host}`,
      `    port: ${p.port}`,
      `    database: ${p.database}`,
      `    caFile: ${p.caFile}`,
      '    serverName: localhost',
      '',
    ].join('\n'),
  );
  return file;
}

async function runInit(fleet: FleetDb, extra: string[] = []): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await fleetInit.run(
    ['--config', configFile(fleet), '--user', OWNER, '--password-file', fleet.passwordFiles.owner, ...extra],
    { stdout, stderr, env: {} },
  );
  return { code, out, err };
}

t.test('an older schema is upgraded by fleet init, keeping its rows', async (t) => {
  const fleet = await fleetDatabase(pg, { init: false });
  // The database as a previous release left it: schema version 1, with data.
  const owner = await fleet.connectAs('owner');
  t.teardown(() => owner.end());
  await migrateRemote(owner, 1);
  await owner.query(`GRANT USAGE ON SCHEMA kms_fleet TO ${WRITER}; GRANT SELECT ON kms_fleet.schema_version TO ${WRITER};
    GRANT SELECT, INSERT, UPDATE ON kms_fleet.appliances, kms_fleet.machines, kms_fleet.events TO ${WRITER}`);
  await owner.query(
    "INSERT INTO kms_fleet.appliances (appliance_id, site_name) VALUES ('11111111-1111-4111-8111-111111111111', 'Old site')",
  );
  await owner.query(`INSERT INTO kms_fleet.machines (appliance_id, application, cmid, workstation, first_seen, last_seen, last_counted)
    VALUES ('11111111-1111-4111-8111-111111111111', '${WINDOWS_APP}', 'c-old', 'old-pc', now(), now(), now())`);
  t.equal(await remoteSchemaVersion(owner), 1);

  const site = appliance(t, fleet.fleetConfig('New site'));
  site.store.recordActivation(obs(1), Date.now(), WINDOW);
  await t.rejects(site.forwarder.syncNow(), { code: 'KMS_ERR_FLEET_SCHEMA' }, 'the new appliance does not write into the old schema');
  t.match(site.forwarder.health().lastError ?? '', /version 1, this appliance needs 2: run kms-appliance fleet init/);

  const first = await runInit(fleet, ['--grant', WRITER]);
  t.equal(first.code, 0, first.err);
  t.match(first.out, /upgraded from version 1 at version 2/);
  t.equal(await remoteSchemaVersion(owner), REMOTE_SCHEMA_VERSION);
  const old = await rows<{ workstation: string; names_seen: string[]; product_name: string }>(
    owner,
    "SELECT workstation, names_seen, product_name FROM kms_fleet.machines WHERE cmid = 'c-old'",
  );
  t.same(old, [{ workstation: 'old-pc', names_seen: [], product_name: '' }], 'the old row is kept, new columns take their defaults');
  const views = await rows<{ site_name: string; active_machines: string }>(
    owner,
    'SELECT site_name, active_machines FROM kms_fleet.site_status',
  );
  t.same(
    views.map((v) => [v.site_name, Number(v.active_machines)]),
    [['Old site', 1]],
    'and the new views see it',
  );

  const again = await runInit(fleet, ['--grant', WRITER]);
  t.equal(again.code, 0);
  t.match(again.out, /at version 2; nothing to do/, 'a second run changes nothing');
  const versions = await rows<{ version: number }>(owner, 'SELECT version FROM kms_fleet.schema_version ORDER BY version');
  t.same(
    versions.map((v) => v.version),
    [1, 2],
  );

  const sent = await site.forwarder.syncNow();
  t.same([sent.machines, sent.events], [1, 1], 'the appliance reports once the schema is current');
});

t.test('fleet init on an empty database, twice at once', async (t) => {
  const fleet = await fleetDatabase(pg, { init: false });
  const [a, b] = await Promise.all([runInit(fleet, ['--grant', WRITER]), runInit(fleet, ['--grant', WRITER])]);
  t.same([a.code, b.code], [0, 0], `${a.err}${b.err}`);
  t.match(a.out + b.out, /created at version 2/, 'one run created the schema');
  t.match(a.out + b.out, /nothing to do/, 'the other found it current');
  const owner = await fleet.connectAs('owner');
  t.teardown(() => owner.end());
  t.equal(await remoteSchemaVersion(owner), REMOTE_SCHEMA_VERSION);
});

t.test('a grant while another fleet init holds its lock waits its turn instead of failing', async (t) => {
  const fleet = await fleetDatabase(pg);
  const first = await fleet.connectAs('owner');
  const second = await fleet.connectAs('owner');
  t.teardown(() => Promise.all([first.end(), second.end()]));
  // The first run is granting: it holds the init lock and the catalogue row of the schema's grants.
  await first.query('BEGIN');
  await first.query("SELECT pg_advisory_xact_lock(hashtext('kms_fleet.migrate'))");
  await first.query(`GRANT USAGE ON SCHEMA kms_fleet TO ${WRITER}`);
  const secondRun = grantWriter(second, WRITER).then(
    () => 'granted',
    (err: Error) => err.message,
  );
  const watcher = await fleet.connectAs('owner');
  t.teardown(() => watcher.end());
  const waiting = async () =>
    Number((await watcher.query("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).rows[0].n) > 0;
  await until(waiting, 'the second run waiting on a lock', { everyMs: 20, ms: 10_000 });
  await first.query('COMMIT');
  // Without the lock PostgreSQL fails the second GRANT on that row: "tuple concurrently updated".
  t.equal(await secondRun, 'granted');
});

t.test('fleet init explains a connection problem in one line', async (t) => {
  const fleet = await fleetDatabase(pg, { init: false });
  const wrong = pg.writePasswordFile('wrong-owner', 'nope');
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let err = '';
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await fleetInit.run(['--config', configFile(fleet), '--user', OWNER, '--password-file', wrong], { stdout, stderr, env: {} });
  t.equal(code, 1);
  t.match(
    err,
    /^kms-appliance fleet init: PostgreSQL at kms_fleet_owner@127\.0\.0\.1:\d+\/kms_fleet_\d+ refused the password of role kms_fleet_owner/,
  );
  t.equal(err.trim().split('\n').length, 1, 'one line');
  err = '';
  const loose = pg.writePasswordFile('loose-owner', fleet.passwords.owner, 0o644);
  const refused = await fleetInit.run(['--config', configFile(fleet), '--user', OWNER, '--password-file', loose], {
    stdout,
    stderr,
    env: {},
  });
  t.equal(refused, 2, 'a password file others can read is a configuration error');
  t.match(err, /readable or writable by group or others \(mode 644\).*\[KMS_ERR_FLEET_CONFIG\]\n$/);
  t.equal(err.trim().split('\n').length, 1, 'one line');
  const usage = await fleetInit.run(['--config', configFile(fleet), '--grant', 'x; DROP TABLE y'], { stdout, stderr, env: {} });
  t.equal(usage, 2, 'a role name that is not one is a usage error');
});
