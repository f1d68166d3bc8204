// Messages between the admin listener and its snapshot worker.
import type { Entitlement } from '../store/compliance';
import type { CountFacts } from '../metrics/sources';
import type { InventoryView } from './snapshot';
import type { MachinePage, MachineQuery } from './inventory-reads';

export interface SnapshotWorkerData {
  readonly dataDir: string;
  readonly catalogFile: string;
}

export type WorkerRequest =
  | { readonly id: number; readonly op: 'status'; readonly nowMs: number; readonly entitlements: readonly Entitlement[] }
  | { readonly id: number; readonly op: 'counts'; readonly nowMs: number }
  | { readonly id: number; readonly op: 'machines'; readonly nowMs: number; readonly query: MachineQuery };

export type WorkerValue = InventoryView | CountFacts | MachinePage;

export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly value: WorkerValue }
  | { readonly id: number; readonly ok: false; readonly error: string };
