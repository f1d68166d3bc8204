// Secure by default: the password comes from a file only the service can read, the server's
// certificate must chain to the configured CA and carry the expected name, the appliances' role
// can write its rows and nothing else, and no password ever reaches a log line. And the running
// appliance forwards real activations without the clients noticing the database at all.

import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { Client } from 'pg';
import type { KmsError } from '../../src/errors';
import { connectionConfig, explainPostgresError, readPasswordFile } from '../../src/fleet/pg-connection';
import { WINDOW, obs } from '../store/observations';
import { makeCertificates } from './postgres-harness';
import { appliance, fleetDatabase, postgresForFile, rows, WRITER, type PgServer } from './fleet-fixture';
import { startHarness, product } from '../server/appliance-harness';
import { activate } from '../../src/client/kms-client';
import { until } from '../wait';

let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as KmsError).code;
  }
}

t.test('a password file readable by group or others is refused with one clear line', async (t) => {
  const fleet = await fleetDatabase(pg, { init: false });
  for (const mode of [0o640, 0o604, 0o660, 0o644]) {
    const file = pg.writePasswordFile(`loose-${mode.toString(8)}`, 'secret-value', mode);
    let err: KmsError | undefined;
    try {
      readPasswordFile(file);
    } catch (e) {
      err = e as KmsError;
    }
    t.equal(err?.code, 'KMS_ERR_FLEET_CONFIG', `mode ${mode.toString(8)} refused`);
    t.notMatch(err?.message ?? '', /\n/, 'in one line');
    t.match(err?.message ?? '', new RegExp(`${file}.*chmod 600`), 'naming the file and the fix');
    t.notMatch(err?.message ?? '', /secret-value/, 'without the password');
  }
  t.equal(readPasswordFile(fleet.passwordFiles.writer), fleet.passwords.writer, 'a 0600 file is read (first line only)');
  t.equal(
    codeOf(() => readPasswordFile(path.join(pg.dir, 'missing.pw'))),
    'KMS_ERR_FLEET_CONFIG',
  );
  t.equal(
    codeOf(() => connectionConfig({ ...fleet.fleetConfig('x').postgres, caFile: '' })),
    'KMS_ERR_FLEET_CONFIG',
    'no CA file, no connection',
  );

  // The appliance refuses to start reporting, logs one line, and says so in its health.
  const loose = pg.writePasswordFile('loose-site', fleet.passwords.writer, 0o644);
  const site = appliance(t, fleet.fleetConfig('Loose', { passwordFile: loose }));
  t.equal(site.forwarder.start(0), false);
  const errors = site.log.lines.filter((l) => l.level === 'error');
  t.equal(errors.length, 1);
  t.equal(errors[0]!.obj.code, 'KMS_ERR_FLEET_CONFIG');
  t.match(site.forwarder.health().problems.join('\n'), /fleet reporting is not running: .*readable or writable by group or others/);
});

t.test('the server certificate is verified: CA and host name (verify-full)', async (t) => {
  const fleet = await fleetDatabase(pg);
  const p = fleet.fleetConfig('TLS').postgres;
  const tryConnect = async (over: Partial<typeof p>): Promise<unknown> => {
    const c = new Client(connectionConfig({ ...p, ...over }));
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.end();
      return undefined;
    } catch (err) {
      return err;
    }
  };
  t.equal(await tryConnect({}), undefined, 'the right CA and name connect');
  t.equal(await tryConnect({ serverName: '' }), undefined, 'the address itself is in the certificate too');

  const otherDir = fs.mkdtempSync(path.join(pg.dir, 'other-ca-'));
  const other = makeCertificates(otherDir);
  const untrusted = await tryConnect({ caFile: other.ca });
  t.ok(untrusted, 'a certificate from another CA is refused');
  t.match(explainPostgresError(untrusted, { ...p, caFile: other.ca }), /not signed by the CA in fleet.postgres.caFile/);

  const wrongName = await tryConnect({ serverName: 'db.example.org' });
  t.ok(wrongName, 'a certificate without the expected name is refused');
  t.match(explainPostgresError(wrongName, { ...p, serverName: 'db.example.org' }), /does not name db.example.org/);

  // The server only offers hostssl lines: a client that does not do TLS is turned away.
  const plain = new Client({
    host: pg.host,
    port: pg.port,
    user: WRITER,
    password: fleet.passwords.writer,
    database: fleet.database,
    ssl: false,
  });
  plain.on('error', () => undefined);
  const refused = await plain.connect().then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(refused, 'plain-text connections are refused by the server');
  t.match(explainPostgresError(refused, p), /no pg_hba.conf entry/);
  await plain.end().catch(() => undefined);

  const badPassword = pg.writePasswordFile('bad', 'not-the-password');
  const denied = await tryConnect({ passwordFile: badPassword });
  t.match(explainPostgresError(denied, p), /refused the password of role kms_appliance/);
  t.notMatch(explainPostgresError(denied, p), /not-the-password/);
});

t.test("the appliances' role writes its rows and can do nothing else", async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Least'));
  site.store.recordActivation(obs(1), Date.now(), WINDOW);
  await site.forwarder.syncNow();
  const writer = await fleet.connectAs('writer');
  t.teardown(() => writer.end());
  const denied = async (sql: string): Promise<string | undefined> => {
    try {
      await writer.query(sql);
      return undefined;
    } catch (err) {
      return (err as { code?: string }).code;
    }
  };
  t.equal(await denied('DELETE FROM kms_fleet.events'), '42501', 'no DELETE');
  t.equal(await denied('TRUNCATE kms_fleet.machines'), '42501', 'no TRUNCATE');
  t.equal(await denied('DROP TABLE kms_fleet.events'), '42501', 'no DDL');
  t.equal(await denied("INSERT INTO kms_fleet.entitlements VALUES ('Windows', 1000000)"), '42501', 'cannot grant itself licences');
  t.equal(await denied('SELECT * FROM kms_fleet.entitlements'), '42501', "cannot read head office's tables");
  t.equal(await denied('CREATE TABLE kms_fleet.x (a int)'), '42501', 'cannot create tables');
  const reader = await fleet.connectAs('reader');
  t.teardown(() => reader.end());
  t.equal((await rows(reader, 'SELECT * FROM kms_fleet.site_status')).length, 1, 'the reader role reads the views');
  const log = JSON.stringify(site.log.lines);
  t.notMatch(log, new RegExp(fleet.passwords.writer), 'the password is in no log line');
});

t.test('the running appliance forwards real activations off the request path', async (t) => {
  const fleet = await fleetDatabase(pg);
  const h = await startHarness(t, (c) => {
    c.fleet = { ...fleet.fleetConfig('Harness', { sendIntervalSeconds: 5 }) } as typeof c.fleet;
  });
  const win = product('Windows 10/11 Enterprise');
  const replies = [];
  for (let i = 0; i < 3; i++) replies.push(...(await activate({ host: h.host, port: h.port, product: win, workstation: `desk-${i}` })));
  t.same(
    replies.map((r) => r.hresult),
    [0, 0, 0],
    'clients are served',
  );
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  // The forwarder's first run comes one second after start, on its own timer: the fleet database
  // is asked again every 50 ms until the rows are there.
  const found = await until(
    async () => {
      const r = await rows<{ workstation: string }>(db, 'SELECT workstation FROM kms_fleet.machines ORDER BY workstation');
      return r.length >= 3 ? r : undefined;
    },
    'the machines in the fleet database',
    { everyMs: 50 },
  );
  t.same(
    found.map((r) => r.workstation),
    ['desk-0', 'desk-1', 'desk-2'],
    'the machines reached the fleet database',
  );
  const health = h.appliance.fleetHealth();
  t.ok(health && health.lastSuccessMs !== null, 'fleetHealth() shows the last successful send');
  t.equal(health?.backlogEvents, 0);
  t.notMatch(JSON.stringify(h.logs), new RegExp(fleet.passwords.writer), 'the password is in no log line');
  t.ok(
    h.logs.some((l) => l.event === 'fleet-start'),
    'the start of reporting is logged',
  );
});
