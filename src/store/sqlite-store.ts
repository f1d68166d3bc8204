// The durable ActivationStore (src/host/ports.ts) on SQLite: counts distinct machines per
// application in the rolling window (PROTOCOL.md §7.2) so the count survives restarts, kill -9
// and full disks, and keeps the request event log the inventory commands read.

import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import type { ActivationStore, ClientObservation, Clock, CountSnapshot } from '../host/ports';
import { StoreError } from '../errors';
import { databaseFile } from './data-dir';
import { openDatabase, SCHEMA_VERSION } from './schema';
import { PendingWrites, DEFAULT_PENDING_LIMITS, type PendingLimits } from './pending-writes';
import { SILENT_LOG, type StoreLog } from './store-log';
import { Thresholds } from './thresholds';
import { startCheckpointer, type Checkpointer } from './checkpointer';
import {
  INSERT_EVENT,
  UPSERT_CLIENT_REFUSED,
  UPSERT_CLIENT_SERVED,
  previousOf,
  refusedEvent,
  refusedRow,
  servedEvent,
  servedRow,
  thresholdOf,
  type ClientRow,
  type EventRow,
} from './rows';

const DAY_MS = 86_400_000;

export interface SqliteStoreOptions {
  readonly log?: StoreLog;
  /** Events older than this are pruned (config store.eventRetentionDays). */
  readonly eventRetentionDays?: number;
  /** Hard cap on event-log rows, whatever their age, so the file cannot grow without bound. */
  readonly maxEvents?: number;
  readonly readonly?: boolean;
  /**
   * Checkpoint the WAL from a worker thread every this many ms instead of inside commits
   * (checkpointer.ts); 0 or absent = SQLite's automatic checkpoints. The server uses it.
   */
  readonly backgroundCheckpointMs?: number;
  /** Wall clock for periodic work (pruning); requests bring their own nowMs. */
  readonly clock?: Clock;
  /** Minimum spacing of retries triggered by new writes while the file is unwritable. */
  readonly retryIntervalMs?: number;
  /** Period of the background retry while writes are pending. */
  readonly retryTimerMs?: number;
  readonly pruneIntervalMs?: number;
  readonly busyTimeoutMs?: number;
  readonly pendingLimits?: PendingLimits;
}

function sqliteCodeOf(err: unknown): string {
  if (err instanceof Database.SqliteError) return err.code;
  return (err as { code?: string } | null)?.code ?? 'unknown';
}

export class SqliteStore implements ActivationStore {
  private readonly log: StoreLog;
  private readonly clock: Clock;
  private readonly retentionMs: number;
  private readonly maxEvents: number;
  private readonly retryIntervalMs: number;
  private readonly retryTimerMs: number;
  private readonly pending: PendingWrites<EventRow>;
  private failing = false;
  private lastRetryAt = -Infinity;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly pruneTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private checkpointer: Checkpointer | undefined;

  private readonly upsertServed: Database.Statement;
  private readonly upsertRefused: Database.Statement;
  private readonly renameClient: Database.Statement;
  private readonly deleteClient: Database.Statement;
  private readonly upsertRequired: Database.Statement;
  private readonly thresholds = new Thresholds();
  private readonly countSince: Database.Statement;
  private readonly lastCountedOf: Database.Statement;
  private readonly insertEvent: Database.Statement;
  private readonly selectSetting: Database.Statement;
  private readonly upsertSetting: Database.Statement;
  private readonly pruneByAge: Database.Statement;
  private readonly pruneByCount: Database.Statement;
  private readonly recordServedTx: (
    row: ClientRow, obs: ClientObservation, nowMs: number, windowMs: number,
  ) => { snapshot: CountSnapshot; threshold: number; thresholdWritten: number | undefined };
  private readonly recordServedBody: SqliteStore['recordServedTx'];
  private readonly replayTx: () => void;
  private readonly beginStmt: Database.Statement;
  private readonly commitStmt: Database.Statement;
  /**
   * Group commit (beginBatch … commitBatch): the writes of many requests share one transaction.
   * `replays` re-apply each write through the in-memory pending path should the commit fail;
   * `onCommit` runs what may only happen once the batch is durable.
   */
  private batch: { replays: (() => void)[]; onCommit: (() => void)[] } | undefined;

  static open(dataDir: string, options: SqliteStoreOptions = {}): SqliteStore {
    const readonly = options.readonly ?? false;
    if (!readonly) {
      try {
        fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
      } catch (err) {
        throw new StoreError('KMS_ERR_STORE_OPEN', `cannot create the data directory ${dataDir}: ${(err as Error).message}`, { dataDir }, { cause: err });
      }
    }
    const file = databaseFile(dataDir);
    const db = openDatabase(file, { readonly, busyTimeoutMs: options.busyTimeoutMs ?? 5000 });
    try {
      return new SqliteStore(db, file, options);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(
    private readonly db: Database.Database,
    /** The database file, for messages and the inventory. */
    readonly file: string,
    options: SqliteStoreOptions,
  ) {
    this.log = options.log ?? SILENT_LOG;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.retentionMs = (options.eventRetentionDays ?? 400) * DAY_MS;
    this.maxEvents = options.maxEvents ?? 2_000_000;
    this.retryIntervalMs = options.retryIntervalMs ?? 1000;
    this.retryTimerMs = options.retryTimerMs ?? 5000;
    this.pending = new PendingWrites<EventRow>(options.pendingLimits ?? DEFAULT_PENDING_LIMITS);

    // Prepared once: preparing costs more than running these statements.
    this.upsertServed = db.prepare(UPSERT_CLIENT_SERVED);
    this.upsertRefused = db.prepare(UPSERT_CLIENT_REFUSED);
    // A re-imaged machine takes over its previous entry (first seen, requests, counting time) the
    // way the reference store does; OR IGNORE leaves it alone when the new CMID has a row already,
    // and the DELETE then drops it (PROTOCOL.md §7.2: the re-imaged machine counts once).
    this.renameClient = db.prepare('UPDATE OR IGNORE clients SET cmid = ? WHERE application = ? AND cmid = ?');
    this.deleteClient = db.prepare('DELETE FROM clients WHERE application = ? AND cmid = ?');
    this.upsertRequired = db.prepare(`
      INSERT INTO app_required (application, required_count, last_served_ms) VALUES (?, ?, ?)
      ON CONFLICT (application, required_count) DO UPDATE SET last_served_ms = MAX(last_served_ms, excluded.last_served_ms)`);
    this.thresholds.load(
      db.prepare('SELECT application, required_count, last_served_ms FROM app_required').all() as {
        application: string; required_count: number; last_served_ms: number;
      }[],
    );
    // The LIMIT keeps this a bounded walk of the (application, last_counted_ms) index, however
    // many machines the file holds: the host never reports more than 2 × the threshold (§7.2).
    this.countSince = db
      .prepare('SELECT count(*) FROM (SELECT 1 FROM clients WHERE application = ? AND last_counted_ms >= ? LIMIT ?)')
      .pluck();
    this.lastCountedOf = db.prepare('SELECT last_counted_ms FROM clients WHERE application = ? AND cmid = ?').pluck();
    this.insertEvent = db.prepare(INSERT_EVENT);
    this.selectSetting = db.prepare('SELECT value FROM settings WHERE key = ?').pluck();
    this.upsertSetting = db.prepare(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    // Events are appended in time order, so the rows to prune are a prefix of the rowid order:
    // this walks only the rows it deletes and needs no index on time (one less write per request).
    this.pruneByAge = db.prepare(`
      DELETE FROM events WHERE id < COALESCE(
        (SELECT id FROM events WHERE time_ms >= ? ORDER BY id LIMIT 1),
        (SELECT MAX(id) + 1 FROM events))`);
    this.pruneByCount = db.prepare('DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?');

    this.recordServedBody = (row, obs, nowMs, windowMs) => {
      const previous = previousOf(obs, row);
      if (previous !== undefined) {
        this.renameClient.run(row.cmid, row.application, previous);
        this.deleteClient.run(row.application, previous);
      }
      this.upsertServed.run(row);
      const threshold = thresholdOf(obs);
      let thresholdWritten: number | undefined;
      if (this.thresholds.note(row.application, threshold, nowMs)) {
        thresholdWritten = this.thresholds.served(row.application, threshold);
        this.upsertRequired.run(row.application, threshold, thresholdWritten);
      }
      const snapshot = this.storedSnapshot(row.application, nowMs - windowMs);
      this.insertEvent.run(servedEvent(obs, nowMs, snapshot));
      return { snapshot, threshold, thresholdWritten };
    };
    this.recordServedTx = db.transaction(this.recordServedBody);
    this.beginStmt = db.prepare('BEGIN');
    this.commitStmt = db.prepare('COMMIT');
    this.replayTx = db.transaction(() => this.pending.replay((e) => this.insertEvent.run(e)));

    if (!db.readonly && (options.backgroundCheckpointMs ?? 0) > 0) {
      db.pragma('wal_autocheckpoint = 0');
      this.checkpointer = startCheckpointer(file, options.backgroundCheckpointMs!, this.log);
    }
    if (!db.readonly) {
      this.prune();
      const every = options.pruneIntervalMs ?? 3_600_000;
      this.pruneTimer = setInterval(() => this.prune(), every);
      this.pruneTimer.unref();
    }
  }

  /** The underlying connection, for the inventory queries and for tests that inject faults. */
  get connection(): Database.Database {
    return this.db;
  }

  get schemaVersion(): number {
    return SCHEMA_VERSION;
  }

  /** Whether writes are failing and records wait in memory. */
  get hasPendingWrites(): boolean {
    return !this.pending.isEmpty;
  }

  /**
   * Opens a group commit: until commitBatch(), every write joins one transaction instead of
   * committing on its own (one WAL append for many requests). The caller must not let anything
   * depend on these writes — no reply may leave — before commitBatch() returns. false when no
   * batch was opened (writes failing, read-only, closed): writes then commit one by one.
   */
  beginBatch(): boolean {
    if (this.batch) return true;
    if (this.closed || this.db.readonly || !this.pending.isEmpty) return false;
    try {
      this.beginStmt.run();
    } catch (err) {
      this.enterFailure(err);
      return false;
    }
    this.batch = { replays: [], onCommit: [] };
    return true;
  }

  /** Commits the open batch. Should that fail, its writes go to the pending path; none is lost. */
  commitBatch(): void {
    const batch = this.batch;
    if (!batch) return;
    this.batch = undefined;
    try {
      this.commitStmt.run();
    } catch (err) {
      this.abandonBatch(batch, err);
      return;
    }
    for (const done of batch.onCommit) done();
  }

  private abandonBatch(batch: NonNullable<SqliteStore['batch']>, err: unknown): void {
    this.batch = undefined;
    try {
      if (this.db.inTransaction) this.db.prepare('ROLLBACK').run();
    } catch {
      // SQLite may already have rolled back on SQLITE_FULL / SQLITE_IOERR
    }
    this.enterFailure(err);
    for (const replay of batch.replays) replay();
  }

  recordActivation(obs: ClientObservation, nowMs: number, windowMs: number): CountSnapshot {
    this.retryIfDue();
    const row = servedRow(obs, nowMs);
    const batch = this.batch;
    if (batch) {
      try {
        const done = this.recordServedBody(row, obs, nowMs, windowMs);
        if (done.thresholdWritten !== undefined) {
          const written = done.thresholdWritten;
          batch.onCommit.push(() => this.thresholds.markPersisted(row.application, done.threshold, written));
        }
        batch.replays.push(() => this.recordServedPending(row, obs, nowMs, windowMs));
        return done.snapshot;
      } catch (err) {
        this.abandonBatch(batch, err);
      }
    }
    if (this.pending.isEmpty) {
      try {
        const done = this.recordServedTx(row, obs, nowMs, windowMs);
        // Only once committed: a rolled-back write must be queued again by the pending path.
        if (done.thresholdWritten !== undefined) this.thresholds.markPersisted(row.application, done.threshold, done.thresholdWritten);
        return done.snapshot;
      } catch (err) {
        this.enterFailure(err);
      }
    }
    try {
      return this.recordServedPending(row, obs, nowMs, windowMs);
    } catch (err) {
      // Even reading failed: answer with this machine alone rather than fail the client.
      this.enterFailure(err);
      return { activeClients: 1, maxRequiredClientCount: thresholdOf(obs) };
    }
  }

  recordRefusal(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): void {
    this.retryIfDue();
    const event = refusedEvent(obs, hresult, code, nowMs);
    const row = obs.applicationId && obs.clientMachineId ? refusedRow(obs, hresult, nowMs) : undefined;
    const batch = this.batch;
    if (batch) {
      try {
        if (row) this.upsertRefused.run(row);
        this.insertEvent.run(event);
        batch.replays.push(() => {
          if (row) this.queueOp(() => this.upsertRefused.run(row));
          this.pending.addEvent(event);
        });
        return;
      } catch (err) {
        this.abandonBatch(batch, err);
      }
    }
    if (this.pending.isEmpty) {
      try {
        this.writeRefusal(row, event);
        return;
      } catch (err) {
        this.enterFailure(err);
      }
    }
    if (row) this.queueOp(() => this.upsertRefused.run(row));
    this.pending.addEvent(event);
  }

  getSetting(key: string): string | undefined {
    const pending = this.pending.settings.get(key);
    if (pending !== undefined) return pending;
    return this.selectSetting.get(key) as string | undefined;
  }

  setSetting(key: string, value: string): void {
    this.retryIfDue();
    const batch = this.batch;
    if (batch) {
      try {
        this.upsertSetting.run(key, value);
        batch.replays.push(() => {
          this.pending.settings.set(key, value);
          this.queueOp(() => this.upsertSetting.run(key, value));
        });
        return;
      } catch (err) {
        this.abandonBatch(batch, err);
      }
    }
    if (this.pending.isEmpty) {
      try {
        this.upsertSetting.run(key, value);
        return;
      } catch (err) {
        this.enterFailure(err);
      }
    }
    this.pending.settings.set(key, value);
    this.queueOp(() => this.upsertSetting.run(key, value));
  }

  /**
   * Writes what is pending now. true when nothing is left pending. Called by new writes (at most
   * every retryIntervalMs) and by a timer; public so an operator action or a test can force it.
   */
  flushPending(): boolean {
    if (this.pending.isEmpty) return true;
    this.lastRetryAt = performance.now();
    const { ops, events } = this.pending.size;
    const { droppedOps, droppedEvents } = this.pending;
    try {
      this.replayTx();
    } catch {
      return false;
    }
    this.pending.clear();
    this.failing = false;
    this.stopRetryTimer();
    this.log.info(
      { file: this.file, writes: ops, events, droppedOps, droppedEvents },
      `the activation database ${this.file} is writable again; ${ops} pending writes and ${events} events were stored`,
    );
    return true;
  }

  /** Deletes events past the retention period or beyond the row cap. Runs at open and hourly. */
  prune(nowMs: number = this.clock.now()): number {
    if (this.closed || this.db.readonly || !this.pending.isEmpty) return 0;
    try {
      const byAge = this.pruneByAge.run(nowMs - this.retentionMs).changes;
      const byCount = this.pruneByCount.run(this.maxEvents).changes;
      return byAge + byCount;
    } catch (err) {
      this.log.warn({ file: this.file, sqliteCode: sqliteCodeOf(err) }, `could not prune the event log of ${this.file}`);
      return 0;
    }
  }

  /** Bytes on disk: the database file plus its write-ahead log. */
  sizeOnDisk(): number {
    let total = 0;
    for (const f of [this.file, `${this.file}-wal`]) {
      try {
        total += fs.statSync(f).size;
      } catch {
        // no WAL right after a clean close
      }
    }
    return total;
  }

  close(): void {
    if (this.closed) return;
    this.commitBatch();
    if (!this.pending.isEmpty && !this.flushPending()) {
      const { ops, events } = this.pending.size;
      this.log.error(
        { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, lostWrites: ops, lostEvents: events },
        `closing ${this.file} while it is still unwritable: ${ops} writes and ${events} events kept in memory are lost`,
      );
    }
    this.closed = true;
    // Not awaited: an interrupted checkpoint is harmless, and this connection's close checkpoints.
    void this.checkpointer?.stop();
    this.stopRetryTimer();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (!this.db.readonly && this.pending.isEmpty) {
      try {
        this.db.transaction(() => {
          for (const [app, required, served] of this.thresholds.unpersisted()) this.upsertRequired.run(app, required, served);
        })();
      } catch {
        // At worst a threshold leaves the window up to a minute early after the restart.
      }
    }
    this.db.close();
  }

  // ---- internals ----

  private storedSnapshot(application: string, cutoff: number): CountSnapshot {
    const max = this.thresholds.maxSince(application, cutoff);
    const active = this.countSince.get(application, cutoff, 2 * max) as number;
    return { activeClients: active, maxRequiredClientCount: max };
  }

  private writeRefusal(row: ClientRow | undefined, event: EventRow): void {
    if (row) {
      this.db.transaction(() => {
        this.upsertRefused.run(row);
        this.insertEvent.run(event);
      })();
    } else {
      this.insertEvent.run(event);
    }
  }

  /** The same rules as the transaction, answered from the file (read-only) plus the overlay. */
  private recordServedPending(row: ClientRow, obs: ClientObservation, nowMs: number, windowMs: number): CountSnapshot {
    const app = row.application;
    const cutoff = nowMs - windowMs;
    const loadStored = (cmid: string) => () => (this.lastCountedOf.get(app, cmid) as number | null | undefined) ?? null;

    const entry = this.pending.overlayOf(app, row.cmid, loadStored(row.cmid));
    const previous = previousOf(obs, row);
    if (previous !== undefined) {
      const old = this.pending.overlayOf(app, previous, loadStored(previous));
      if (entry.counted === null) entry.counted = old.counted;
      old.counted = null;
      this.queueOp(() => {
        this.renameClient.run(row.cmid, app, previous);
        this.deleteClient.run(app, previous);
      });
    }
    entry.counted = entry.counted === null ? nowMs : Math.max(entry.counted, nowMs);
    this.queueOp(() => this.upsertServed.run(row));
    const threshold = thresholdOf(obs);
    if (this.thresholds.note(app, threshold, nowMs)) {
      const served = this.thresholds.served(app, threshold);
      this.queueOp(() => this.upsertRequired.run(app, threshold, served));
    }
    const max = this.thresholds.maxSince(app, cutoff);
    let storedInWindow = 0;
    let overlayInWindow = 0;
    for (const e of this.pending.clients.get(app)?.values() ?? []) {
      if (e.stored !== null && e.stored >= cutoff) storedInWindow++;
      if (e.counted !== null && e.counted >= cutoff) overlayInWindow++;
    }
    const stored = this.countSince.get(app, cutoff, 2 * max + storedInWindow) as number;
    const snapshot = { activeClients: stored - storedInWindow + overlayInWindow, maxRequiredClientCount: max };
    this.pending.addEvent(servedEvent(obs, nowMs, snapshot));
    return snapshot;
  }

  private queueOp(op: () => void): void {
    if (!this.pending.addOp(op) && this.pending.droppedOps === 1) {
      this.log.warn(
        { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file },
        `too many writes are waiting for ${this.file}; further activations are counted in memory only until it is writable`,
      );
    }
  }

  private enterFailure(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.lastRetryAt = performance.now();
    const sqliteCode = sqliteCodeOf(err);
    this.log.error(
      { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, sqliteCode, err: (err as Error)?.message },
      `cannot write the activation database ${this.file} (${sqliteCode}): clients are still answered, ` +
        'activations are kept in memory and written when it works again; free disk space or fix its permissions',
    );
    this.startRetryTimer();
  }

  private retryIfDue(): void {
    if (!this.pending.isEmpty && performance.now() - this.lastRetryAt >= this.retryIntervalMs) this.flushPending();
  }

  private startRetryTimer(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setInterval(() => this.flushPending(), this.retryTimerMs);
    this.retryTimer.unref();
  }

  private stopRetryTimer(): void {
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }
}
