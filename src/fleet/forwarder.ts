// Store-and-forward of the site's machines and events into the fleet database. It runs on a
// timer, reads the local outbox in bounded slices between requests and never touches the
// request path: a slow or dead database costs the KMS service nothing. Delivery is at least
// once (a batch whose acknowledgement was lost is sent again) and exactly once in effect
// (the writes are idempotent, remote-writes.ts); the local mark moves only after the remote commit.

import os from 'node:os';
import { setImmediate as yieldToRequests } from 'node:timers/promises';
import { Client } from 'pg';
import type { FleetConfig } from '../config/defaults';
import { KmsError } from '../errors';
import type { NameResolver } from '../catalog/name-resolver';
import { memoizeNames } from '../catalog/name-resolver';
import type { Clock } from '../host/ports';
import type { FleetOutbox, MachineCursor, OutboxEvent, OutboxMachine } from '../store/fleet-outbox';
import type { StoreLog } from '../store/store-log';
import { connectionConfig, describeTarget, explainPostgresError, forwarderSessionLimits, quoteServerText } from './pg-connection';
import { guardClient } from './pg-guard';
import { REMOTE_SCHEMA_VERSION, remoteSchemaVersion } from './remote-schema';
import {
  eventRowBytes,
  isRowRejection,
  machineRowBytes,
  MIN_ROW_BYTES,
  tablesTakeRows,
  writeBatch,
  type BatchWritten,
  type SiteReport,
} from './remote-writes';

/** Rows of `clients` read per slice when looking for changed machines (a few ms each). */
const SLICE_ROWS = 2000;
/**
 * The JSON of one table's rows in one batch stops at about this size, whatever fleet.batchSize
 * says: pg copies the parameter into its message and the rows exist as objects meanwhile (3–4
 * times the JSON in heap), and batchSize 100,000 meant about 50 MB against serve's 80 MB peak-RSS
 * target (README "Memory"). 1 MiB holds about 1,500 typical rows: the default 1,000 fits whole.
 */
export const MAX_TABLE_BATCH_BYTES = 1024 * 1024;
const FIRST_RETRY_MS = 5_000;
const MAX_BACKOFF_MS = 10 * 60_000; // a database back after an outage is found within 10 minutes
const STOP_WAIT_MS = 2000;
/**
 * When rows the fleet database refused are tried again, after the refusal: a constraint head
 * office added and then dropped, or a trigger fixed, lets them in at one of these; after the last
 * they are given up. Their own schedule: it does not wait for other changes to make a batch.
 */
const REFUSED_RETRY_AFTER_MS = [60_000, 10 * 60_000, 60 * 60_000, 6 * 60 * 60_000] as const;
/** Refused rows kept for those retries (about 1 KB each); beyond that a refused row is given up at once. */
const MAX_REFUSED_KEPT = 1000;
/** The schema version this release writes; a database at an older one needs `fleet init`. */
const REQUIRED_SCHEMA_VERSION = REMOTE_SCHEMA_VERSION;

export interface ForwarderOptions {
  /** The outbox on the server's own store connection (SqliteStore.fleetOutbox()). */
  readonly outbox: FleetOutbox;
  readonly fleet: FleetConfig;
  readonly log: StoreLog & { debug?(obj: object, msg: string): void };
  readonly names: NameResolver;
  readonly softwareVersion: string;
  readonly clock?: Clock;
  readonly hostName?: string;
  /** Tests shorten the retry schedule; jitter still applies. */
  readonly firstRetryMs?: number;
  readonly maxBackoffMs?: number;
  readonly random?: () => number;
}

/** What /healthz and `status` show about fleet reporting. */
export interface FleetHealth {
  readonly target: string;
  readonly siteName: string;
  readonly applianceId: string | undefined;
  readonly lastSuccessMs: number | null;
  readonly lastAttemptMs: number | null;
  readonly lastError: string | null;
  /** Since when every attempt failed; null while sending works. */
  readonly failingSinceMs: number | null;
  /** Events waiting in the local outbox. */
  readonly backlogEvents: number;
  readonly oldestUnsentMs: number | null;
  /** Changed machines found by the current pass and not yet acknowledged. */
  readonly pendingMachines: number;
  /** Events never sent because the outbox was full or the local log pruned them first. */
  readonly droppedEvents: number;
  /** Problems in the admin's words; empty when all is well. */
  readonly problems: readonly string[];
}

/** A refused row waiting for its next try; `tries` counts the retries made so far. */
interface RefusedRow {
  readonly machine?: OutboxMachine;
  readonly event?: OutboxEvent;
  readonly eventOffset: number;
  readonly tries: number;
  readonly dueMs: number;
}

const machineKey = (m: OutboxMachine): string => `m ${m.application} ${m.cmid}`;
const eventKey = (e: OutboxEvent, offset: number): string => `e ${e.id + offset}`;

export interface SyncResult {
  readonly machines: number;
  readonly events: number;
  readonly batches: number;
}

/** Exponential backoff with jitter: retries from many sites do not arrive in step. */
export function backoffMs(failures: number, firstMs: number, maxMs: number, random: () => number): number {
  const exp = Math.min(maxMs, firstMs * 2 ** Math.max(0, Math.min(30, failures - 1)));
  return Math.round(exp * (0.5 + 0.5 * random()));
}

export class FleetForwarder {
  private readonly outbox: FleetOutbox;
  private readonly names: NameResolver;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly target: string;
  private readonly siteName: string;
  private client: Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private failures = 0;
  private failingSinceMs: number | null = null;
  private lastLoggedError: string | null = null;
  private cursor: MachineCursor = undefined;
  private pendingMachines = 0;
  private warnedFull = false;
  private queue: Promise<unknown> = Promise.resolve();
  private warnedClone = false;
  /** Rows the fleet database refused, by machine key or event id, with when they are tried next. */
  private readonly refused = new Map<string, RefusedRow>();
  /** Why start() refused to run; reported by health(). */
  private refusal: string | undefined;

  constructor(private readonly options: ForwarderOptions) {
    this.outbox = options.outbox;
    this.names = memoizeNames(options.names);
    this.clock = options.clock ?? { now: () => Date.now() };
    const p = options.fleet.postgres;
    this.intervalMs = p.sendIntervalSeconds * 1000;
    this.batchSize = p.batchSize;
    this.target = describeTarget(p);
    this.siteName = options.fleet.siteName || (options.hostName ?? os.hostname());
  }

  /**
   * Starts sending soon (not at once: the appliance finishes starting first). A configuration
   * the forwarder cannot use (password file readable by others, CA file missing) is refused with
   * one error line and a standing health problem; the KMS service itself keeps serving.
   */
  start(firstDelayMs = 1000): boolean {
    if (!this.stopped) return true;
    try {
      connectionConfig(this.options.fleet.postgres);
    } catch (err) {
      if (!(err instanceof KmsError)) throw err;
      this.refusal = err.message;
      this.options.log.error({ code: err.code, fleet: this.target }, `fleet reporting is not started: ${err.message}`);
      return false;
    }
    this.stopped = false;
    let id: string;
    try {
      id = this.outbox.applianceId();
    } catch {
      // The database cannot be written right now (the store logs why); the id is made on the
      // first send instead, and that send is retried like any other.
      id = 'not yet assigned';
    }
    this.options.log.info(
      { event: 'fleet-start', fleet: this.target, site: this.siteName, applianceId: id },
      `fleet reporting to ${this.target} as site "${this.siteName}" (appliance ${id})`,
    );
    this.schedule(firstDelayMs);
    return true;
  }

  /** Stops the timer, lets a batch in flight finish or fail, and closes the connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // A batch in flight over a dead link must not hold up the shutdown: it is sent again next
    // time (its acknowledgement was not recorded), so giving up on it loses nothing.
    const settle = Promise.all([this.running?.catch(() => undefined), this.closeClient()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([settle, new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * Sends until nothing is left (or throws the first failure); the timer runs the same. Calls are
   * serialised: a second one waits for the first, so a pass is never walked twice at once.
   */
  syncNow(): Promise<SyncResult> {
    const run = this.queue.then(() => this.sendAll());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async sendAll(): Promise<SyncResult> {
    let machines = 0;
    let events = 0;
    let batches = 0;
    try {
      for (;;) {
        const step = await this.sendBatch();
        machines += step.machines;
        events += step.events;
        batches++;
        if (!step.more) break;
        await yieldToRequests();
      }
    } catch (err) {
      await this.failed(err);
      throw err;
    }
    this.recovered();
    return { machines, events, batches };
  }

  health(): FleetHealth {
    let state: ReturnType<FleetOutbox['state']>;
    let backlog: ReturnType<FleetOutbox['eventBacklog']>;
    try {
      state = this.outbox.state();
      backlog = this.outbox.eventBacklog(state.eventsAcked);
    } catch (err) {
      // A health check must answer even when the database cannot be read.
      return {
        target: this.target,
        siteName: this.siteName,
        applianceId: undefined,
        lastSuccessMs: null,
        lastAttemptMs: null,
        lastError: (err as Error).message,
        failingSinceMs: this.failingSinceMs,
        backlogEvents: 0,
        oldestUnsentMs: null,
        pendingMachines: this.pendingMachines,
        droppedEvents: 0,
        problems: [`the fleet outbox cannot be read from the local database: ${(err as Error).message}`],
      };
    }
    const now = this.clock.now();
    const problems: string[] = [];
    if (this.refusal !== undefined) problems.push(`fleet reporting is not running: ${this.refusal}`);
    const stale = state.lastSuccessMs === null ? null : now - state.lastSuccessMs;
    if (this.failingSinceMs !== null && (this.failures >= 2 || now - this.failingSinceMs > this.intervalMs)) {
      problems.push(
        `fleet reporting to ${this.target} fails since ${new Date(this.failingSinceMs).toISOString()}: ` +
          `${state.lastError ?? 'unknown error'}; ` +
          `${backlog.count} events and the machines changed meanwhile wait in the local outbox and are sent when it works again`,
      );
    } else if (stale !== null && stale > 3 * this.intervalMs + MAX_BACKOFF_MS) {
      problems.push(`nothing was sent to the fleet database since ${new Date(state.lastSuccessMs!).toISOString()}`);
    }
    if (state.droppedEvents > 0) {
      problems.push(
        `${state.droppedEvents} activation/refusal events were never sent to the fleet database (outbox full or pruned locally); ` +
          'the machine inventory and local counting are unaffected',
      );
    }
    return {
      target: this.target,
      siteName: this.siteName,
      applianceId: state.applianceId,
      lastSuccessMs: state.lastSuccessMs,
      lastAttemptMs: state.lastAttemptMs,
      lastError: this.failingSinceMs === null ? null : state.lastError,
      failingSinceMs: this.failingSinceMs,
      backlogEvents: backlog.count,
      oldestUnsentMs: backlog.oldestMs,
      pendingMachines: this.pendingMachines,
      droppedEvents: state.droppedEvents,
      problems,
    };
  }

  // ---- internals ----

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.cycle().finally(() => {
        this.running = undefined;
      });
    }, ms);
    this.timer.unref();
  }

  private async cycle(): Promise<void> {
    try {
      await this.syncNow();
      this.schedule(this.intervalMs);
    } catch {
      const o = this.options;
      this.schedule(
        backoffMs(
          this.failures,
          o.firstRetryMs ?? Math.min(FIRST_RETRY_MS, this.intervalMs),
          o.maxBackoffMs ?? MAX_BACKOFF_MS,
          o.random ?? Math.random,
        ),
      );
    }
  }

  private recovered(): void {
    if (this.failingSinceMs !== null) {
      const down = Math.round((this.clock.now() - this.failingSinceMs) / 1000);
      this.options.log.info(
        { event: 'fleet-recovered', fleet: this.target, failedSeconds: down },
        `fleet database ${this.target} reachable again after ${down} s; the outbox was sent`,
      );
    }
    this.failures = 0;
    this.failingSinceMs = null;
    this.lastLoggedError = null;
  }

  private async failed(err: unknown): Promise<void> {
    await this.closeClient();
    if (this.stopped && this.running !== undefined) return; // a shutdown cut the batch short
    this.cursor = undefined; // the pass restarts: what it found was not acknowledged
    const now = this.clock.now();
    const message = explainPostgresError(err, this.options.fleet.postgres);
    this.failures++;
    if (this.failingSinceMs === null) this.failingSinceMs = now;
    try {
      this.outbox.recordFailure(message, now);
    } catch {
      // the local store is failing too; it logs that itself
    }
    const fields = { code: err instanceof KmsError ? err.code : 'KMS_ERR_FLEET_SEND_FAILED', fleet: this.target, failures: this.failures };
    if (message !== this.lastLoggedError) {
      this.lastLoggedError = message;
      this.options.log.warn(
        fields,
        `cannot send to the fleet database: ${message}; activations go on, and the outbox keeps everything until it works again`,
      );
    } else {
      this.options.log.debug?.(fields, `fleet database still unreachable: ${message}`);
    }
  }

  private async connected(): Promise<Client> {
    if (this.client) return this.client;
    const p = this.options.fleet.postgres;
    const client = new Client({ ...connectionConfig(p), ...forwarderSessionLimits(p) });
    guardClient(client, this.target);
    // An idle connection dropped by the server or the network must not crash the process. pg
    // leaves the socket open after an error the server reports on an idle connection: it is
    // closed here, or a server doing that after every batch would cost one socket per cycle.
    client.on('error', () => {
      if (this.client === client) this.client = undefined;
      client.end().catch(() => undefined);
    });
    try {
      await client.connect();
      const version = await remoteSchemaVersion(client);
      if (version < REQUIRED_SCHEMA_VERSION) {
        throw new KmsError(
          'KMS_ERR_FLEET_SCHEMA',
          `the fleet schema in ${this.options.fleet.postgres.database} is version ${version}, ` +
            `this appliance needs ${REQUIRED_SCHEMA_VERSION}: run kms-appliance fleet init as the owner role`,
        );
      }
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    return client;
  }

  private async closeClient(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }

  /**
   * Another host name under this box's appliance id means a second box runs on a copy of this
   * one's database (a cloned VM or disk): their events would collide and one box's be dropped.
   * Said once per run, with the fix; a box whose host name changed sees it once, harmlessly.
   */
  private noticeClone(previous: string | null, site: SiteReport): void {
    if (previous === null || previous === '' || previous === site.hostName || this.warnedClone) return;
    this.warnedClone = true;
    // Any box writing as the appliances' role can put any text there: quoted, not trusted.
    const other = quoteServerText(previous, 255);
    this.options.log.warn(
      { code: 'KMS_ERR_FLEET_CONFIG', fleet: this.target, applianceId: site.applianceId, otherHost: other },
      `the fleet database knows appliance id ${site.applianceId} from host ${other}, this is ${site.hostName}: if ${other} ` +
        'still runs, one box was cloned from the other\'s disk and their reports mix; give this one its own id (see "Fleet reporting" ' +
        'in the README)',
    );
  }

  /**
   * PostgreSQL refused a value of the batch (out of range, invalid text, a constraint): sending
   * it again would fail forever and stop the reporting. Each row goes alone instead, every other
   * row arrives, and the refused rows are set aside to be tried again on their own schedule
   * (REFUSED_RETRY_AFTER_MS). When every row of a table is refused and so is a made-up ordinary
   * row, the table is to blame (a constraint or trigger head office added), not the rows: nothing
   * is set aside, and the batch is sent again until the table takes it.
   */
  private async sendRowByRow(
    client: Client,
    site: SiteReport,
    machines: readonly OutboxMachine[],
    events: readonly OutboxEvent[],
    offset: number,
    first: unknown,
  ): Promise<BatchWritten> {
    let written: BatchWritten = { previousHostName: null };
    const one = async (batch: { machines: readonly OutboxMachine[]; events: readonly OutboxEvent[] }): Promise<boolean> => {
      try {
        written = await writeBatch(client, { site, ...batch, eventOffset: offset }, this.names);
        return true;
      } catch (err) {
        if (!isRowRejection(err)) throw err;
        return false;
      }
    };
    // The site's own row alone first: if that is refused, no row is to blame and none is set aside.
    if (!(await one({ machines: [], events: [] }))) throw first;
    const refusedMachines: OutboxMachine[] = [];
    const refusedEvents: OutboxEvent[] = [];
    for (const m of machines) if (!(await one({ machines: [m], events: [] }))) refusedMachines.push(m);
    for (const e of events) if (!(await one({ machines: [], events: [e] }))) refusedEvents.push(e);
    const why = quoteServerText((first as Error).message ?? String(first));
    const refusedAll = (refused: number, of: number): boolean => of > 0 && refused === of;
    if (
      (refusedAll(refusedMachines.length, machines.length) || refusedAll(refusedEvents.length, events.length)) &&
      !(await tablesTakeRows(client, site, this.clock.now(), this.names))
    ) {
      // Setting them aside would mark the whole backlog as sent into a table that keeps none of it.
      throw new KmsError(
        'KMS_ERR_FLEET_SEND_FAILED',
        `the fleet database refused every row of the batch (${refusedMachines.length} of ${machines.length} machines, ` +
          `${refusedEvents.length} of ${events.length} events: ${why}) and an ordinary test row too; that is a constraint or ` +
          'trigger on its tables, not the rows: nothing is skipped, and the batch is sent again until the table takes it',
      );
    }
    const kept = this.setAside(refusedMachines, refusedEvents, offset);
    this.options.log.warn(
      {
        code: 'KMS_ERR_FLEET_SEND_FAILED',
        fleet: this.target,
        skippedMachines: refusedMachines.length,
        skippedEvents: refusedEvents.length,
        retried: kept,
        err: why,
      },
      `the fleet database refused ${refusedMachines.length} machines and ${refusedEvents.length} events (${why}); ` +
        'the rest keeps arriving, and ' +
        (kept > 0 ? `${kept} of them are tried again after 1 min, 10 min, 1 h and 6 h, then given up` : 'they are given up') +
        ' (local counting and the local records are unaffected)',
    );
    return written;
  }

  /** Keeps refused rows for their retries, as far as MAX_REFUSED_KEPT allows; returns how many were kept. */
  private setAside(machines: readonly OutboxMachine[], events: readonly OutboxEvent[], offset: number): number {
    const dueMs = this.clock.now() + REFUSED_RETRY_AFTER_MS[0];
    let kept = 0;
    const keep = (key: string, row: RefusedRow): void => {
      if (!this.refused.has(key) && this.refused.size >= MAX_REFUSED_KEPT) return;
      this.refused.set(key, row);
      kept++;
    };
    for (const m of machines) keep(machineKey(m), { machine: m, eventOffset: offset, tries: 0, dueMs });
    for (const e of events) keep(eventKey(e, offset), { event: e, eventOffset: offset, tries: 0, dueMs });
    return kept;
  }

  /**
   * Tries the refused rows that are due, each alone: one that is taken leaves the list, one that
   * is refused again waits for its next time, or is given up after the last. Connection failures
   * throw like any send, and the rows keep their place.
   */
  private async retryRefused(client: Client, site: SiteReport): Promise<void> {
    const now = this.clock.now();
    let gaveUp = 0;
    let arrived = 0;
    for (const [key, row] of [...this.refused]) {
      if (row.dueMs > now) continue;
      // lastEventId 0: the site row keeps its mark (the database keeps the greatest); the batch after this sets it.
      const batch = {
        site: { ...site, lastEventId: 0 },
        machines: row.machine ? [row.machine] : [],
        events: row.event ? [row.event] : [],
        eventOffset: row.eventOffset,
      };
      try {
        await writeBatch(client, batch, this.names);
        this.refused.delete(key);
        arrived++;
        continue;
      } catch (err) {
        if (!isRowRejection(err)) throw err;
      }
      const wait = REFUSED_RETRY_AFTER_MS[row.tries + 1];
      if (wait === undefined) {
        this.refused.delete(key);
        gaveUp++;
      } else this.refused.set(key, { ...row, tries: row.tries + 1, dueMs: now + wait });
    }
    if (arrived > 0) {
      this.options.log.info(
        { event: 'fleet-refused-arrived', fleet: this.target, rows: arrived },
        `${arrived} rows the fleet database had refused were taken on a later try`,
      );
    }
    if (gaveUp > 0) {
      this.options.log.warn(
        { code: 'KMS_ERR_FLEET_SEND_FAILED', fleet: this.target, gaveUp },
        `${gaveUp} rows the fleet database refused on every try over 7 hours are given up ` +
          '(a machine is sent again when it next changes; local counting and the local records are unaffected)',
      );
    }
  }

  /** Applies the outbox bound and repairs the event mark; returns where sending continues. */
  private eventMark(): { acked: number; offset: number; backlog: number } {
    const state = this.outbox.state();
    let acked = state.eventsAcked;
    let offset = state.eventOffset;
    let backlog = this.outbox.eventBacklog(acked);
    if (acked > 0 && (backlog.lastId === null || backlog.lastId < acked)) {
      // The log was emptied and ids start again at 1: shift them past everything already sent.
      offset += acked;
      acked = 0;
      this.outbox.skipEvents(0, 0, offset);
      backlog = this.outbox.eventBacklog(0);
    }
    if (backlog.firstAvailableId !== null && backlog.firstAvailableId > acked + 1 && acked > 0) {
      const pruned = backlog.firstAvailableId - acked - 1;
      this.outbox.skipEvents(backlog.firstAvailableId - 1, pruned);
      this.options.log.warn(
        { code: 'KMS_ERR_FLEET_OUTBOX_FULL', fleet: this.target, dropped: pruned },
        `${pruned} events were pruned from the local event log before they reached the fleet database; ` +
          'they will not be sent (the machine inventory is sent in full and local counting is unaffected)',
      );
      acked = backlog.firstAvailableId - 1;
    }
    const max = this.options.fleet.postgres.maxBacklogEvents;
    if (backlog.count > max && backlog.lastId !== null) {
      const newMark = backlog.lastId - max;
      const dropped = newMark - Math.max(acked, (backlog.firstAvailableId ?? 1) - 1);
      this.outbox.skipEvents(newMark, dropped);
      if (!this.warnedFull) {
        this.warnedFull = true;
        const since = backlog.oldestMs === null ? '' : ` (from ${new Date(backlog.oldestMs).toISOString()} on)`;
        this.options.log.warn(
          { code: 'KMS_ERR_FLEET_OUTBOX_FULL', fleet: this.target, dropped, maxBacklogEvents: max },
          `the fleet outbox is full (fleet.postgres.maxBacklogEvents ${max}): the oldest ${dropped} activation/refusal events${since} ` +
            'will not be sent to the fleet database; the machine inventory is still sent in full and local counting is unaffected',
        );
      }
      acked = newMark;
      backlog = this.outbox.eventBacklog(acked);
    } else if (backlog.count <= max / 2) {
      this.warnedFull = false;
    }
    return { acked, offset, backlog: backlog.count };
  }

  /** Rows to read next: what batchSize and the byte budget leave, at least one. */
  private rowsLeft(rows: number, bytes: number): number {
    return Math.max(1, Math.min(this.batchSize - rows, Math.floor((MAX_TABLE_BATCH_BYTES - bytes) / MIN_ROW_BYTES)));
  }

  /** Collects up to batchSize changed machines (and about MAX_TABLE_BATCH_BYTES) slice by slice, yielding between slices. */
  private async changedMachines(): Promise<{ machines: OutboxMachine[]; passDone: boolean }> {
    const machines: OutboxMachine[] = [];
    let bytes = 0;
    for (;;) {
      const slice = this.outbox.machineSlice(this.cursor, SLICE_ROWS, this.rowsLeft(machines.length, bytes));
      for (const m of slice.changed) {
        const size = machineRowBytes(m);
        if (machines.length > 0 && bytes + size > MAX_TABLE_BATCH_BYTES) {
          // The pass goes on after the last machine taken: the rest of the slice is read again.
          this.cursor = [machines[machines.length - 1]!.application, machines[machines.length - 1]!.cmid];
          return { machines, passDone: false };
        }
        machines.push(m);
        bytes += size;
      }
      this.cursor = slice.next;
      if (slice.next === undefined) return { machines, passDone: true };
      if (machines.length >= this.batchSize || bytes >= MAX_TABLE_BATCH_BYTES) return { machines, passDone: false };
      await yieldToRequests();
    }
  }

  /** Events after `afterId`, up to batchSize and about MAX_TABLE_BATCH_BYTES; `full` when more may wait. */
  private eventsToSend(afterId: number): { events: OutboxEvent[]; full: boolean } {
    const events: OutboxEvent[] = [];
    let bytes = 0;
    let after = afterId;
    while (events.length < this.batchSize && bytes < MAX_TABLE_BATCH_BYTES) {
      const want = Math.min(SLICE_ROWS, this.rowsLeft(events.length, bytes));
      const chunk = this.outbox.eventsAfterMark(after, want);
      for (const e of chunk) {
        const size = eventRowBytes(e);
        if (events.length > 0 && bytes + size > MAX_TABLE_BATCH_BYTES) return { events, full: true };
        events.push(e);
        bytes += size;
      }
      if (chunk.length < want) return { events, full: false };
      after = chunk[chunk.length - 1]!.id;
    }
    return { events, full: true };
  }

  /** One transaction: the site heartbeat, up to batchSize machines and up to batchSize events (each within the byte budget). */
  private async sendBatch(): Promise<{ machines: number; events: number; more: boolean }> {
    const mark = this.eventMark();
    const { events, full: moreEvents } = this.eventsToSend(mark.acked);
    const startCursor = this.cursor;
    const { machines, passDone } = await this.changedMachines();
    this.pendingMachines = machines.length;
    const lastEvent = events[events.length - 1];
    const acked = lastEvent?.id ?? mark.acked;
    const site: SiteReport = {
      applianceId: this.outbox.applianceId(),
      siteName: this.siteName,
      hostName: this.options.hostName ?? os.hostname(),
      softwareVersion: this.options.softwareVersion,
      lastEventId: acked + mark.offset,
      backlogEvents: Math.max(0, mark.backlog - events.length),
    };
    const client = await this.connected();
    if (this.refused.size > 0) await this.retryRefused(client, site);
    let written: BatchWritten;
    try {
      written = await writeBatch(client, { site, machines, events, eventOffset: mark.offset }, this.names);
    } catch (err) {
      if (!isRowRejection(err)) {
        this.cursor = startCursor;
        throw err;
      }
      written = await this.sendRowByRow(client, site, machines, events, mark.offset, err);
    }
    // Stopped meanwhile: the store may be closing. Not acknowledging only means the batch is sent
    // again after the restart, where the idempotent writes make it a no-op.
    if (this.stopped && this.running !== undefined) return { machines: 0, events: 0, more: false };
    this.noticeClone(written.previousHostName, site);
    // Only now, after PostgreSQL committed: a crash before this line resends the batch, harmlessly.
    this.outbox.acknowledge(machines, acked, this.clock.now());
    // A machine sent whole since it was refused needs no retry of its older state (that would
    // overwrite the newer row); one refused again was set aside anew with its newer state.
    for (const m of machines) {
      const key = machineKey(m);
      if (this.refused.get(key)?.machine !== m) this.refused.delete(key);
    }
    this.pendingMachines = 0;
    return { machines: machines.length, events: events.length, more: moreEvents || !passDone };
  }
}
