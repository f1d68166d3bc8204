// Fleet benchmark: a site of 100,000 machines synchronised into a real PostgreSQL (started here,
// TLS and scram as in production), then a pass that finds nothing changed, then 1,000 renewals;
// with the longest event-loop stall during each (what a KMS request could have waited).
// Run: npm run bench:fleet   (node dist/bench/fleet-sync.js [--machines N] [--batch N])

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { DEFAULTS } from '../src/config/defaults';
import { loadCatalog } from '../src/catalog/load';
import { catalogNames } from '../src/catalog/names';
import { SqliteStore } from '../src/store/sqlite-store';
import { connectionOf } from '../src/store/testing';
import { FleetForwarder, type SyncResult } from '../src/fleet/forwarder';
import { connectionConfig } from '../src/fleet/pg-connection';
import { grantWriter, migrateRemote } from '../src/fleet/remote-schema';
import { generateStore } from '../scripts/generate-store';
import { startPostgres } from '../test/fleet/postgres-harness';

interface Timed {
  readonly result: SyncResult;
  readonly seconds: number;
  /** Longest event-loop delay seen during the run, in ms. */
  readonly maxStallMs: number;
}

async function timed(forwarder: FleetForwarder): Promise<Timed> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const t0 = performance.now();
  const result = await forwarder.syncNow();
  const seconds = (performance.now() - t0) / 1000;
  h.disable();
  return { result, seconds, maxStallMs: h.max / 1e6 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { machines: { type: 'string' }, batch: { type: 'string' } } });
  const machines = Number(values.machines ?? 100_000);
  const batchSize = Number(values.batch ?? 1000);
  const log = (s: string): void => void process.stderr.write(s + '\n');

  const pg = await startPostgres();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-bench-'));
  try {
    const su = await pg.connectAsSuperuser();
    await su.query("CREATE ROLE kms_appliance LOGIN PASSWORD 'bench-writer'");
    await su.query('CREATE DATABASE kms_fleet');
    await su.end();
    const fleet = {
      ...DEFAULTS.fleet,
      siteName: 'Bench',
      postgres: {
        ...DEFAULTS.fleet.postgres,
        enabled: true,
        host: pg.host,
        port: pg.port,
        passwordFile: pg.writePasswordFile('writer', 'bench-writer'),
        caFile: pg.caFile,
        serverName: 'localhost',
        batchSize,
      },
    };
    const owner = new Client(
      connectionConfig(fleet.postgres, { user: 'postgres', passwordFile: pg.writePasswordFile('su', pg.superPassword) }),
    );
    await owner.connect();
    await migrateRemote(owner);
    await grantWriter(owner, 'kms_appliance');

    log(`generating a store of ${machines} machines …`);
    generateStore(dataDir, { clients: machines });
    const store = SqliteStore.open(dataDir);
    const forwarder = new FleetForwarder({
      outbox: store.fleetOutbox(),
      fleet,
      log: { info() {}, warn() {}, error() {} },
      names: catalogNames(loadCatalog()),
      softwareVersion: 'bench',
    });

    const initial = await timed(forwarder);
    const remote = Number((await owner.query('SELECT count(*) AS n FROM kms_fleet.machines')).rows[0].n);
    const idle = await timed(forwarder);
    const db = connectionOf(store);
    const touched = db
      .prepare(
        'UPDATE clients SET last_seen_ms = last_seen_ms + 1, requests = requests + 1 WHERE (application, cmid) IN (SELECT application, ' +
          'cmid FROM clients ORDER BY cmid LIMIT 1000)',
      )
      .run().changes;
    const incremental = await timed(forwarder);
    await forwarder.stop();
    store.close();
    await owner.end();

    const rate = (n: number, s: number): string => `${Math.round(n / s).toLocaleString('en')}/s`;
    console.log(`Fleet sync of ${machines.toLocaleString('en')} machines (batch ${batchSize}, TLS, one local PostgreSQL ${pg.port}):`);
    console.log(
      `  initial sync     ${initial.result.machines} machines in ${initial.seconds.toFixed(2)} s ` +
        `(${rate(initial.result.machines, initial.seconds)}), ${initial.result.batches} transactions; ` +
        `longest event-loop stall ${initial.maxStallMs.toFixed(1)} ms; in PostgreSQL: ${remote}`,
    );
    console.log(
      `  nothing changed  pass over ${machines} machines in ${idle.seconds.toFixed(2)} s, ${idle.result.machines} sent; ` +
        `longest stall ${idle.maxStallMs.toFixed(1)} ms`,
    );
    console.log(
      `  ${touched} renewals    ${incremental.result.machines} machines in ${incremental.seconds.toFixed(2)} s; ` +
        `longest stall ${incremental.maxStallMs.toFixed(1)} ms`,
    );
  } finally {
    pg.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`fleet bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
