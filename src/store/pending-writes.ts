// What the store could not write yet (disk full, read-only, I/O error), kept so that every
// answered request reaches the file once it is writable again. Writes are coalesced per machine
// (application, CMID): a machine that asks a thousand times during an outage holds one entry, so
// memory is bounded by distinct machines, not by requests. The request log (events) is history,
// not state: it waits in its own smaller buffer whose overflow is counted, never silently lost.
import type { ClientRow, EventRow } from './rows';

export interface PendingLimits {
  /** Distinct machines (and replaced machine ids) kept while the file is unwritable. */
  readonly maxMachines: number;
  /** Event-log rows kept; beyond it the newest are counted as dropped (the log, not the count). */
  readonly maxEvents: number;
}

/** Everything one machine asked while the file was unwritable, folded into what the rows need. */
export interface PendingMachine {
  readonly application: string;
  readonly cmid: string;
  /** The first refused request, replayed with the refusal upsert (it may create the row). */
  firstRefused?: ClientRow;
  /** The first served request, replayed with the served upsert (it finds changes against the file). */
  firstServed?: ClientRow;
  /** Machine ids this one replaced (PROTOCOL.md §7.2) with its first request, renamed before `firstServed`. */
  readonly replacedFirst: string[];
  /** Requests after the first of each kind, folded (undefined = none). */
  later?: LaterWrites;
  /** Last counted time this machine will have once written (null = never served). */
  counted: number | null;
}

/**
 * A machine replaced by a later request of one that already had a row: it is only deleted, at the
 * point of the request (its own earlier writes come before, any later ones after).
 */
export interface PendingDeletion {
  readonly application: string;
  readonly deleted: string;
  readonly into: string;
}

/** Parameters of the fold statement (rows.ts FOLD_CLIENT). */
interface LaterWrites {
  application: string;
  cmid: string;
  requests: number;
  last_seen: number;
  counted: number | null;
  last_hresult: number;
  /** Latest served request's fields, or null when only refusals came later. */
  served: ClientRow | null;
  /** The workstation and address the row has after firstServed and the later served requests. */
  workstation: string;
  /** null while unknown here: firstServed came without an address, so the row kept its own. */
  client_address: string | null;
  /** The first address that came while it was unknown: whether it changed is for the row to say. */
  first_address: string | null;
  workstation_changes: number;
  previous_workstation: string;
  address_changes: number;
  previous_address: string;
}

export class PendingWrites {
  // Replay order: each machine's entry sits where its first request came, deletions where theirs
  // did. A machine that is replaced is sealed (its entry stays in place, taking no more writes);
  // should it ask again, it gets a new entry further on, as the requests happened.
  private order: (PendingMachine | PendingDeletion)[] = [];
  private machines = new Map<string, PendingMachine>();
  /** Machine ids replaced while pending: they have no row once written (for counting lookups). */
  private replacedKeys = new Set<string>();
  private events: EventRow[] = [];
  private readonly settingsMap = new Map<string, string>();
  /** Machines held, replaced ones included: what the bound applies to. */
  private units = 0;
  droppedEvents = 0;

  constructor(private readonly limits: PendingLimits) {}

  get isEmpty(): boolean {
    return this.units === 0 && this.events.length === 0 && this.settingsMap.size === 0;
  }

  get machineCount(): number {
    return this.units;
  }

  get eventCount(): number {
    return this.events.length;
  }

  get settings(): ReadonlyMap<string, string> {
    return this.settingsMap;
  }

  /** Whether this machine's request can be kept: it is held already, or the bound leaves room. */
  canKeep(application: string, cmid: string, previous: string | undefined): boolean {
    if (this.machines.has(keyOf(application, cmid))) return previous === undefined || this.units < this.limits.maxMachines;
    return this.units + (previous === undefined ? 1 : 2) <= this.limits.maxMachines;
  }

  served(row: ClientRow, previous: string | undefined): void {
    const m = this.entry(row.application, row.cmid);
    if (previous !== undefined) {
      this.seal(row.application, previous);
      this.units++;
      // With the first request the rename may hand the old row to this id (if it has none);
      // later, this id has a row, so the old one is only deleted.
      if (m.firstServed === undefined && m.firstRefused === undefined) m.replacedFirst.push(previous);
      else this.order.push({ application: row.application, deleted: previous, into: row.cmid });
    }
    m.counted = Math.max(m.counted ?? -Infinity, row.now);
    if (m.firstServed !== undefined) {
      this.fold(m, row, true);
      return;
    }
    m.firstServed = row;
    const l = m.later;
    if (l !== undefined) {
      // Refusals folded so far are replayed before this upsert; what comes after starts from it.
      l.last_hresult = row.last_hresult;
      l.last_seen = Math.max(l.last_seen, row.now);
      l.workstation = row.workstation;
      l.client_address = row.client_address === '' ? null : row.client_address;
    }
  }

  refused(row: ClientRow): void {
    const m = this.entry(row.application, row.cmid);
    if (m.firstRefused === undefined && m.firstServed === undefined) {
      m.firstRefused = row;
      return;
    }
    this.fold(m, row, false);
  }

  /** false when the buffer is full: the event is counted in droppedEvents. */
  addEvent(event: EventRow): boolean {
    if (this.events.length >= this.limits.maxEvents) {
      this.droppedEvents++;
      return false;
    }
    this.events.push(event);
    return true;
  }

  setSetting(key: string, value: string): void {
    this.settingsMap.set(key, value);
  }

  /** For counting: undefined = unknown here (ask the file), 'replaced' = no row once written. */
  lookup(application: string, cmid: string): PendingMachine | 'replaced' | undefined {
    const key = keyOf(application, cmid);
    const m = this.machines.get(key);
    if (m !== undefined) return m;
    return this.replacedKeys.has(key) ? 'replaced' : undefined;
  }

  /** Pending machines of one application, for reloading counts. */
  *machinesOf(application: string): Generator<PendingMachine> {
    for (const m of this.machines.values()) if (m.application === application) yield m;
  }

  *replacedOf(application: string): Generator<string> {
    const prefix = `${application}\n`;
    for (const k of this.replacedKeys) if (k.startsWith(prefix)) yield k.slice(prefix.length);
  }

  /** Every write in the order it must be replayed; the caller wraps this in one transaction. */
  replay(write: {
    machine(m: PendingMachine): void;
    deletion(d: PendingDeletion): void;
    event(e: EventRow): void;
    setting(key: string, value: string): void;
  }): void {
    for (const op of this.order) {
      if ('deleted' in op) write.deletion(op);
      else write.machine(op);
    }
    for (const e of this.events) write.event(e);
    for (const [k, v] of this.settingsMap) write.setting(k, v);
  }

  clear(): void {
    this.order = [];
    this.machines = new Map();
    this.replacedKeys = new Set();
    this.events = [];
    this.settingsMap.clear();
    this.units = 0;
    this.droppedEvents = 0;
  }

  private entry(application: string, cmid: string): PendingMachine {
    const key = keyOf(application, cmid);
    let m = this.machines.get(key);
    if (m === undefined) {
      m = { application, cmid, replacedFirst: [], counted: null };
      this.machines.set(key, m);
      this.order.push(m);
      this.replacedKeys.delete(key);
      this.units++;
    }
    return m;
  }

  private seal(application: string, cmid: string): void {
    const key = keyOf(application, cmid);
    this.machines.delete(key);
    this.replacedKeys.add(key);
  }

  private fold(m: PendingMachine, row: ClientRow, served: boolean): void {
    const anchor = m.firstServed;
    let l = m.later;
    if (l === undefined) {
      l = m.later = {
        application: m.application,
        cmid: m.cmid,
        requests: 0,
        last_seen: row.now,
        counted: null,
        last_hresult: row.last_hresult,
        served: null,
        workstation: anchor?.workstation ?? '',
        client_address: anchor === undefined || anchor.client_address === '' ? null : anchor.client_address,
        first_address: null,
        workstation_changes: 0,
        previous_workstation: '',
        address_changes: 0,
        previous_address: '',
      };
    }
    l.requests++;
    l.last_seen = Math.max(l.last_seen, row.now);
    l.last_hresult = row.last_hresult;
    if (!served) return;
    l.counted = Math.max(l.counted ?? -Infinity, row.now);
    l.served = row;
    // The same change tracking as UPSERT_CLIENT_SERVED, applied to the requests in between.
    if (row.workstation !== l.workstation) {
      l.workstation_changes++;
      l.previous_workstation = l.workstation;
      l.workstation = row.workstation;
    }
    if (row.client_address !== '' && l.client_address === null) {
      l.first_address = row.client_address;
      l.client_address = row.client_address;
    } else if (row.client_address !== '' && row.client_address !== l.client_address) {
      l.address_changes++;
      l.previous_address = l.client_address!;
      l.client_address = row.client_address;
    }
  }
}

function keyOf(application: string, cmid: string): string {
  return `${application}\n${cmid}`;
}
