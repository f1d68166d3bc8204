// Runs inside the snapshot worker thread: its own read-only connection to the database (WAL: it
// never blocks the server's writes), the catalogue for names, and one request at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { loadCatalog } from '../catalog/load';
import { catalogNames } from '../catalog/names';
import { memoizeNames } from '../catalog/name-resolver';
import { databaseFile } from '../store/data-dir';
import { openDatabase } from '../store/schema';
import { boundReadCache, Inventory } from '../store/inventory';
import { buildCountFacts, buildInventoryView } from './snapshot';
import { machinePage } from './inventory-reads';
import type { WorkerRequest, WorkerResponse, SnapshotWorkerData } from './snapshot-protocol';

export function runSnapshotWorker(): void {
  const port = parentPort;
  if (!port) throw new Error('runSnapshotWorker runs in a worker thread');
  const data = workerData as SnapshotWorkerData;
  const file = databaseFile(data.dataDir);
  const db = openDatabase(file, { readonly: true, busyTimeoutMs: 5000 });
  // The worker lives in the server's process: its cache counts against the server's memory.
  boundReadCache(db);
  const catalog = loadCatalog(data.catalogFile || undefined);
  const names = memoizeNames(catalogNames(catalog));
  const policy = (groupId: string): number | undefined => catalog.kmsGroupById(groupId)?.nCountPolicy;
  const knownSku = (skuId: string): boolean => catalog.skuById(skuId) !== undefined;
  const inventory = new Inventory(db, file, names);
  port.on('message', (m: WorkerRequest | 'stop') => {
    if (m === 'stop') {
      db.close();
      port.close();
      return;
    }
    let reply: WorkerResponse;
    try {
      switch (m.op) {
        case 'status':
          reply = { id: m.id, ok: true, value: buildInventoryView(db, inventory, m.nowMs, m.entitlements, policy, knownSku) };
          break;
        case 'counts':
          reply = { id: m.id, ok: true, value: buildCountFacts(db, inventory, m.nowMs, policy) };
          break;
        case 'machines':
          reply = { id: m.id, ok: true, value: machinePage(db, names, m.query, m.nowMs) };
          break;
      }
    } catch (err) {
      reply = { id: m.id, ok: false, error: (err as Error).message };
    }
    port.postMessage(reply);
  });
}
