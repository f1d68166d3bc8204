// The local side of fleet reporting (src/fleet): the store-and-forward outbox kept in the
// activation database. Events are already an append-only log with increasing ids, so their outbox
// is a high-water mark (the last id PostgreSQL acknowledged); machines are state, so their outbox
// is the difference between `clients` and `fleet_sent` (what PostgreSQL acknowledged of each).
// Everything here reads in bounded slices: the forwarder calls it from a timer, never from a request.

import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { EventRow } from './rows';

/** Settings keys (the `settings` table) of the fleet outbox. */
export const FLEET_SETTING = Object.freeze({
  applianceId: 'fleet.appliance_id',
  eventsAcked: 'fleet.events_acked', // highest local event id PostgreSQL committed
  eventOffset: 'fleet.event_offset', // added to local ids if the local id sequence ever restarts
  lastSuccessMs: 'fleet.last_success_ms',
  lastAttemptMs: 'fleet.last_attempt_ms',
  lastError: 'fleet.last_error',
  lastErrorMs: 'fleet.last_error_ms',
  droppedEvents: 'fleet.dropped_events',
} as const);

/** One machine as the fleet database receives it. */
export interface OutboxMachine {
  readonly application: string;
  readonly cmid: string;
  readonly workstation: string;
  readonly previousWorkstation: string;
  readonly address: string;
  readonly sku: string;
  readonly kmsGroup: string;
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  readonly lastCountedMs: number | null;
  readonly lastHresult: number;
  readonly licenseStatus: number;
  readonly protocolVersion: number;
  readonly vm: boolean;
  readonly requests: number;
}

/** One request of the local event log. */
export interface OutboxEvent {
  readonly id: number;
  readonly timeMs: number;
  readonly served: boolean;
  readonly hresult: number;
  readonly code: string;
  readonly application: string;
  readonly kmsGroup: string;
  readonly sku: string;
  readonly cmid: string;
  readonly workstation: string;
  readonly address: string;
  readonly licenseStatus: number;
  readonly protocolVersion: number;
  readonly requiredCount: number;
  readonly currentCount: number;
}

// Bounds of the (application, cmid) key space: ids are ASCII GUIDs, U+FFFF sorts above them all.
const KEY_MIN: readonly [string, string] = ['', ''];
const KEY_MAX: readonly [string, string] = ['\uffff', '\uffff'];

/** Where a pass over the machines stands: the last key looked at, or the start. */
export type MachineCursor = readonly [application: string, cmid: string] | undefined;

export interface MachineSlice {
  /** Machines changed since PostgreSQL last acknowledged them. */
  readonly changed: OutboxMachine[];
  /** Continue here; undefined = the pass reached the end of the table. */
  readonly next: MachineCursor;
  readonly scanned: number;
}

export interface OutboxState {
  readonly applianceId: string | undefined;
  readonly eventsAcked: number;
  readonly eventOffset: number;
  readonly lastSuccessMs: number | null;
  readonly lastAttemptMs: number | null;
  readonly lastError: string | null;
  readonly lastErrorMs: number | null;
  readonly droppedEvents: number;
}

export interface EventBacklog {
  /** Events not yet acknowledged that are still in the local log. */
  readonly count: number;
  /** Time of the oldest of them; null when none waits. */
  readonly oldestMs: number | null;
  /** Unacknowledged events the local log no longer holds (pruned or dropped), beyond the mark. */
  readonly firstAvailableId: number | null;
  readonly lastId: number | null;
}

interface ClientDbRow {
  application: string;
  cmid: string;
  workstation: string;
  previous_workstation: string;
  client_address: string;
  sku: string;
  kms_group: string;
  first_seen_ms: number;
  last_seen_ms: number;
  last_counted_ms: number | null;
  last_hresult: number;
  license_status: number;
  protocol_version: number;
  vm: number;
  requests: number;
  sent_seen_ms: number | null;
  sent_requests: number | null;
}

/** An event as the outbox reads it: the stored event row's columns it sends, with its id. */
type EventDbRow = { id: number } & Pick<
  EventRow,
  | 'time_ms'
  | 'served'
  | 'hresult'
  | 'code'
  | 'application'
  | 'kms_group'
  | 'sku'
  | 'cmid'
  | 'workstation'
  | 'client_address'
  | 'license_status'
  | 'protocol_version'
  | 'required_count'
  | 'current_count'
>;

const MACHINE_COLUMNS = `c.application, c.cmid, c.workstation, c.previous_workstation, c.client_address, c.sku, c.kms_group,
  c.first_seen_ms, c.last_seen_ms, c.last_counted_ms, c.last_hresult, c.license_status, c.protocol_version, c.vm, c.requests,
  s.last_seen_ms AS sent_seen_ms, s.requests AS sent_requests`;

function toMachine(r: ClientDbRow): OutboxMachine {
  return {
    application: r.application,
    cmid: r.cmid,
    workstation: r.workstation,
    previousWorkstation: r.previous_workstation,
    address: r.client_address,
    sku: r.sku,
    kmsGroup: r.kms_group,
    firstSeenMs: r.first_seen_ms,
    lastSeenMs: r.last_seen_ms,
    lastCountedMs: r.last_counted_ms,
    lastHresult: r.last_hresult >>> 0,
    licenseStatus: r.license_status,
    protocolVersion: r.protocol_version,
    vm: r.vm !== 0,
    requests: r.requests,
  };
}

function toEvent(r: EventDbRow): OutboxEvent {
  return {
    id: r.id,
    timeMs: r.time_ms,
    served: r.served !== 0,
    hresult: r.hresult >>> 0,
    code: r.code,
    application: r.application,
    kmsGroup: r.kms_group,
    sku: r.sku,
    cmid: r.cmid,
    workstation: r.workstation,
    address: r.client_address,
    licenseStatus: r.license_status,
    protocolVersion: r.protocol_version,
    requiredCount: r.required_count,
    currentCount: r.current_count,
  };
}

/** The outbox over one connection: the server's own (the forwarder) or a read-only one (status). */
export class FleetOutbox {
  private readonly getSetting: Database.Statement;
  private readonly putSetting: Database.Statement | undefined;
  private readonly sliceFromStart: Database.Statement;
  private readonly sliceAfter: Database.Statement;
  private readonly eventsAfter: Database.Statement;
  private readonly eventBounds: Database.Statement;
  private readonly oldestAfter: Database.Statement;
  private readonly markSent: Database.Statement | undefined;
  private readonly forgetGone: Database.Statement | undefined;

  constructor(
    private readonly db: Database.Database,
    /**
     * Called before each write: the server's store ends a checkpoint cycle first, since these
     * writes may commit on their own (wal-checkpoints.ts).
     */
    private readonly beforeWrite: () => void = () => {},
  ) {
    this.getSetting = db.prepare('SELECT value FROM settings WHERE key = ?').pluck();
    this.putSetting = db.readonly
      ? undefined
      : db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    // A slice is bounded by the rows it reads, not by the rows it finds changed: a pass over a
    // site where nothing changed costs the same small steps as one where everything did.
    const slice = (where: string): string => `
      SELECT ${MACHINE_COLUMNS} FROM (SELECT * FROM clients ${where} ORDER BY application, cmid LIMIT ?) c
      LEFT JOIN fleet_sent s ON s.application = c.application AND s.cmid = c.cmid
      ORDER BY c.application, c.cmid`;
    this.sliceFromStart = db.prepare(slice(''));
    this.sliceAfter = db.prepare(slice('WHERE (application, cmid) > (?, ?)'));
    this.eventsAfter = db.prepare(`
      SELECT id, time_ms, served, hresult, code, application, kms_group, sku, cmid, workstation, client_address,
        license_status, protocol_version, required_count, current_count
      FROM events WHERE id > ? ORDER BY id LIMIT ?`);
    this.eventBounds = db.prepare('SELECT MIN(id) AS lo, MAX(id) AS hi FROM events');
    this.oldestAfter = db.prepare('SELECT id, time_ms FROM events WHERE id > ? ORDER BY id LIMIT 1');
    if (!db.readonly) {
      this.markSent = db.prepare(`
        INSERT INTO fleet_sent (application, cmid, last_seen_ms, requests) VALUES (?, ?, ?, ?)
        ON CONFLICT (application, cmid) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, requests = excluded.requests`);
      // Bounded to the key range a slice just read, so it costs what the slice cost.
      this.forgetGone = db.prepare(`
        DELETE FROM fleet_sent WHERE (application, cmid) > (?, ?) AND (application, cmid) <= (?, ?)
          AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.application = fleet_sent.application AND c.cmid = fleet_sent.cmid)`);
    }
  }

  private put(key: string, value: string): void {
    if (!this.putSetting) throw new Error('the fleet outbox was opened read-only');
    this.beforeWrite();
    this.putSetting.run(key, value);
  }

  /** The site's stable id: generated once (UUID v4) and kept in the settings. */
  applianceId(): string {
    const existing = this.getSetting.get(FLEET_SETTING.applianceId) as string | undefined;
    if (existing !== undefined) return existing;
    const id = randomUUID();
    this.put(FLEET_SETTING.applianceId, id);
    return id;
  }

  state(): OutboxState {
    const text = (k: string): string | null => (this.getSetting.get(k) as string | undefined) ?? null;
    const num = (k: string): number | null => {
      const v = text(k);
      return v === null ? null : Number(v);
    };
    return {
      applianceId: text(FLEET_SETTING.applianceId) ?? undefined,
      eventsAcked: num(FLEET_SETTING.eventsAcked) ?? 0,
      eventOffset: num(FLEET_SETTING.eventOffset) ?? 0,
      lastSuccessMs: num(FLEET_SETTING.lastSuccessMs),
      lastAttemptMs: num(FLEET_SETTING.lastAttemptMs),
      lastError: text(FLEET_SETTING.lastError),
      lastErrorMs: num(FLEET_SETTING.lastErrorMs),
      droppedEvents: num(FLEET_SETTING.droppedEvents) ?? 0,
    };
  }

  /**
   * Reads up to `rows` machines after the cursor and returns those changed since acknowledged,
   * stopping early once `maxChanged` are found (the cursor then points at the last one returned).
   */
  machineSlice(cursor: MachineCursor, rows: number, maxChanged: number = rows): MachineSlice {
    const found = (cursor === undefined ? this.sliceFromStart.all(rows) : this.sliceAfter.all(cursor[0], cursor[1], rows)) as ClientDbRow[];
    const changed: OutboxMachine[] = [];
    let scanned = 0;
    for (const r of found) {
      scanned++;
      if (r.sent_seen_ms !== r.last_seen_ms || r.sent_requests !== r.requests) {
        changed.push(toMachine(r));
        if (changed.length >= maxChanged) return { changed, next: [r.application, r.cmid], scanned };
      }
    }
    const last = found[found.length - 1];
    const next: MachineCursor = found.length < rows || last === undefined ? undefined : [last.application, last.cmid];
    this.forgetRemoved(cursor ?? KEY_MIN, next ?? KEY_MAX);
    return { changed, next, scanned };
  }

  /** Events after the high-water mark, oldest first. */
  eventsAfterMark(afterId: number, limit: number): OutboxEvent[] {
    return (this.eventsAfter.all(afterId, limit) as EventDbRow[]).map(toEvent);
  }

  eventBacklog(afterId: number): EventBacklog {
    const { lo, hi } = this.eventBounds.get() as { lo: number | null; hi: number | null };
    if (hi === null || lo === null || hi <= afterId) return { count: 0, oldestMs: null, firstAvailableId: lo, lastId: hi };
    const oldest = this.oldestAfter.get(afterId) as { id: number; time_ms: number } | undefined;
    // Ids are dense from the first kept one (the log is only ever pruned from its start).
    const from = Math.max(afterId + 1, lo);
    return { count: hi - from + 1, oldestMs: oldest?.time_ms ?? null, firstAvailableId: lo, lastId: hi };
  }

  /**
   * Called once PostgreSQL committed a batch: records what it now holds, in one local
   * transaction. Should this fail, the batch is sent again later and the idempotent writes on
   * the PostgreSQL side make the second delivery a no-op.
   */
  acknowledge(machines: readonly OutboxMachine[], eventsAcked: number, nowMs: number): void {
    const mark = this.markSent!;
    this.beforeWrite();
    this.db.transaction(() => {
      for (const m of machines) mark.run(m.application, m.cmid, m.lastSeenMs, m.requests);
      this.put(FLEET_SETTING.eventsAcked, String(eventsAcked));
      this.put(FLEET_SETTING.lastSuccessMs, String(nowMs));
      this.put(FLEET_SETTING.lastAttemptMs, String(nowMs));
    })();
  }

  /** Moves the event mark without sending (outbox full, or ids restarted): counted as dropped. */
  skipEvents(eventsAcked: number, dropped: number, eventOffset?: number): void {
    this.beforeWrite();
    this.db.transaction(() => {
      this.put(FLEET_SETTING.eventsAcked, String(eventsAcked));
      const before = Number((this.getSetting.get(FLEET_SETTING.droppedEvents) as string | undefined) ?? 0);
      this.put(FLEET_SETTING.droppedEvents, String(before + dropped));
      if (eventOffset !== undefined) this.put(FLEET_SETTING.eventOffset, String(eventOffset));
    })();
  }

  recordFailure(message: string, nowMs: number): void {
    this.beforeWrite();
    this.db.transaction(() => {
      this.put(FLEET_SETTING.lastError, message);
      this.put(FLEET_SETTING.lastErrorMs, String(nowMs));
      this.put(FLEET_SETTING.lastAttemptMs, String(nowMs));
    })();
  }

  /**
   * Drops acknowledgements of machines the store no longer has (a re-imaged machine's old CMID
   * is replaced by its new one) in the key range (from, to]; a read-only outbox leaves them.
   */
  private forgetRemoved(from: readonly [string, string], to: readonly [string, string]): void {
    if (this.forgetGone === undefined) return;
    this.beforeWrite();
    this.forgetGone.run(from[0], from[1], to[0], to[1]);
  }
}
