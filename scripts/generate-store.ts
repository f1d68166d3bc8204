// Fills a data directory with N synthetic clients (default 1,000,000) spread over the catalogue's
// applications and volume KMS groups, for the store benchmark and for trying the inventory
// commands on a big site. Run: node dist/scripts/generate-store.js --data-dir DIR [--clients N]

import { parseArgs } from 'node:util';
import { loadCatalog } from '../src/catalog/load';
import type { CatalogKmsGroup } from '../src/catalog/types';
import { SqliteStore } from '../src/store/sqlite-store';
import { connectionOf } from '../src/store/testing';

const DAY_MS = 86_400_000;
const BATCH = 20_000;

export interface GenerateOptions {
  readonly clients: number;
  /** Host time the store is "now" for; machines are last seen up to 60 days before it. */
  readonly nowMs?: number;
  /** Called after each batch with the number of clients written so far. */
  readonly onProgress?: (done: number, total: number) => void;
}

interface Product {
  readonly applicationId: string;
  readonly group: CatalogKmsGroup;
}

/** Windows 70 %, Office 2013+ 25 %, Office 2010 5 %, as a branch office might look. */
const APPLICATION_SHARE: readonly (readonly [string, number])[] = [
  ['55c92734-d682-4d71-983e-d6ec3f16059f', 0.7],
  ['0ff1ce15-a989-479d-af46-f275c6370663', 0.25],
  ['59a52881-a989-479d-af46-f275c6370663', 0.05],
];

function productsOf(applicationId: string): Product[] {
  const app = loadCatalog().applicationById(applicationId);
  if (!app) throw new Error(`application ${applicationId} is not in the catalogue`);
  return app.kmsGroups.filter((g) => !g.isRetail && !g.isPreview && g.skus.length > 0).map((group) => ({ applicationId, group }));
}

/** A deterministic CMID per index, so two runs make the same store. */
export function syntheticCmid(i: number): string {
  const hex = i.toString(16).padStart(12, '0');
  return `9e4e0000-0000-4000-8000-${hex}`;
}

export function generateStore(dataDir: string, options: GenerateOptions): { clients: number; file: string } {
  const now = options.nowMs ?? Date.now();
  const pools = APPLICATION_SHARE.map(([id, share]) => ({ share, products: productsOf(id) }));
  const store = SqliteStore.open(dataDir, {});
  try {
    const db = connectionOf(store);
    const insert = db.prepare(`
      INSERT OR REPLACE INTO clients (application, cmid, first_seen_ms, last_seen_ms, last_counted_ms, workstation,
        sku, kms_group, license_status, protocol_version, client_address, vm, requests, last_hresult, required_count)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, 0, ?)`);
    const threshold = db.prepare(`
      INSERT INTO app_required (application, required_count, last_served_ms) VALUES (?, ?, ?)
      ON CONFLICT (application, required_count) DO UPDATE SET last_served_ms = MAX(last_served_ms, excluded.last_served_ms)`);
    // One transaction per batch: a commit per row would make a million rows take minutes.
    const writeBatch = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        // A cheap deterministic spread; statistical quality does not matter here.
        const r = ((i * 2654435761) >>> 0) / 0x100000000;
        let acc = 0;
        const pool = pools.find((p) => (acc += p.share) > r) ?? pools[0]!;
        const product = pool.products[i % pool.products.length]!;
        const sku = product.group.skus[(i >>> 3) % product.group.skus.length]!;
        const lastSeen = now - Math.floor(((i * 40503) % 60_000) * ((60 * DAY_MS) / 60_000));
        const protocol = Number.parseInt(product.group.protocol, 10) || 6;
        insert.run(
          product.applicationId,
          syntheticCmid(i),
          lastSeen - 90 * DAY_MS,
          lastSeen,
          lastSeen,
          `ws-${i.toString(36)}.site${i % 97}.example`,
          sku.id,
          product.group.id,
          protocol,
          `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`,
          i % 5 === 0 ? 1 : 0,
          1 + (i % 30),
          product.group.nCountPolicy,
        );
      }
      for (const p of pools) for (const prod of p.products) threshold.run(prod.applicationId, prod.group.nCountPolicy, now);
    });
    for (let done = 0; done < options.clients; ) {
      const to = Math.min(options.clients, done + BATCH);
      writeBatch(done, to);
      done = to;
      options.onProgress?.(done, options.clients);
    }
    return { clients: options.clients, file: store.file };
  } finally {
    store.close();
  }
}

/** A one-line progress bar redrawn in place on a terminal, a line per 10 % otherwise. */
export function progressBar(stream: NodeJS.WriteStream, label: string): (done: number, total: number) => void {
  let lastDecile = -1;
  const started = Date.now();
  return (done, total) => {
    const fraction = total === 0 ? 1 : done / total;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    if (stream.isTTY) {
      const width = 30;
      const filled = Math.round(fraction * width);
      stream.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0)}% ${done}/${total} ${secs}s`,
      );
      if (done === total) stream.write('\n');
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== lastDecile) {
        lastDecile = decile;
        stream.write(`${label} ${decile * 10}% ${done}/${total} ${secs}s\n`);
      }
    }
  };
}

const USAGE = 'usage: generate-store --data-dir DIR [--clients N]';

function main(argv: string[]): number {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { 'data-dir': { type: 'string' }, clients: { type: 'string', default: '1000000' }, help: { type: 'boolean' } },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\nFills DIR/kms-appliance.db with N synthetic clients (default 1000000).\n`);
    return 0;
  }
  const clients = Number(values.clients);
  if (!values['data-dir'] || !Number.isInteger(clients) || clients < 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const result = generateStore(values['data-dir'], { clients, onProgress: progressBar(process.stderr, 'clients') });
  process.stdout.write(`${result.clients} clients in ${result.file}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
