// What the store does off the request path, at open and with the event log's prune (hourly and
// every store.maxEvents/20 requests): old events deleted, the machine rows kept at
// store.maxMachines, and counting times left in the future by a clock set ahead brought back.
// Each step runs a bounded number of rows, so a large backlog is worked off over several prunes.

import type Database from 'better-sqlite3';
import { COUNT_WINDOW_MS } from '../host/counting';
import { CLOCK_CORRECTION_SETTING, type ClockCorrection } from './inventory';
import type { StoreLog } from './store-log';
import type { Thresholds } from './thresholds';

const DAY_MS = 86_400_000;
/**
 * A stored counting time this far ahead of the host clock means the clock was set ahead and has
 * been corrected since (a step of hours is an ordinary NTP correction or a time zone mistake).
 */
const CLOCK_AHEAD_TOLERANCE_MS = DAY_MS;
/**
 * A clock reading earlier than this is wrong now, not corrected: this code did not exist before
 * it (a box without a real-time clock starts in 1970 until NTP sets it). Moving every stored
 * time back to such a "now" would lose every count once the clock is set.
 */
const CLOCK_FLOOR_MS = Date.UTC(2026, 0, 1);
/**
 * Rows one prune statement deletes at most (a few ms); a prune that filled it is followed by
 * another in the next turns, so lowering store.maxEvents or a flood never holds the loop for long.
 */
const PRUNE_CHUNK_ROWS = 10_000;
/**
 * Machine rows one step deletes at most: a machine row costs about 28 µs to delete (the row, its
 * window index entry), an event a fraction of that, so a step of these holds the loop about 30 ms.
 * A store of a million machines cut back to the default cap takes some 900 steps, each followed by
 * the next a few ms later, while requests are still answered in between.
 */
const MACHINE_CHUNK_ROWS = 1_000;

export interface HousekeepingLimits {
  readonly retentionMs: number;
  readonly maxEvents: number;
  readonly maxMachines: number;
}

export interface PruneResult {
  readonly deleted: number;
  /** A step stopped at PRUNE_CHUNK_ROWS: another prune should follow soon. */
  readonly more: boolean;
}

export class Housekeeping {
  /**
   * store.maxMachines rows are stored and every one is counted in the window: machines without a
   * row are refused until some leave it. Set and cleared with the prune.
   */
  private capReached = false;
  /**
   * A cut back to the machine cap that takes several steps: the rows counted at its start, deleted
   * since, and the key the last step in key order stopped at.
   */
  private cut: { readonly rows: number; deleted: number; after: [string, string] } | undefined;
  private warnedClockFloor = false;
  private readonly pruneByAge: Database.Statement;
  private readonly pruneByCount: Database.Statement;
  private readonly countMachines: Database.Statement;
  private readonly pruneUncounted: Database.Statement;
  private readonly uncountedAfter: Database.Statement;
  private readonly deleteMachine: Database.Statement;
  private readonly applicationsOf: Database.Statement;
  private readonly newestCountedOf: Database.Statement;
  private readonly clampClientsAhead: Database.Statement;
  private readonly clampRequiredAhead: Database.Statement;
  private readonly saveCorrection: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly log: StoreLog,
    private readonly limits: HousekeepingLimits,
    private readonly thresholds: Thresholds,
    /** The in-memory counts of an application must be read again from the file. */
    private readonly reloadCounts: (application: string) => void,
  ) {
    // Events are appended in time order, so the rows to prune are a prefix of the rowid order:
    // this walks only the rows it deletes and needs no index on time (one less write per request).
    // The newest event always stays, however old: with the table emptied, SQLite would hand out
    // ids from 1 again, and readers that follow the log by increasing id (fleet reporting) would
    // skip what comes next.
    this.pruneByAge = db.prepare(`
      DELETE FROM events WHERE id < MIN(
        COALESCE((SELECT id FROM events WHERE time_ms >= :cutoff ORDER BY id LIMIT 1), (SELECT MAX(id) FROM events)),
        (SELECT MIN(id) FROM events) + :chunk)`);
    this.pruneByCount = db.prepare(`
      DELETE FROM events WHERE id <= MIN((SELECT MAX(id) FROM events) - :keep, (SELECT MIN(id) FROM events) + :chunk - 1)`);
    this.countMachines = db.prepare('SELECT count(*) FROM clients').pluck();
    // Machines no count includes (refused only, or counted before the window), longest unseen
    // first: deleting them changes no count. A scan and a sort, run only past store.maxMachines.
    this.pruneUncounted = db.prepare(`
      DELETE FROM clients WHERE (application, cmid) IN (
        SELECT application, cmid FROM clients WHERE last_counted_ms IS NULL OR last_counted_ms < :cutoff
        ORDER BY last_seen_ms LIMIT :chunk)`);
    // Far past the cap (a store from before the cap existed, or a cap lowered), the same rows in
    // key order from where the last step stopped: no sort of the table, and no step reads again
    // the counted rows an earlier one passed.
    this.uncountedAfter = db
      .prepare(`
        SELECT application, cmid FROM clients
        WHERE (application, cmid) > (:application, :cmid) AND (last_counted_ms IS NULL OR last_counted_ms < :cutoff)
        ORDER BY application, cmid LIMIT :chunk`)
      .raw();
    this.deleteMachine = db.prepare('DELETE FROM clients WHERE application = ? AND cmid = ?');
    // Every application with a machine row: a skip-scan of the index, one step per application.
    this.applicationsOf = db
      .prepare(`
        WITH RECURSIVE a(app) AS (
          SELECT MIN(application) FROM clients
          UNION ALL SELECT (SELECT MIN(application) FROM clients WHERE application > a.app) FROM a WHERE a.app IS NOT NULL)
        SELECT app FROM a WHERE app IS NOT NULL`)
      .pluck();
    this.newestCountedOf = db.prepare('SELECT MAX(last_counted_ms) FROM clients WHERE application = ?').pluck();
    this.clampClientsAhead = db.prepare(`
      UPDATE clients SET last_counted_ms = :now,
        last_seen_ms = CASE WHEN last_seen_ms > :limit THEN :now ELSE last_seen_ms END,
        first_seen_ms = CASE WHEN first_seen_ms > :limit THEN :now ELSE first_seen_ms END
      WHERE application = :application AND last_counted_ms > :limit`);
    this.clampRequiredAhead = db.prepare('UPDATE app_required SET last_served_ms = :now WHERE last_served_ms > :limit');
    this.saveCorrection = db.prepare(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
  }

  get machineCapReached(): boolean {
    return this.capReached;
  }

  /** Every application with a machine row. */
  applications(): string[] {
    return this.applicationsOf.all() as string[];
  }

  /**
   * One pass; the caller commits (each statement commits on its own outside a transaction).
   * `clockSettled`: false for the pass at start, when NTP may not have set the clock yet; times
   * ahead of it are corrected from the next pass on (hourly, or after store.maxEvents/20 requests).
   */
  prune(nowMs: number, clockSettled: boolean): PruneResult {
    if (clockSettled) this.correctTimesAhead(nowMs);
    const byAge = this.pruneByAge.run({ cutoff: nowMs - this.limits.retentionMs, chunk: PRUNE_CHUNK_ROWS }).changes;
    const byCount = this.pruneByCount.run({ keep: this.limits.maxEvents, chunk: PRUNE_CHUNK_ROWS }).changes;
    const machines = this.boundMachines(nowMs);
    return {
      deleted: byAge + byCount + machines,
      more: byAge === PRUNE_CHUNK_ROWS || byCount === PRUNE_CHUNK_ROWS || machines === MACHINE_CHUNK_ROWS,
    };
  }

  /**
   * Keeps the machine rows at store.maxMachines: a client that invents a machine id per request
   * would otherwise add a row each time until the disk is full. Past the cap, machines no count
   * includes go first (down to 90% of it, so this does not run on every prune); when every row is
   * counted, new machines are refused until the window lets some go. Returns the rows deleted.
   */
  private boundMachines(nowMs: number): number {
    const { maxMachines } = this.limits;
    const floor = Math.floor(maxMachines * 0.9);
    // A cut in progress carries its count: counting a million rows before every step of a thousand
    // would cost more than the step (machines added meanwhile are a few; the next cut counts them).
    const rows = this.cut ? this.cut.rows - this.cut.deleted : (this.countMachines.get() as number);
    if (rows <= maxMachines && this.cut === undefined) {
      if (this.capReached && rows < maxMachines) this.leaveMachineCap(rows);
      return 0;
    }
    const chunk = Math.max(0, Math.min(rows - floor, MACHINE_CHUNK_ROWS));
    const cut = (this.cut ??= { rows, deleted: 0, after: ['', ''] });
    const cutoff = nowMs - COUNT_WINDOW_MS;
    // Far past the cap, uncounted rows in key order (a sort of the whole table per step would hold
    // the loop half a second at a million rows); near it, the longest unseen first.
    const deleted =
      chunk === 0
        ? 0
        : rows > 2 * maxMachines
          ? this.deleteInKeyOrder(cut, cutoff, chunk)
          : this.pruneUncounted.run({ cutoff, chunk }).changes;
    cut.deleted += deleted;
    const left = cut.rows - cut.deleted;
    if (deleted === chunk && left > floor) {
      if (cut.deleted === deleted) {
        this.log.info(
          { code: 'KMS_ERR_STORE_MACHINE_CAP', file: this.file, machines: rows, maxMachines },
          `${rows} machines are stored, more than store.maxMachines (${maxMachines}): deleting those no count includes, ` +
            `${MACHINE_CHUNK_ROWS} at a time, down to ${floor}`,
        );
      }
      return deleted;
    }
    this.cut = undefined;
    if (cut.deleted > 0) {
      this.log.warn(
        { code: 'KMS_ERR_STORE_MACHINE_CAP', file: this.file, machines: cut.rows, maxMachines, deleted: cut.deleted },
        `${cut.rows} machines were stored, more than store.maxMachines (${maxMachines}): the ${cut.deleted} longest unseen ` +
          'of those no count includes were deleted (their request log stays); raise store.maxMachines if the site has this many',
      );
    }
    if (left > maxMachines) this.enterMachineCap(left);
    else if (this.capReached && left < maxMachines) this.leaveMachineCap(left);
    return deleted;
  }

  private deleteInKeyOrder(cut: { after: [string, string] }, cutoff: number, chunk: number): number {
    const [application, cmid] = cut.after;
    const keys = this.uncountedAfter.all({ application, cmid, cutoff, chunk }) as [string, string][];
    this.db.transaction(() => {
      for (const [a, c] of keys) this.deleteMachine.run(a, c);
    })();
    const last = keys.at(-1);
    if (last !== undefined) cut.after = last;
    return keys.length;
  }

  /**
   * A host clock set far ahead and corrected since left counting times in the future, and
   * last_counted only moves forward (rows.ts): those machines would count until that future date
   * plus 30 days, and a threshold served then would cap the count as long. Such times count as
   * seen now, the moment the clock is known to be right again: the machines did ask recently,
   * and now leave the window 30 days from now unless they ask again. Runs with the prune (not the
   * one at start), after the batch's writes are in the file, so the in-memory counts read back
   * what the file holds. A few index lookups when nothing is ahead. Returns the machines moved.
   */
  private correctTimesAhead(nowMs: number): number {
    if (nowMs < CLOCK_FLOOR_MS) {
      if (!this.warnedClockFloor) {
        this.warnedClockFloor = true;
        this.log.warn(
          { file: this.file, now: new Date(nowMs).toISOString() },
          `the host clock reads ${new Date(nowMs).toISOString()}, before this version of kms-appliance was made: it is wrong; ` +
            'stored counting times are left as they are until it is set (timedatectl, chrony)',
        );
      }
      return 0;
    }
    const limit = nowMs + CLOCK_AHEAD_TOLERANCE_MS;
    const ahead: { application: string; newest: number }[] = [];
    for (const application of this.applications()) {
      const newest = this.newestCountedOf.get(application) as number | null;
      if (newest !== null && newest > limit) ahead.push({ application, newest });
    }
    const thresholdNewest = this.thresholds.newestServed();
    if (ahead.length === 0 && thresholdNewest <= limit) return 0;
    const aheadUntilMs = Math.max(thresholdNewest, ...ahead.map((a) => a.newest));
    let machines = 0;
    this.db.transaction(() => {
      for (const a of ahead) machines += this.clampClientsAhead.run({ application: a.application, limit, now: nowMs }).changes;
      this.clampRequiredAhead.run({ limit, now: nowMs });
      const correction: ClockCorrection = { correctedAtMs: nowMs, aheadUntilMs, machines };
      this.saveCorrection.run(CLOCK_CORRECTION_SETTING, JSON.stringify(correction));
    })();
    this.thresholds.clampAhead(limit, nowMs);
    for (const a of ahead) this.reloadCounts(a.application);
    this.log.warn(
      { file: this.file, machines, aheadUntil: new Date(aheadUntilMs).toISOString(), now: new Date(nowMs).toISOString() },
      `the activation database holds counting times up to ${new Date(aheadUntilMs).toISOString()}, more than a day ahead of ` +
        `the host clock (${new Date(nowMs).toISOString()}): the clock was set ahead and has been corrected. The ${machines} ` +
        'machines seen meanwhile count as seen now and leave the 30-day window 30 days from now unless they ask again ' +
        '(kms-appliance status names this for 30 days); check the time source (timedatectl, chrony)',
    );
    return machines;
  }

  private enterMachineCap(rows: number): void {
    if (this.capReached) return;
    this.capReached = true;
    const { maxMachines } = this.limits;
    this.log.error(
      { code: 'KMS_ERR_STORE_MACHINE_CAP', file: this.file, machines: rows, maxMachines },
      `${rows} machines are stored, all counted in the last 30 days, and store.maxMachines is ${maxMachines}: ` +
        'machines the host has not seen before are refused (0xC004D104) while known ones renew. If the site really has ' +
        'this many machines, raise store.maxMachines; if not, a client is inventing machine ids (see the request log by address)',
    );
  }

  private leaveMachineCap(rows: number): void {
    this.capReached = false;
    const { maxMachines } = this.limits;
    this.log.info(
      { code: 'KMS_ERR_STORE_MACHINE_CAP', file: this.file, machines: rows, maxMachines },
      `${rows} machines are stored, below store.maxMachines (${maxMachines}): new machines are served again`,
    );
  }
}
