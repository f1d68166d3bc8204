// The durable ActivationStore (src/host/ports.ts) on SQLite: counts distinct machines per
// application in the rolling window (PROTOCOL.md §7.2) so the count survives restarts, kill -9
// and full disks, and keeps the request event log the inventory commands read.

import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';
import type { ActivationStore, ClientObservation, Clock, CountSnapshot } from '../host/ports';
import { DEFAULTS, STORE_TUNING } from '../config/defaults';
import { StoreError } from '../errors';
import { lowerId } from '../protocol/guid';
import type { NameResolver } from '../catalog/name-resolver';
import { databaseFile, journalFile } from './data-dir';
import { openDatabase, SCHEMA_VERSION } from './schema';
import { PendingWrites, type PendingLimits, type PendingMachine } from './pending-writes';
import { SILENT_LOG, type StoreLog } from './store-log';
import { Thresholds } from './thresholds';
import { WalCheckpoints, type SyncIo } from './wal-checkpoints';
import { WindowCounts, type CountSource } from './window-counts';
import { describeWriteFailure, failureSummary, sqliteCodeOf } from './write-failure';
import { Inventory } from './inventory';
import { Housekeeping } from './housekeeping';
import { FleetOutbox } from './fleet-outbox';
import { registerConnection } from './testing';
import { RequestJournal, type JournalIo } from './request-journal';
import { decodeRecord, RecordLines, type JournaledWrite } from './journal-records';
import { effectiveRequiredCount } from '../host/counting';
import {
  DELETE_CLIENT,
  FOLD_CLIENT,
  INSERT_EVENT,
  RENAME_CLIENT,
  UPSERT_CLIENT_REFUSED,
  UPSERT_CLIENT_SERVED,
  type ClientRow,
  type EventRow,
} from './rows';
import { PositionalStatement } from './positional-statement';
import {
  emptyEvent,
  fillServedEvent,
  previousOf,
  refusedEvent,
  refusedRowOf,
  servedEventOf,
  servedFacts,
  servedRow,
  thresholdOf,
} from './request-rows';

const DAY_MS = 86_400_000;
/** The settings key of the last journal record committed to the file (request-journal.ts). */
const JOURNAL_SEQ_KEY = 'store.journalSeq';
/** Journaled writes after which the open transaction is committed whatever its age. */
const JOURNAL_MAX_WRITES = 512;
/**
 * Deferred statements run in chunks of this many, right after a turn's replies, so the loop is
 * never held for all of a commit interval's statements at once (p99 2.0–2.3 ms that way, 1.0–1.3
 * ms in chunks of 64, the CPU per request unchanged: measured A/B).
 */
const DEFERRED_CHUNK = 64;
/**
 * Journaled writes held while a checkpoint cycle syncs (wal-checkpoints.ts) past which the cycle is
 * settled on the loop: a disk whose fsync stalls cannot make the held writes grow without bound.
 */
const HOLD_MAX_WRITES = 4096;
/** The journal's size past which an outage's writes are kept in memory only (request-journal.ts reads 16 MiB at start). */
const OUTAGE_JOURNAL_BYTES = 8 * 1024 * 1024;
/** How soon a prune that came due follows (and is retried while a checkpoint cycle holds commits). */
const PRUNE_SOON_MS = 5;

function isBusy(err: unknown): boolean {
  return sqliteCodeOf(err).startsWith('SQLITE_BUSY');
}

export interface SqliteStoreOptions {
  readonly log?: StoreLog;
  /** Events older than this are pruned (config store.eventRetentionDays). */
  readonly eventRetentionDays?: number;
  /** Hard cap on event-log rows, whatever their age, so the file cannot grow without bound. */
  readonly maxEvents?: number;
  /** Cap on machine rows (config store.maxMachines), checked with the event log's prune. */
  readonly maxMachines?: number;
  readonly readonly?: boolean;
  /**
   * > 0: the store checkpoints the WAL itself, its fsyncs off the event loop (wal-checkpoints.ts),
   * at least this often while anything was committed; 0 or absent = SQLite's automatic
   * checkpoints inside commits. The server uses it.
   */
  readonly backgroundCheckpointMs?: number;
  /** With backgroundCheckpointMs: a checkpoint once this many writes were committed since the last. */
  readonly checkpointWrites?: number;
  /** A -wal file this large is truncated once a checkpoint has copied and synced all of it. */
  readonly walTruncateBytes?: number;
  /** The checkpoints' fsyncs (tests hold or fail them). */
  readonly syncIo?: SyncIo;
  /** Wall clock for periodic work (pruning); requests bring their own nowMs. */
  readonly clock?: Clock;
  /** Minimum spacing of retries triggered by new writes while the file is unwritable. */
  readonly retryIntervalMs?: number;
  /** Period of the background retry while writes are pending. */
  readonly retryTimerMs?: number;
  readonly pruneIntervalMs?: number;
  readonly busyTimeoutMs?: number;
  readonly pendingLimits?: PendingLimits;
  /**
   * > 0: a group commit's writes are made durable by one append to the request journal
   * (request-journal.ts) and the transaction stays open across turns, committed at most this many
   * ms after it began; replayed at open after a crash. 0 or absent: a commit per group. The server uses it.
   */
  readonly journalCommitMs?: number;
  /** The journal's file operations (tests make them fail like a full disk). */
  readonly journalIo?: JournalIo;
}

/** What the metrics endpoint reads: counters kept as the store works, no query per call. */
export interface StoreStats {
  /** Distinct machines whose writes wait in memory for the file (coalesced per machine). */
  readonly pendingMachines: number;
  /** Event-log rows waiting in memory. */
  readonly pendingEvents: number;
  /** Event-log rows dropped since start because the buffer was full during an outage. */
  readonly droppedEvents: number;
  /** Requests of new machines refused (0xC004D104) since start: the pending bound, or store.maxMachines. */
  readonly refusedMachines: number;
  /** store.maxMachines machines are stored, all counted: new machines are refused now. */
  readonly machineCapReached: boolean;
  /** Writes (or retries) that failed since start. */
  readonly writeFailures: number;
  /** Whether the file takes writes now. */
  readonly writable: boolean;
  /** The last write failure (SQLite code and message); null once writable again. */
  readonly lastWriteError: string | null;
  /** Size of the -wal file, in bytes (one stat). */
  readonly walBytes?: number;
  /** Whether group commits are made durable by the request journal (false: a commit each, slower). */
  readonly journalInUse: boolean;
  /** Checkpoint fsyncs that failed since start (wal-checkpoints.ts). */
  readonly syncFailures: number;
  /** The last fsync failure ("EIO on <file>") while none has succeeded since; null once one has. */
  readonly lastSyncError: string | null;
}

/**
 * Where a write goes: `direct` = a transaction of its own; `batch` = the open group commit;
 * `failing` = the file cannot be written, so into the pending writes (memory) until a retry works.
 */
type WriteState = 'direct' | 'batch' | 'failing';

export class SqliteStore implements ActivationStore {
  private readonly log: StoreLog;
  private readonly clock: Clock;
  private readonly maxEvents: number;
  private readonly housekeeping: Housekeeping;
  /** Why acceptsActivation last said no: the port's refusalCode(). */
  private lastRefusal: 'KMS_ERR_STORE_BACKLOG_FULL' | 'KMS_ERR_STORE_MACHINE_CAP' = 'KMS_ERR_STORE_BACKLOG_FULL';
  private readonly retryIntervalMs: number;
  private readonly retryTimerMs: number;
  private readonly pending: PendingWrites;
  private state: WriteState = 'direct';
  private lastRetryAt = -Infinity;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly pruneTimer: NodeJS.Timeout | undefined;
  /** After the prune at start: the clock had time to be set (housekeeping.ts corrects times ahead of it). */
  private clockSettled = false;
  /** Events written since the last prune after which the next one is due (a twentieth of maxEvents). */
  private readonly pruneAfterEvents: number;
  private eventsSincePrune = 0;
  private pruneDue = false;
  private pruneSoon: NodeJS.Timeout | undefined;
  private closed = false;
  private checkpoints: WalCheckpoints | undefined;
  private stopping: Promise<void> | undefined;
  /** A commit came due while a checkpoint cycle held commits: made when the cycle ends. */
  private commitAfterHold = false;
  private readonly counts: WindowCounts;
  private readonly thresholds = new Thresholds();
  // Counters for stats(); an outage's warnings are logged once (reset when writable again).
  private droppedEvents = 0;
  private refusedMachines = 0;
  private writeFailures = 0;
  private lastWriteError: string | null = null;
  private warnedEvents = false;
  private warnedMachines = false;

  private readonly upsertServed: PositionalStatement<ClientRow>;
  private readonly upsertRefused: PositionalStatement<ClientRow>;
  private readonly foldClient: Database.Statement;
  private readonly renameClient: Database.Statement;
  private readonly deleteClient: Database.Statement;
  private readonly upsertRequired: Database.Statement;
  private readonly lastCountedOf: Database.Statement;
  private readonly mostRecentOf: Database.Statement;
  private readonly insertEvent: PositionalStatement<EventRow>;
  /** Each served request's event, filled and bound in turn (fillServedEvent). */
  private readonly servedEvent = emptyEvent();
  private readonly selectSetting: Database.Statement;
  private readonly upsertSetting: Database.Statement;
  /** Applications with a machine row: a skip-scan of the clients_window index, one step each. */
  private readonly beginStmt: Database.Statement;
  private readonly commitStmt: Database.Statement;
  private readonly rollbackStmt: Database.Statement;
  /** The writes of the open group commit: re-applied to the pending writes should the commit fail. */
  private batch: JournaledWrite[] = [];
  /**
   * Journaled writes whose statements have not run yet: they run together, back to back, in
   * chunks of DEFERRED_CHUNK or at the commit, where SQLite's pages and code are warm (measured:
   * 12–16 µs less per request than running each turn's own), or before anything reads this
   * connection.
   */
  private deferred: JournaledWrite[] = [];
  private journal: RequestJournal | undefined;
  private readonly journalCommitMs: number;
  /** The last sequence number given to a journal record, and the last one the file holds as committed. */
  private journalSeq = 0;
  private committedSeq = 0;
  /** Lines of this turn's writes, appended by commitBatch before the turn's replies leave. */
  private readonly turnLines = new RecordLines();
  private batchOpenedAt = 0;
  private commitTimer: NodeJS.Timeout | undefined;
  private commitSoon: NodeJS.Immediate | undefined;
  private applySoon: NodeJS.Immediate | undefined;
  /** Writes made from the journal at open are in it already. */
  private replaying = false;

  static open(dataDir: string, options: SqliteStoreOptions = {}): SqliteStore {
    const readonly = options.readonly ?? false;
    if (!readonly) {
      try {
        fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
      } catch (err) {
        throw new StoreError(
          'KMS_ERR_STORE_OPEN',
          `cannot create the data directory ${dataDir}: ${(err as Error).message}`,
          { dataDir },
          { cause: err },
        );
      }
    }
    const file = databaseFile(dataDir);
    const db = openDatabase(file, { readonly, busyTimeoutMs: options.busyTimeoutMs ?? STORE_TUNING.busyTimeoutMs });
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
    registerConnection(this, db);
    this.log = options.log ?? SILENT_LOG;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.maxEvents = options.maxEvents ?? DEFAULTS.store.maxEvents;
    this.pruneAfterEvents = Math.max(1000, Math.floor(this.maxEvents / 20));
    this.retryIntervalMs = options.retryIntervalMs ?? STORE_TUNING.retryIntervalMs;
    this.retryTimerMs = options.retryTimerMs ?? STORE_TUNING.retryTimerMs;
    this.pending = new PendingWrites(
      options.pendingLimits ?? { maxMachines: DEFAULTS.store.pendingMachines, maxEvents: DEFAULTS.store.pendingEvents },
    );

    // Prepared once: preparing costs more than running these statements.
    this.upsertServed = new PositionalStatement(db, UPSERT_CLIENT_SERVED);
    this.upsertRefused = new PositionalStatement(db, UPSERT_CLIENT_REFUSED);
    this.foldClient = db.prepare(FOLD_CLIENT);
    this.renameClient = db.prepare(RENAME_CLIENT);
    this.deleteClient = db.prepare(DELETE_CLIENT);
    this.upsertRequired = db.prepare(`
      INSERT INTO app_required (application, required_count, last_served_ms) VALUES (?, ?, ?)
      ON CONFLICT (application, required_count) DO UPDATE SET last_served_ms = MAX(last_served_ms, excluded.last_served_ms)`);
    this.thresholds.load(
      db.prepare('SELECT application, required_count, last_served_ms FROM app_required').all() as {
        application: string;
        required_count: number;
        last_served_ms: number;
      }[],
    );
    this.lastCountedOf = db.prepare('SELECT last_counted_ms FROM clients WHERE application = ? AND cmid = ?').pluck();
    // A walk of the (application, last_counted_ms) index from its newest end.
    this.mostRecentOf = db
      .prepare(`SELECT cmid, last_counted_ms FROM clients WHERE application = ? AND last_counted_ms IS NOT NULL
        ORDER BY last_counted_ms DESC LIMIT ?`)
      .raw();
    this.insertEvent = new PositionalStatement(db, INSERT_EVENT);
    this.selectSetting = db.prepare('SELECT value FROM settings WHERE key = ?').pluck();
    this.upsertSetting = db.prepare(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    const limits = {
      retentionMs: (options.eventRetentionDays ?? DEFAULTS.store.eventRetentionDays) * DAY_MS,
      maxEvents: this.maxEvents,
      maxMachines: options.maxMachines ?? DEFAULTS.store.maxMachines,
    };
    // A prune during the journal's replay comes before the in-memory counts exist; they load
    // every application from the file once it is done.
    this.housekeeping = new Housekeeping(db, this.file, this.log, limits, this.thresholds, (application) =>
      this.counts?.reload(application),
    );
    this.beginStmt = db.prepare('BEGIN');
    this.commitStmt = db.prepare('COMMIT');
    this.rollbackStmt = db.prepare('ROLLBACK');

    this.journalCommitMs = db.readonly ? 0 : (options.journalCommitMs ?? 0);
    if (this.journalCommitMs > 0) this.openJournal(options.journalIo);

    this.counts = new WindowCounts(this.countSource());
    this.counts.load(this.housekeeping.applications());

    // A second server on this data directory (the journal's lock is taken: it warned) keeps
    // SQLite's own checkpoints: the cycles order their fsyncs against this connection's commits,
    // and only the one server holding the lock may assume those are the only ones.
    const ownsDirectory = this.journalCommitMs === 0 || this.journal !== undefined;
    if (!db.readonly && ownsDirectory && (options.backgroundCheckpointMs ?? 0) > 0) {
      this.checkpoints = WalCheckpoints.open(
        db,
        file,
        {
          intervalMs: options.backgroundCheckpointMs!,
          cycleWrites: options.checkpointWrites ?? STORE_TUNING.checkpointWrites,
          truncateBytes: options.walTruncateBytes ?? STORE_TUNING.walTruncateBytes,
        },
        this.log,
        () => !db.inTransaction,
        () => this.afterHold(),
        options.syncIo,
      );
    }
    if (!db.readonly) {
      this.prune();
      this.clockSettled = true;
      const every = options.pruneIntervalMs ?? STORE_TUNING.pruneIntervalMs;
      this.pruneTimer = setInterval(() => this.prune(), every);
      this.pruneTimer.unref();
    }
  }

  /** The read side on this store's own connection (the admin page of the running server). */
  inventory(names?: NameResolver): Inventory {
    return new Inventory(this.db, this.file, names);
  }

  /**
   * The fleet outbox on this store's own connection (src/fleet's forwarder): its few writes join
   * an open group commit instead of waiting for this connection's lock from a second one.
   */
  fleetOutbox(): FleetOutbox {
    return new FleetOutbox(this.db, () => this.checkpoints?.settle());
  }

  get schemaVersion(): number {
    return SCHEMA_VERSION;
  }

  /** Machines of an application counted at or after `cutoff`, up to `cap`, from memory (no query). */
  countSince(application: string, cutoff: number, cap: number): number {
    return this.counts.countSince(application.toLowerCase(), cutoff, cap);
  }

  /** Whether writes are failing and records wait in memory. */
  get hasPendingWrites(): boolean {
    return !this.pending.isEmpty;
  }

  stats(): StoreStats {
    let walBytes: number | undefined;
    try {
      walBytes = fs.statSync(`${this.file}-wal`).size;
    } catch {
      // no WAL right after a clean close, or read-only
    }
    return {
      pendingMachines: this.pending.machineCount,
      pendingEvents: this.pending.eventCount,
      droppedEvents: this.droppedEvents,
      refusedMachines: this.refusedMachines,
      machineCapReached: this.housekeeping.machineCapReached,
      writeFailures: this.writeFailures,
      writable: this.state !== 'failing',
      lastWriteError: this.lastWriteError,
      ...(walBytes === undefined ? {} : { walBytes }),
      journalInUse: this.journal?.usable === true,
      syncFailures: this.checkpoints?.syncStats.failures ?? 0,
      lastSyncError: this.checkpoints?.syncStats.lastError ?? null,
    };
  }

  /**
   * Opens a group commit: until commitBatch(), every write joins one transaction instead of
   * committing on its own (one WAL append for many requests). The caller must not let anything
   * depend on these writes — no reply may leave — before commitBatch() returns. false when no
   * batch was opened (writes failing, read-only, closed): writes then go their own way.
   */
  beginBatch(): boolean {
    if (this.state === 'batch') return true;
    if (this.state === 'failing' || this.closed || this.db.readonly) return false;
    // With the journal, BEGIN waits for the first statement (ensureBegun), so that a checkpoint
    // cycle can hold every statement of the turns it spans (wal-checkpoints.ts).
    if (this.journal === undefined || !this.journal.usable) {
      try {
        this.begin();
      } catch (err) {
        this.enterFailure(err);
        return false;
      }
    }
    this.state = 'batch';
    this.batchOpenedAt = performance.now();
    return true;
  }

  /**
   * Makes the open batch durable; the replies that waited for it may leave once this returns.
   * With the journal, that is one append of this turn's lines, and the transaction stays open
   * for the next turns until journalCommitMs; otherwise (or should the append fail) a commit.
   * Should the commit fail, its writes go to the pending path; none is lost.
   */
  commitBatch(): void {
    if (this.state !== 'batch') return;
    if (this.journal === undefined || !this.journal.usable) {
      this.commitSql();
      return;
    }
    if (!this.turnLines.empty) {
      const appended = this.journal.append(this.turnLines.take());
      if (!appended) {
        this.commitSql();
        return;
      }
    }
    if (this.checkpoints?.holding && this.deferred.length >= HOLD_MAX_WRITES) this.checkpoints.settle();
    if (this.batch.length >= JOURNAL_MAX_WRITES || performance.now() - this.batchOpenedAt >= this.journalCommitMs) {
      // Right after this turn's replies, which the journal has made durable already (during a
      // checkpoint cycle, when it ends).
      this.commitSoon ??= setImmediate(() => {
        this.commitSoon = undefined;
        this.commitSql();
      });
      return;
    }
    if (this.deferred.length >= DEFERRED_CHUNK) {
      this.applySoon ??= setImmediate(() => {
        this.applySoon = undefined;
        if (!this.checkpoints?.holding) this.applyDeferred();
      });
    }
    if (this.commitTimer === undefined) {
      this.commitTimer = setTimeout(() => {
        this.commitTimer = undefined;
        this.commitSql();
      }, this.journalCommitMs);
      this.commitTimer.unref();
    }
  }

  /**
   * false while the file is unwritable and store.pendingMachines machines wait in memory, for a
   * machine not among them: the host refuses it (0xC004D104) rather than acknowledge what it could lose.
   */
  acceptsActivation(obs: ClientObservation): boolean {
    this.retryIfDue();
    if (this.housekeeping.machineCapReached && !this.knownOrReimaged(obs)) {
      this.lastRefusal = 'KMS_ERR_STORE_MACHINE_CAP';
      this.refusedMachines++;
      return false;
    }
    if (this.state !== 'failing') return true;
    const cmid = lowerId(obs.clientMachineId);
    if (this.pending.canKeep(lowerId(obs.applicationId), cmid, previousOf(obs, cmid))) return true;
    this.lastRefusal = 'KMS_ERR_STORE_BACKLOG_FULL';
    this.refuseMachine();
    return false;
  }

  refusalCode(): 'KMS_ERR_STORE_BACKLOG_FULL' | 'KMS_ERR_STORE_MACHINE_CAP' {
    return this.lastRefusal;
  }

  /** Counts a served request and records it (callers ask acceptsActivation first). */
  recordActivation(obs: ClientObservation, nowMs: number, windowMs: number): CountSnapshot {
    this.retryIfDue();
    const row = servedRow(obs, nowMs);
    const app = row.application;
    const previous = previousOf(obs, row.cmid);
    const threshold = thresholdOf(obs);
    const persistThreshold = this.thresholds.note(app, threshold, nowMs);
    const servedMs = this.thresholds.served(app, threshold);
    const cutoff = nowMs - windowMs;
    const max = this.thresholds.maxSince(app, cutoff);
    const snapshot = { activeClients: this.counts.served(app, row.cmid, previous, nowMs, cutoff, 2 * max), maxRequiredClientCount: max };
    const facts = servedFacts(obs, snapshot);
    this.write({
      kind: 'served',
      row,
      previous,
      previousCmid: facts.previousCmid,
      requestTimeMs: facts.requestTimeMs,
      currentCount: facts.currentCount,
      persistRequired: persistThreshold ? threshold : 0,
      servedMs,
    });
    return snapshot;
  }

  recordRefusal(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): void {
    this.retryIfDue();
    const event = refusedEvent(obs, hresult, code, nowMs);
    // Past store.maxMachines a refused machine the host does not know leaves only its event.
    const known =
      event.application !== '' &&
      event.cmid !== '' &&
      (!this.housekeeping.machineCapReached || this.hasMachine(event.application, event.cmid));
    const row = known ? refusedRowOf(event) : undefined;
    this.write({ kind: 'refused', row, event });
  }

  getSetting(key: string): string | undefined {
    this.applyDeferred();
    const pending = this.pending.settings.get(key);
    if (pending !== undefined) return pending;
    return this.selectSetting.get(key) as string | undefined;
  }

  setSetting(key: string, value: string): void {
    this.retryIfDue();
    this.write({ kind: 'setting', key, value });
  }

  /**
   * Writes what is pending now. true when nothing is left pending. Called by new writes (at most
   * every retryIntervalMs) and by a timer; public so an operator action or a test can force it.
   */
  flushPending(): boolean {
    if (this.pending.isEmpty) return true;
    if (this.closed) return false;
    this.lastRetryAt = performance.now();
    const machines = this.pending.machineCount;
    const events = this.pending.eventCount;
    const thresholds = [...this.thresholds.unpersisted()];
    try {
      this.inTransaction(() => {
        this.pending.replay({
          machine: (m) => this.replayMachine(m),
          deletion: (d) => {
            this.renameClient.run(d.into, d.application, d.deleted);
            this.deleteClient.run(d.application, d.deleted);
          },
          event: (e) => this.insertEvent.run(e),
          setting: (k, v) => this.upsertSetting.run(k, v),
        });
        for (const [app, required, served] of thresholds) this.upsertRequired.run(app, required, served);
        this.noteCommittedSeq();
      });
    } catch (err) {
      this.writeFailures++;
      this.lastWriteError = failureSummary(err);
      return false;
    }
    for (const [app, required, served] of thresholds) this.thresholds.markPersisted(app, required, served);
    const droppedEvents = this.pending.droppedEvents;
    this.pending.clear();
    this.committedSeq = this.journalSeq;
    this.journal?.reset();
    this.state = 'direct';
    this.lastWriteError = null;
    this.warnedEvents = false;
    this.warnedMachines = false;
    this.stopRetryTimer();
    this.log.info(
      { file: this.file, machines, events, droppedEvents },
      `the activation database ${this.file} is writable again; the writes of ${machines} machines and ${events} events were stored` +
        (droppedEvents > 0 ? ` (${droppedEvents} event-log entries were dropped during the outage; counts are complete)` : ''),
    );
    return true;
  }

  /**
   * Deletes events past the retention period or beyond the row cap, and machines past the
   * machine cap, a bounded number of each (more in the next turns; housekeeping.ts). Runs at
   * open, hourly, and after every pruneAfterEvents events.
   */
  prune(nowMs: number = this.clock.now()): number {
    // A batch the journal keeps open across turns is committed first (a few ms at most), and a
    // checkpoint cycle ended: these statements commit on their own.
    this.checkpoints?.settle();
    if (this.journal !== undefined) this.commitSql();
    if (this.closed || this.db.readonly || this.state !== 'direct') return 0;
    try {
      return this.deleteOldEvents(nowMs);
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
    // A checkpoint cycle in progress ends now and none starts again.
    this.stopping = this.checkpoints?.stop();
    this.commitSql();
    if (!this.pending.isEmpty && !this.flushPending()) {
      const machines = this.pending.machineCount;
      const events = this.pending.eventCount;
      this.log.error(
        { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, lostWrites: machines, lostEvents: events },
        `closing ${this.file} while it is still unwritable: the writes of ${machines} machines and ${events} events ` +
          'kept in memory are lost' +
          (this.journal?.usable ? ', except those the request journal holds: they are replayed at the next start' : ''),
      );
    }
    this.closed = true;
    this.stopRetryTimer();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (this.pruneSoon) clearTimeout(this.pruneSoon);
    if (!this.db.readonly && this.pending.isEmpty) {
      try {
        this.inTransaction(() => {
          for (const [app, required, served] of this.thresholds.unpersisted()) this.upsertRequired.run(app, required, served);
        });
      } catch {
        // At worst a threshold leaves the window up to a minute early after the restart.
      }
    }
    // The last connection's close checkpoints and removes the -wal file: with SQLite's own fsyncs.
    // (Outside a transaction, which every path above has ended: SQLite refuses the change inside one.)
    if (this.checkpoints !== undefined) this.db.pragma('synchronous = NORMAL');
    if (this.pending.isEmpty) this.journal?.reset();
    this.journal?.close();
    this.db.close();
  }

  /**
   * After close(): resolves once no checkpoint fsync is in flight and its files are closed. A
   * service that stops, or a test that then removes the data directory, waits for it.
   */
  whenStopped(): Promise<void> {
    return this.stopping ?? Promise.resolve();
  }

  // ---- internals ----

  /** The two chunked DELETEs; throws what SQLite throws. */
  private deleteOldEvents(nowMs: number): number {
    this.pruneDue = false;
    this.eventsSincePrune = 0;
    const { deleted, more } = this.housekeeping.prune(nowMs, this.clockSettled);
    if (more) this.schedulePrune();
    return deleted;
  }

  /**
   * At the machine cap: whether the machine has a row, or is a re-imaged one naming a stored
   * previous id, whose row it takes over (PROTOCOL.md §7.2) without adding one.
   */
  private knownOrReimaged(obs: ClientObservation): boolean {
    const application = lowerId(obs.applicationId);
    const cmid = lowerId(obs.clientMachineId);
    if (this.hasMachine(application, cmid)) return true;
    const previous = previousOf(obs, cmid);
    return previous !== undefined && this.hasMachine(application, previous);
  }

  /** Whether the file or the pending writes hold a row for this machine (a query: only past the cap). */
  private hasMachine(application: string, cmid: string): boolean {
    return this.countSource().lastCounted(application, cmid) !== undefined;
  }

  /**
   * A prune soon: with the journal it rides along the next commit (under a flood the checkpoint
   * cycles follow one another, and a prune of its own would have to wait for a gap or put their
   * fsyncs on the loop); a timer covers a quiet connection.
   */
  private schedulePrune(): void {
    if (this.closed || this.db.readonly) return;
    this.pruneDue = true;
    this.pruneSoon ??= setTimeout(() => {
      this.pruneSoon = undefined;
      if (this.pruneDue && !this.closed && !this.checkpoints?.holding) this.prune();
    }, PRUNE_SOON_MS);
    this.pruneSoon.unref();
  }

  /**
   * The one write path: the statements inside the open batch (and a line of the journal), or in
   * a transaction of their own; should the file refuse them, the same write is kept in memory
   * (pending writes), now or when a failed batch is replayed there.
   */
  private write(w: JournaledWrite): void {
    // Every request leaves an event: a flood must not outgrow store.maxEvents for an hour.
    if (w.kind !== 'setting' && ++this.eventsSincePrune >= this.pruneAfterEvents) this.schedulePrune();
    if (this.state === 'batch') {
      if (this.journal?.usable && !this.replaying) {
        this.batch.push(w);
        this.deferred.push(w);
        this.turnLines.add(++this.journalSeq, w);
        return;
      }
      try {
        this.ensureBegun();
        this.toFile(w);
        this.batch.push(w);
        return;
      } catch (err) {
        this.abandonBatch(this.takeBatch(), err);
      }
    } else if (this.state === 'direct' && !this.closed) {
      try {
        this.inTransaction(() => this.toFile(w));
        this.afterDurable(w);
        return;
      } catch (err) {
        if (!isBusy(err) || !this.retryOnce(w)) this.enterFailure(err);
        else return;
      }
    }
    if (this.journal !== undefined && !this.replaying && !this.closed) this.journalDuringOutage(w);
    this.toPending(w);
  }

  /**
   * While the database refuses writes (damage, a lock held elsewhere, a full file that leaves the
   * journal room), what is answered from memory goes to the journal too, line by line: a crash
   * during the outage then loses none of it. Up to OUTAGE_JOURNAL_BYTES, which a replay reads whole.
   */
  private journalDuringOutage(w: JournaledWrite): void {
    const journal = this.journal!;
    if (!journal.usable || journal.bytes >= OUTAGE_JOURNAL_BYTES) return;
    this.turnLines.add(++this.journalSeq, w);
    journal.append(this.turnLines.take());
  }

  private toFile(w: JournaledWrite): void {
    if (w.kind === 'served') {
      const { row, previous } = w;
      if (previous !== undefined) {
        this.renameClient.run(row.cmid, row.application, previous);
        this.deleteClient.run(row.application, previous);
      }
      this.upsertServed.run(row);
      if (w.persistRequired > 0) this.upsertRequired.run(row.application, w.persistRequired, w.servedMs);
      this.insertEvent.run(fillServedEvent(this.servedEvent, row, w));
    } else if (w.kind === 'refused') {
      if (w.row) this.upsertRefused.run(w.row);
      this.insertEvent.run(w.event);
    } else {
      this.upsertSetting.run(w.key, w.value);
    }
  }

  private toPending(w: JournaledWrite): void {
    if (w.kind === 'served') {
      // The threshold waits in this.thresholds (unpersisted) and is written by flushPending.
      this.pending.served(w.row, w.previous);
      this.keepEvent(servedEventOf(w.row, w));
    } else if (w.kind === 'refused') {
      // Past the bound a refused new machine leaves only its event: nothing was acknowledged.
      const row = w.row;
      if (row && this.pending.canKeep(row.application, row.cmid, undefined)) this.pending.refused(row);
      this.keepEvent(w.event);
    } else {
      this.pending.setSetting(w.key, w.value);
    }
  }

  /** What may only happen once a write is in the file. */
  private afterDurable(w: JournaledWrite): void {
    if (w.kind === 'served' && w.persistRequired > 0) this.thresholds.markPersisted(w.row.application, w.persistRequired, w.servedMs);
  }

  /** Commits the open batch (all its turns). Should that fail, its writes go to the pending path. */
  private commitSql(): void {
    if (this.commitTimer !== undefined) {
      clearTimeout(this.commitTimer);
      this.commitTimer = undefined;
    }
    if (this.commitSoon !== undefined) {
      clearImmediate(this.commitSoon);
      this.commitSoon = undefined;
    }
    if (this.applySoon !== undefined) {
      clearImmediate(this.applySoon);
      this.applySoon = undefined;
    }
    if (this.state !== 'batch') return;
    if (this.checkpoints?.holding) {
      // The journal holds these writes durably already: the commit waits for the cycle's end.
      if (this.journal?.usable && this.turnLines.empty) {
        this.commitAfterHold = true;
        return;
      }
      this.checkpoints.settle();
    }
    const deferred = this.deferred;
    this.deferred = [];
    const batch = this.takeBatch();
    try {
      if (deferred.length > 0) this.ensureBegun();
      for (const w of deferred) this.toFile(w);
      if (this.pruneDue && this.db.inTransaction) this.pruneWithin();
      if (this.db.inTransaction) {
        this.noteCommittedSeq();
        this.commitStmt.run();
      }
    } catch (err) {
      this.abandonBatch(batch, err);
      return;
    }
    this.turnLines.take(); // committed: the journal need not hold them
    this.committedSeq = this.journalSeq;
    for (const w of batch) this.afterDurable(w);
    if (this.pending.isEmpty) this.journal?.reset();
    this.checkpoints?.committed(batch.length);
  }

  /** A due prune inside the commit's transaction; its failure leaves the commit alone. */
  private pruneWithin(): void {
    this.db.exec('SAVEPOINT prune');
    try {
      this.deleteOldEvents(this.clock.now());
      this.db.exec('RELEASE prune');
    } catch (err) {
      this.db.exec('ROLLBACK TO prune');
      this.db.exec('RELEASE prune');
      this.log.warn({ file: this.file, sqliteCode: sqliteCodeOf(err) }, `could not prune the event log of ${this.file}`);
    }
  }

  /** A checkpoint cycle ended: what came due while it held commits is committed now. */
  private afterHold(): void {
    if (!this.commitAfterHold) return;
    this.commitAfterHold = false;
    this.commitSoon ??= setImmediate(() => {
      this.commitSoon = undefined;
      this.commitSql();
    });
  }

  private begin(): void {
    this.checkpoints?.settle();
    this.beginStmt.run();
  }

  private ensureBegun(): void {
    if (!this.db.inTransaction) this.begin();
  }

  /** Runs the deferred statements now, inside the open batch: something is about to read this connection. */
  private applyDeferred(): void {
    if (this.deferred.length === 0) return;
    const deferred = this.deferred;
    this.deferred = [];
    try {
      this.ensureBegun();
      for (const w of deferred) this.toFile(w);
    } catch (err) {
      this.abandonBatch(this.takeBatch(), err);
    }
  }

  /** Inside a transaction that holds every journaled write: the journal's lines up to here are in the file. */
  private noteCommittedSeq(): void {
    if (this.journal !== undefined && this.journalSeq !== this.committedSeq)
      this.upsertSetting.run(JOURNAL_SEQ_KEY, String(this.journalSeq));
  }

  /**
   * What a crash left in the journal: its records newer than the last committed one, written
   * again in order as one batch before anything else (counts are loaded after this).
   */
  private openJournal(io: JournalIo | undefined): void {
    const opened = RequestJournal.open(journalFile(this.file), this.log, io);
    if (opened === undefined) return;
    this.journal = opened.journal;
    const stored = Number(this.selectSetting.get(JOURNAL_SEQ_KEY) ?? 0);
    this.journalSeq = this.committedSeq = Number.isSafeInteger(stored) && stored > 0 ? stored : 0;
    const todo: JournaledWrite[] = [];
    let damaged = 0;
    // A record is at most as new as now: a clock set back since by a day or more loses it, rather
    // than a damaged time keeping a machine counted for ever.
    const latestMs = this.clock.now() + DAY_MS;
    // Sequence numbers only increase through a journal (appends, resets and restarts alike): a
    // line at or below the one before it is a copy, and replaying it would store a request twice.
    let last = 0;
    let lineNo = 0;
    let firstDamagedLine = 0;
    for (const line of opened.lines) {
      lineNo++;
      const record = decodeRecord(line, latestMs);
      if (record === undefined || record.seq <= last) {
        if (damaged++ === 0) firstDamagedLine = lineNo;
        continue;
      }
      last = record.seq;
      if (record.seq > this.committedSeq) todo.push(record.write);
      if (record.seq > this.journalSeq) this.journalSeq = record.seq;
    }
    if (damaged > 0 || opened.tornBytes > 0) {
      this.log.warn(
        {
          code: 'KMS_ERR_STORE_JOURNAL_DAMAGED',
          file: opened.journal.file,
          damagedLines: damaged,
          firstDamagedLine,
          tornBytes: opened.tornBytes,
        },
        `the request journal ${opened.journal.file} held ${damaged} damaged lines (not a record this host writes, or values ` +
          `out of range${damaged > 0 ? `; the first is line ${firstDamagedLine}` : ''}) and ${opened.tornBytes} bytes of a ` +
          'cut-short write (a power cut or a disk error): they were skipped; every valid record was replayed',
      );
    }
    if (todo.length === 0) {
      this.journalSeq = Math.max(this.journalSeq, this.committedSeq);
      this.journal.reset();
      return;
    }
    this.replaying = true;
    try {
      this.beginBatch();
      for (const w of todo) {
        if (w.kind === 'served') this.thresholds.note(w.row.application, effectiveRequiredCount(w.row.required_count), w.row.now);
        this.write(w);
      }
    } finally {
      this.replaying = false;
    }
    this.commitSql();
    this.log.warn(
      { event: 'store-journal-replayed', file: opened.journal.file, requests: todo.length, stored: this.pending.isEmpty },
      `${todo.length} writes answered before the service last stopped without closing the database were taken from the ` +
        `request journal ${opened.journal.file}` +
        (this.pending.isEmpty ? ' and stored' : ' and are kept in memory until it is writable'),
    );
  }

  private inTransaction(fn: () => void): void {
    this.begin();
    try {
      fn();
      this.commitStmt.run();
    } catch (err) {
      this.rollback();
      throw err;
    }
    this.checkpoints?.committed(1);
  }

  // A lock held by another process (a backup, the CLI) is transient: one more try after it,
  // before the write counts as failed.
  private retryOnce(w: JournaledWrite): boolean {
    try {
      this.inTransaction(() => this.toFile(w));
      this.afterDurable(w);
      return true;
    } catch {
      return false;
    }
  }

  private rollback(): void {
    try {
      if (this.db.inTransaction) this.rollbackStmt.run();
    } catch {
      // SQLite may already have rolled back on SQLITE_FULL / SQLITE_IOERR
    }
  }

  private takeBatch(): JournaledWrite[] {
    const batch = this.batch;
    this.batch = [];
    if (this.state === 'batch') this.state = 'direct';
    return batch;
  }

  private abandonBatch(batch: JournaledWrite[], err: unknown): void {
    // The batch's lines not yet in the journal go there now, so a crash during the outage that
    // begins here still finds every answered request (the pending writes are only in memory).
    if (!this.turnLines.empty) this.journal?.append(this.turnLines.take());
    this.deferred = [];
    this.rollback();
    this.enterFailure(err);
    for (const w of batch) this.toPending(w);
  }

  /** One machine's pending writes in the order the requests made them (pending-writes.ts). */
  private replayMachine(m: PendingMachine): void {
    if (m.firstRefused) this.upsertRefused.run(m.firstRefused);
    for (const previous of m.replacedFirst) {
      this.renameClient.run(m.cmid, m.application, previous);
      this.deleteClient.run(m.application, previous);
    }
    if (m.firstServed) this.upsertServed.run(m.firstServed);
    const l = m.later;
    if (l) {
      const s = l.served;
      this.foldClient.run({
        application: l.application,
        cmid: l.cmid,
        requests: l.requests,
        last_seen: l.last_seen,
        counted: l.counted,
        last_hresult: l.last_hresult,
        workstation_changes: l.workstation_changes,
        previous_workstation: l.previous_workstation,
        address_changes: l.address_changes,
        previous_address: l.previous_address,
        has_served: s === null ? 0 : 1,
        workstation: l.workstation,
        client_address: l.client_address ?? '',
        first_address: l.first_address,
        sku: s?.sku ?? '',
        kms_group: s?.kms_group ?? '',
        license_status: s?.license_status ?? 0,
        protocol_version: s?.protocol_version ?? 0,
        vm: s?.vm ?? 0,
        required_count: s?.required_count ?? 0,
      });
    }
  }

  private keepEvent(event: EventRow): void {
    if (this.pending.addEvent(event)) return;
    this.droppedEvents++;
    if (this.warnedEvents) return;
    this.warnedEvents = true;
    this.log.error(
      { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, pendingEvents: this.pending.eventCount },
      `${this.file} is still unwritable and ${this.pending.eventCount} request-log entries wait in memory: further ` +
        'entries of the request log are dropped (and counted) until it is writable; counts and machines are not affected',
    );
  }

  private refuseMachine(): void {
    this.refusedMachines++;
    if (this.warnedMachines) return;
    this.warnedMachines = true;
    this.log.error(
      { code: 'KMS_ERR_STORE_BACKLOG_FULL', file: this.file, pendingMachines: this.pending.machineCount },
      `${this.file} is still unwritable and ${this.pending.machineCount} machines wait in memory, the most store.pendingMachines ` +
        'allows: machines not already waiting are refused (0xC004D104) until it is writable; free disk space now',
    );
  }

  private countSource(): CountSource {
    return {
      lastCounted: (application, cmid) => {
        this.applyDeferred();
        const p = this.pending.lookup(application, cmid);
        if (p === 'replaced') return undefined;
        const stored = this.lastCountedOf.get(application, cmid) as number | null | undefined;
        if (p === undefined || p.counted === null) return p === undefined ? stored : (stored ?? null);
        return Math.max(stored ?? p.counted, p.counted);
      },
      mostRecent: (application, limit) => {
        this.applyDeferred();
        if (this.pending.isEmpty) return this.mostRecentOf.all(application, limit) as [string, number][];
        const replaced = new Set(this.pending.replacedOf(application));
        const merged = new Map<string, number>();
        for (const [cmid, time] of this.mostRecentOf.all(application, limit + replaced.size) as [string, number][]) {
          if (!replaced.has(cmid)) merged.set(cmid, time);
        }
        for (const m of this.pending.machinesOf(application)) {
          if (m.counted !== null) merged.set(m.cmid, Math.max(merged.get(m.cmid) ?? m.counted, m.counted));
        }
        return [...merged].sort((a, b) => b[1] - a[1]).slice(0, limit);
      },
    };
  }

  private enterFailure(err: unknown): void {
    this.writeFailures++;
    this.lastWriteError = failureSummary(err);
    if (this.state === 'failing') return;
    this.state = 'failing';
    this.lastRetryAt = performance.now();
    const sqliteCode = sqliteCodeOf(err);
    const failure = describeWriteFailure(err, this.file);
    this.log.error({ code: failure.code, file: this.file, sqliteCode, err: (err as Error)?.message }, failure.message);
    this.startRetryTimer();
  }

  private retryIfDue(): void {
    if (this.state === 'failing' && performance.now() - this.lastRetryAt >= this.retryIntervalMs) this.flushPending();
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
