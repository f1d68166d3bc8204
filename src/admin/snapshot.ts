// The admin page's status document: what the host counts and why, licences against use, cloned
// machines, refusals and the 30-day activity. Built in the snapshot worker from the store's read
// side (it takes seconds with a million clients), then completed with live facts on the main thread.
import type Database from 'better-sqlite3';
import {
  clockCorrectionNote,
  type ApplicationSummary,
  type Duplicates,
  type HostIdentityInfo,
  type Inventory,
  type RefusalSummary,
} from '../store/inventory';
import { complianceReport, skusToKeep, type ComplianceRow, type Entitlement } from '../store/compliance';
import { activationsPerDay, distinctMachines, type DayActivity } from './inventory-reads';
import type { CountFacts } from '../metrics/sources';
import type { HealthReport } from './health';
import { COUNT_WINDOW_MS } from '../host/counting';

/** Refusals are summarised over a week: long enough to catch a weekly renewal cycle. */
const REFUSAL_DAYS = 7;
/** Duplicate lists on the page stop here; `kms-appliance status` lists them all. */
const DUPLICATES_SHOWN = 50;
/** Machine ids shown under one shared name: a client that draws a new CMID per request could list thousands. */
const CMIDS_SHOWN_PER_NAME = 10;

/** The RequiredClientCount the catalogue's clients of a KMS group send (nCountPolicy); undefined for a group it does not know. */
export type GroupPolicy = (groupId: string) => number | undefined;

/**
 * An application's summary, counted against what its products' clients ask for in the catalogue
 * (Inventory.summary with the GroupPolicy): one client may send any RequiredClientCount up to
 * 1000, and the page must not then tell the administrator that 975 machines are missing.
 */
export type ApplicationView = ApplicationSummary;

export interface InventoryView {
  readonly summary: readonly ApplicationView[];
  readonly compliance: readonly ComplianceRow[];
  readonly duplicates: {
    readonly sharedCmids: Duplicates['sharedCmids'];
    /** Each with at most CMIDS_SHOWN_PER_NAME of its machine ids, and how many it has. */
    readonly sharedWorkstations: readonly (Duplicates['sharedWorkstations'][number] & { readonly cmidsTotal: number })[];
    readonly sharedCmidsTotal: number;
    readonly sharedWorkstationsTotal: number;
  };
  readonly identity: HostIdentityInfo;
  /** The host clock was set ahead and corrected in the last 30 days (Inventory.clockCorrection), in words. */
  readonly clock?: string;
  /** Refusals of the last week by reason. */
  readonly refusals: readonly RefusalSummary[];
  readonly activity: readonly DayActivity[];
  readonly machinesKnown: number;
}

/** GET /api/status and the page. */
export interface AdminSnapshot {
  readonly generatedAt: string;
  readonly version: string;
  readonly databaseFile: string;
  readonly catalog: string;
  readonly kmsListen: readonly string[];
  readonly dnsListen: readonly string[];
  readonly health: HealthReport;
  readonly inventory: InventoryView;
}

export function buildInventoryView(
  db: Database.Database,
  inventory: Inventory,
  nowMs: number,
  entitlements: readonly Entitlement[],
  policy: GroupPolicy = () => undefined,
  /** Whether the catalogue knows an Activation ID; the report keeps a row per SKU only for those. */
  knownSku: (skuId: string) => boolean = () => true,
): InventoryView {
  const dups = inventory.duplicates(nowMs);
  return {
    summary: inventory.summary(nowMs, policy),
    compliance: complianceReport(
      inventory.groupCounts(nowMs, undefined, skusToKeep(entitlements, knownSku)),
      entitlements,
      inventory.nameResolver,
    ),
    duplicates: {
      sharedCmids: dups.sharedCmids.slice(0, DUPLICATES_SHOWN),
      sharedWorkstations: dups.sharedWorkstations
        .slice(0, DUPLICATES_SHOWN)
        .map(({ machines, ...w }) => ({ ...w, cmids: w.cmids.slice(0, CMIDS_SHOWN_PER_NAME), cmidsTotal: machines ?? w.cmids.length })),
      sharedCmidsTotal: dups.sharedCmidsTotal,
      sharedWorkstationsTotal: dups.sharedWorkstationsTotal,
    },
    identity: inventory.hostIdentity(),
    ...clockOf(inventory, nowMs),
    refusals: inventory.refusalsSince(nowMs - REFUSAL_DAYS * 86_400_000),
    activity: activationsPerDay(db, nowMs),
    machinesKnown: db.prepare('SELECT count(*) FROM clients').pluck().get() as number,
  };
}

function clockOf(inventory: Inventory, nowMs: number): { clock?: string } {
  const note = clockCorrectionNote(inventory.clockCorrection(), nowMs);
  return note === undefined ? {} : { clock: note };
}

export function buildCountFacts(
  db: Database.Database,
  inventory: Inventory,
  nowMs: number,
  policy: GroupPolicy = () => undefined,
): CountFacts {
  return {
    applications: inventory
      .summary(nowMs, policy)
      .map((a) => ({ name: a.applicationName, count: a.activeMachines, threshold: a.threshold })),
    distinctMachines: distinctMachines(db, nowMs - COUNT_WINDOW_MS),
    asOfMs: nowMs,
  };
}
