// Red-team round 2 on fleet reporting, against a real PostgreSQL: a batch is bounded in bytes
// whatever fleet.batchSize allows, a statement that waits for a lock ends on the server well before
// the client's own timeout, and rows the database refused are tried again on their own schedule.

import t from 'tap';
import { Client } from 'pg';
import { MAX_TABLE_BATCH_BYTES } from '../../src/fleet/forwarder';
import { WINDOW, obs } from '../store/observations';
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
