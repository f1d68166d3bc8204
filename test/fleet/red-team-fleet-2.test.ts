// Red-team round 2 on fleet reporting, against a real PostgreSQL: a batch is bounded in bytes
// whatever fleet.batchSize allows, a statement that waits for a lock ends on the server well before
// the client's own timeout, and rows the database refused are tried again on their own schedule.

import t from 'tap';
import { Client } from 'pg';
import { MAX_TABLE_BATCH_BYTES } from '../../src/fleet/forwarder';
import { WINDOW, obs } from '../store/observations';
import { settledWithin } from '../wait';
import { appliance, fleetDatabase, postgresForFile, rows, type PgServer } from './fleet-fixture';

const NOW = Date.now();
let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

/** Records the largest text parameter any pg Client sends while `fn` runs. */
async function largestParameter<T>(fn: () => Promise<T>): Promise<{ result: T; bytes: number }> {
  const proto = Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  let bytes = 0;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const params = Array.isArray(args[1]) ? (args[1] as unknown[]) : [];
    for (const p of params) if (typeof p === 'string') bytes = Math.max(bytes, Buffer.byteLength(p));
    return original.apply(this, args);
  };
  try {
    return { result: await fn(), bytes };
  } finally {
    proto.query = original;
  }
}

t.test('fleet.batchSize 100,000 does not make a batch of megabytes: each stays within the byte budget', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Wide', { batchSize: 100_000 }));
  const MACHINES = 3000;
  // Long names, as a site of long FQDNs has: about 3.5 MB of JSON for the machines and events.
  const name = (n: number): string => `workstation-${n}-of-a-long-site-name.branch.example.org`;
  for (let n = 1; n <= MACHINES; n++) site.store.recordActivation(obs(n, { workstationName: name(n) }), NOW, WINDOW);
  const { result, bytes } = await largestParameter(() => site.forwarder.syncNow());
  t.same([result.machines, result.events], [MACHINES, MACHINES], 'every machine and event is sent');
  t.ok(result.batches > 1, `in ${result.batches} batches, not one`);
  t.ok(bytes <= MAX_TABLE_BATCH_BYTES, `the largest statement carried ${bytes} bytes of rows (budget ${MAX_TABLE_BATCH_BYTES})`);
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const [n] = await rows<{ m: string; e: string }>(
    db,
    'SELECT (SELECT count(*) FROM kms_fleet.machines) AS m, (SELECT count(*) FROM kms_fleet.events) AS e',
  );
  t.same([Number(n!.m), Number(n!.e)], [MACHINES, MACHINES], 'and all of them are in the fleet database');
  t.equal((await site.forwarder.syncNow()).machines, 0, 'a second pass sends nothing');
});

t.test('a table locked at head office ends the statement on the server after seconds, not at the 30 s client timeout', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Locked'));
  for (let n = 1; n <= 3; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  // What fleet init or an ALTER TABLE does: an exclusive lock held by a transaction left open.
  await su.query('BEGIN');
  await su.query('LOCK TABLE kms_fleet.machines IN ACCESS EXCLUSIVE MODE');
  // Bounded well below the client's own 30 s: the old behaviour waits that long and fails here.
  const outcome = await settledWithin(
    site.forwarder.syncNow().then(
      () => 'sent through a locked table',
      (err: Error) => err,
    ),
    20_000,
    'still waiting',
  );
  t.type(outcome, Error, 'the attempt ends with an error');
  t.equal((outcome as { code?: string }).code, '55P03', 'the server gave up the lock wait (lock_timeout)');
  t.match(
    site.forwarder.health().lastError ?? '',
    /stayed locked by another session/,
    'health says a table is locked, not that the network is down',
  );
  const waiting = await rows<{ n: string }>(
    su,
    "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'kms-appliance' AND wait_event_type = 'Lock'",
  );
  t.equal(Number(waiting[0]!.n), 0, 'no statement of the box is left waiting on the server');
  t.equal(site.store.fleetOutbox().state().eventsAcked, 0, 'nothing is marked as sent');
  await su.query('COMMIT');
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [3, 3], 'once the lock is gone the batch goes through');
});

/** A clock the test moves: the retries of refused rows are due by it. */
function manualClock(): { now(): number; advance(ms: number): void } {
  let ms = NOW;
  return { now: () => ms, advance: (d) => void (ms += d) };
}

const MINUTE = 60_000;

t.test('two rows a constraint refuses do not stop the batch, and are tried again on their own schedule', async (t) => {
  const fleet = await fleetDatabase(pg);
  const clock = manualClock();
  const site = appliance(t, fleet.fleetConfig('Picky'), { clock });
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  // Head office refuses long names for a while; the site's only two machines have them.
  await su.query('ALTER TABLE kms_fleet.machines ADD CONSTRAINT short_names CHECK (length(workstation) < 20)');
  for (let n = 1; n <= 2; n++) site.store.recordActivation(obs(n, { workstationName: `a-rather-long-name-${n}.example` }), NOW, WINDOW);
  const count = async (): Promise<[number, number]> => {
    const [r] = await rows<{ m: string; e: string }>(
      su,
      'SELECT (SELECT count(*) FROM kms_fleet.machines) AS m, (SELECT count(*) FROM kms_fleet.events) AS e',
    );
    return [Number(r!.m), Number(r!.e)];
  };

  await site.forwarder.syncNow();
  t.same(await count(), [0, 2], 'the events arrive; the two refused machines wait');
  t.equal(site.forwarder.health().failingSinceMs, null, 'reporting is not failing');
  const warning = site.log.lines.find((l) => l.obj.skippedMachines !== undefined);
  t.same([warning?.obj.skippedMachines, warning?.obj.retried], [2, 2], 'the warning says two rows are tried again');

  await su.query('ALTER TABLE kms_fleet.machines DROP CONSTRAINT short_names');
  await site.forwarder.syncNow();
  t.same(await count(), [0, 2], 'not before their time');
  clock.advance(MINUTE + 1);
  // Nothing else changed at the site: the retry comes on its own.
  const r = await site.forwarder.syncNow();
  t.equal(r.machines, 0, 'no machine changed');
  t.same(await count(), [2, 2], 'the two machines arrive at their retry');
  t.ok(
    site.log.lines.some((l) => l.obj.event === 'fleet-refused-arrived' && l.obj.rows === 2),
    'said once they arrived',
  );
});

t.test('rows refused on every try are given up after the last one, said once', async (t) => {
  const fleet = await fleetDatabase(pg);
  const clock = manualClock();
  const site = appliance(t, fleet.fleetConfig('Stubborn'), { clock });
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  await su.query('ALTER TABLE kms_fleet.machines ADD CONSTRAINT short_names CHECK (length(workstation) < 20)');
  site.store.recordActivation(obs(1), NOW, WINDOW);
  site.store.recordActivation(obs(2, { workstationName: 'a-rather-long-name-2.example' }), NOW, WINDOW);
  await site.forwarder.syncNow();
  const tries = (): number => site.log.lines.filter((l) => l.obj.gaveUp !== undefined).reduce((n, l) => n + (l.obj.gaveUp as number), 0);
  // Well past every retry (1 min, 10 min, 1 h, 6 h), one cycle after each.
  for (let i = 0; i < 8; i++) {
    clock.advance(6 * 60 * MINUTE + 1);
    await site.forwarder.syncNow();
  }
  t.equal(tries(), 1, 'the refused machine is given up once, with one warning');
  const [r] = await rows<{ m: string }>(su, 'SELECT count(*) AS m FROM kms_fleet.machines');
  t.equal(Number(r!.m), 1, 'the other machine arrived at once');
  t.equal(site.forwarder.health().failingSinceMs, null, 'and reporting stayed healthy');
});

t.test('a table refusing every row is found out even when a batch holds a single row', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Single'));
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  await su.query('ALTER TABLE kms_fleet.machines ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
  // One activation per cycle, as a quiet site has: a lone refused row was once taken for a bad one and skipped.
  site.store.recordActivation(obs(1), NOW, WINDOW);
  await t.rejects(site.forwarder.syncNow(), /refused every row/, 'the send fails as a whole');
  await su.query('ALTER TABLE kms_fleet.machines DROP CONSTRAINT refuse_all');
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [1, 1], 'the machine was kept and arrives once the table takes rows');
  const [n] = await rows<{ m: string }>(su, 'SELECT count(*) AS m FROM kms_fleet.machines');
  t.equal(Number(n!.m), 1);
});
