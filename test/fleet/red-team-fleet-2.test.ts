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
