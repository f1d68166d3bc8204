// A large site synchronised: every machine of a generated store arrives once with its product,
// a second pass sends nothing, and the forwarder yields to the event loop between slices and
// batches (the KMS path is never held up for a whole synchronisation). The 100,000-machine
// figure and its timing are in bench/fleet-sync.ts (npm run bench:fleet).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { loadCatalog } from '../../src/catalog/load';
import { catalogNames } from '../../src/catalog/names';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { FleetForwarder } from '../../src/fleet/forwarder';
import { generateStore } from '../../scripts/generate-store';
import { fleetDatabase, postgresForFile, recordingLog, rows, type PgServer } from './fleet-fixture';

const MACHINES = 12_000;
let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

t.test(`${MACHINES} machines synchronised`, async (t) => {
  const fleet = await fleetDatabase(pg);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-volume-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  generateStore(dataDir, { clients: MACHINES });
  const store = SqliteStore.open(dataDir);
  t.teardown(() => store.close());
  const forwarder = new FleetForwarder({
    outbox: store.fleetOutbox(),
    fleet: fleet.fleetConfig('Big', { batchSize: 2000 }),
    log: recordingLog(),
    names: catalogNames(loadCatalog()),
    softwareVersion: 'test',
  });
  t.teardown(() => forwarder.stop());

  let ticks = 0;
  const ticker = setInterval(() => ticks++, 0);
  const first = await forwarder.syncNow();
  clearInterval(ticker);
  t.equal(first.machines, MACHINES, 'every machine sent');
  t.ok(
    ticks >= first.batches,
    `timers ran ${ticks} times during ${first.batches} batches: the event loop was never held for the whole sync`,
  );

  const local = connectionOf(store)
    .prepare(
      'SELECT application, count(*) AS n, sum(CASE WHEN last_counted_ms IS NULL THEN 0 ELSE 1 END) AS counted FROM clients GROUP BY ' +
        'application ORDER BY application',
    )
    .all() as { application: string; n: number; counted: number }[];
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const remote = await rows<{ application: string; n: string; counted: string }>(
    db,
    'SELECT application, count(*) AS n, count(last_counted) AS counted FROM kms_fleet.machines GROUP BY application ORDER BY application',
  );
  t.same(
    remote.map((r) => ({ application: r.application, n: Number(r.n), counted: Number(r.counted) })),
    local,
    'per application, the same machines as the local store',
  );
  const [unnamed] = await rows<{ n: string }>(
    db,
    "SELECT count(*) AS n FROM kms_fleet.machines WHERE product_name = '' OR group_name = ''",
  );
  t.equal(Number(unnamed!.n), 0, 'every machine carries its product and group names');

  const second = await forwarder.syncNow();
  t.equal(second.machines, 0, 'a second pass sends nothing');
});
