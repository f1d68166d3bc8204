// Store benchmark: recordActivation per second on an empty store and on one pre-filled with a
// million clients (the lookup and insert must stay flat), and the size of that store on disk.
// Alone: node dist/bench/store-bench.js [--clients N] [--data-dir DIR] [--requests N]

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore } from '../src/store/sqlite-store';
import { connectionOf } from '../src/store/testing';
import { databaseFile } from '../src/store/data-dir';
import type { ClientObservation } from '../src/host/ports';
import { generateStore, progressBar } from '../scripts/generate-store';

const WINDOW_MS = 30 * 86_400_000;

export interface StoreBenchOptions {
  /** Clients in the pre-filled store (default 1,000,000). */
  readonly clients?: number;
  /** Where the pre-filled store lives; reused when it already holds enough clients. Default var/bench-store. */
  readonly dataDir?: string;
  /** Activations timed per measurement (default 20,000). */
  readonly requests?: number;
  /** Progress and result lines; default stderr. */
  readonly log?: (line: string) => void;
}

export interface RateResult {
  /** New machines: an insert plus the window count. */
  readonly newClientsPerSecond: number;
  /** Known machines asking again: a lookup/update plus the window count. */
  readonly renewalsPerSecond: number;
}

export interface StoreBenchResult {
  readonly empty: RateResult;
  readonly large: RateResult;
  readonly clients: number;
  /** large / empty for new clients and renewals; the target is ≥ 0.8. */
  readonly ratio: { readonly newClients: number; readonly renewals: number };
  /** Database plus WAL of the pre-filled store, in bytes. */
  readonly sizeBytes: number;
}

/** A synthetic Windows 10/11 Enterprise request; `prefix` keeps the CMIDs of one run apart. */
export function observation(i: number, prefix: string): ClientObservation {
  return {
    applicationId: '55c92734-d682-4d71-983e-d6ec3f16059f',
    kmsCountedId: '58e2134f-8e11-4d17-9cb2-91069c151148',
    activationId: 'e0c42288-980c-4788-a014-c080d2e1926e',
    clientMachineId: `${prefix}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    previousClientMachineId: '00000000-0000-0000-0000-000000000000',
    workstationName: `bench-${i}.example`,
    requiredClientCount: 25,
    licenseStatus: 2,
    vmInfo: 0,
    protocolVersion: 6,
    clientAddress: '192.0.2.10',
    requestTimeMs: Date.now(),
  };
}

function measure(store: SqliteStore, requests: number, prefix: string): RateResult {
  const now = Date.now();
  const rate = (fn: (i: number) => void): number => {
    for (let i = 0; i < Math.min(2000, requests); i++) fn(i); // warm-up: JIT and page cache
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < requests; i++) fn(i);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return Math.round(requests / seconds);
  };
  // Distinct prefixes per run, so "new" machines are really new even in a reused store.
  const newClientsPerSecond = rate((i) => store.recordActivation(observation(i, prefix), now + i, WINDOW_MS));
  const renewalsPerSecond = rate((i) => store.recordActivation(observation(i, prefix), now + requests + i, WINDOW_MS));
  return { newClientsPerSecond, renewalsPerSecond };
}

function countClients(dataDir: string): number {
  if (!fs.existsSync(databaseFile(dataDir))) return 0;
  const store = SqliteStore.open(dataDir, { readonly: true });
  try {
    return connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
  } finally {
    store.close();
  }
}

function runPrefix(): string {
  return (Date.now() & 0xffffffff).toString(16).padStart(8, '0').slice(-8);
}

export async function benchStore(options: StoreBenchOptions = {}): Promise<StoreBenchResult> {
  const clients = options.clients ?? 1_000_000;
  const requests = options.requests ?? 20_000;
  const dataDir = path.resolve(options.dataDir ?? path.join('var', 'bench-store'));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  const emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-bench-empty-'));
  let empty: RateResult;
  try {
    const store = SqliteStore.open(emptyDir, {});
    try {
      empty = measure(store, requests, runPrefix());
    } finally {
      store.close();
    }
  } finally {
    fs.rmSync(emptyDir, { recursive: true, force: true });
  }
  log(`store empty: ${empty.newClientsPerSecond} new clients/s, ${empty.renewalsPerSecond} renewals/s`);

  const existing = countClients(dataDir);
  if (existing < clients) {
    log(`generating ${clients} clients in ${dataDir} (once; later runs reuse it)`);
    generateStore(dataDir, { clients, onProgress: progressBar(process.stderr, 'clients') });
  }
  const store = SqliteStore.open(dataDir, {});
  let large: RateResult;
  let total: number;
  try {
    total = connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
    large = measure(store, requests, runPrefix());
  } finally {
    store.close();
  }
  const sizeBytes =
    fs.statSync(databaseFile(dataDir)).size +
    (fs.existsSync(`${databaseFile(dataDir)}-wal`) ? fs.statSync(`${databaseFile(dataDir)}-wal`).size : 0);
  const ratio = {
    newClients: Math.round((large.newClientsPerSecond / empty.newClientsPerSecond) * 100) / 100,
    renewals: Math.round((large.renewalsPerSecond / empty.renewalsPerSecond) * 100) / 100,
  };
  log(
    `store ${total} clients: ${large.newClientsPerSecond} new clients/s (${ratio.newClients}× empty), ` +
      `${large.renewalsPerSecond} renewals/s (${ratio.renewals}× empty), ${(sizeBytes / 1048576).toFixed(1)} MiB on disk`,
  );
  return { empty, large, clients: total, ratio, sizeBytes };
}

if (require.main === module) {
  const { values } = parseArgs({
    options: { clients: { type: 'string' }, 'data-dir': { type: 'string' }, requests: { type: 'string' } },
  });
  benchStore({
    ...(values.clients !== undefined ? { clients: Number(values.clients) } : {}),
    ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
    ...(values.requests !== undefined ? { requests: Number(values.requests) } : {}),
  }).then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
