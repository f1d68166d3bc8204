// WAL checkpoints on the store's own connection, their fsyncs in libuv's thread pool.
//
// With synchronous=NORMAL SQLite checkpoints inside the COMMIT that crosses wal_autocheckpoint and
// fsyncs the -wal file, then the database file, while the event loop waits: milliseconds on an SSD,
// up to hundreds on the SD cards branch-office boxes boot from. A worker thread on a second
// connection used to run them; its V8 isolate was about 9 MB of the server's 80.
//
// Here the connection runs with synchronous=OFF and this module makes the two fsyncs itself, off
// the loop, around a PASSIVE checkpoint that only copies pages into the page cache. It keeps the
// order SQLite's own checkpoint keeps, which is what makes a power cut harmless:
//   1. the frames a checkpoint copies are on disk before it copies them (fdatasync of the -wal
//      file), so the database file is never ahead of the log that explains it;
//   2. the database file is on disk before anything reuses the WAL from its start (the first
//      commit after a complete checkpoint does) or truncates it;
//   3. the WAL's new header is on disk before a second new frame overwrites an old one. A power cut
//      that kept the old header and some of the new frames would otherwise leave a valid-looking
//      prefix of the old log, whose older pages would be laid over the newer file (SQLite fsyncs the
//      header itself at a restart, except with synchronous=OFF). So this connection starts the
//      WAL again only at the end of a cycle, with a commit of one page (PRAGMA user_version set to
//      itself): whatever part of it reaches the disk, no old frame stays valid in front of a new one.
//      The -wal file is synced before anything else commits. Between cycles a read transaction on
//      a connection of this module's own keeps the WAL from restarting (SQLite restarts it only when
//      no reader uses it), so held commits append instead.
// Nothing may commit on the connection from the first fsync to the end of the second: the store
// holds its commits while `holding`, and the requests it answers meanwhile are durable in the
// request journal, as every request is before its commit. Whatever must write through the
// connection during a cycle (a write without the journal, close, pruning, the fleet outbox) first
// calls settle(): the rest of the cycle runs at once, its fsyncs on the loop. That is rare and
// never on the request path while the journal is in use.
// Another process (the CLI, a second server) may commit too. The same read transaction, taken
// again just before the -wal fsync, makes those commits append to the WAL instead of starting it
// again from its beginning, and keeps their frames out of the copy. Its restarts are safe anyway:
// with synchronous=NORMAL SQLite syncs the new header itself.
// A cycle starts after a commit once cycleWrites writes were committed since the last one, which
// bounds what one copy holds the loop for, or on the interval timer while anything is left.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';

/** The fsyncs, replaceable in tests (held, failed, counted). */
export interface SyncIo {
  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void;
  fdatasyncSync(fd: number): void;
}

const NODE_SYNC_IO: SyncIo = Object.freeze({
  fdatasync: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => fs.fdatasync(fd, done),
  fdatasyncSync: (fd: number) => fs.fdatasyncSync(fd),
});

export interface WalCheckpointOptions {
  /** A cycle at least this often while anything was committed since the last one. */
  readonly intervalMs: number;
  /** A cycle once this many writes were committed since the last one. */
  readonly cycleWrites: number;
  /** A -wal file this large is truncated once a cycle has copied and synced all of it. */
  readonly truncateBytes: number;
}

export interface CheckpointLog {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

type Phase = 'idle' | 'wal-sync' | 'db-sync' | 'header-sync';

/** fsyncs of the -wal file again when another process committed meanwhile, before copying anyway. */
const MAX_RESYNCS = 3;

interface PassiveResult {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
}

export class WalCheckpoints {
  private phase: Phase = 'idle';
  /** Bumped when a cycle ends, so that the callback of an fsync a settle() overtook is ignored. */
  private cycle = 0;
  private inFlight = 0;
  private writesSinceCycle = 0;
  private due = false;
  /** Whether the last copy took every frame (the WAL may then restart or be truncated). */
  private copiedAll = false;
  /** data_version at the copy: another process's commit after it leaves frames the file does not have on disk. */
  private versionAtCopy = 0;
  /** data_version when the last cycle started: the timer starts one when another process committed since. */
  private versionAtStart = 0;
  private dbFd: number | undefined;
  private walFd: number | undefined;
  /** The -wal file's inode whose directory entry was synced (a new file needs its entry on disk too). */
  private walInoSynced = -1;
  private readonly timer: NodeJS.Timeout;
  // Prepared once: a cycle reads data_version two or three times and copies once, dozens of times a second under load.
  private readonly dataVersionStmt: Database.Statement;
  private readonly passiveStmt: Database.Statement;
  /** The read transaction that keeps the WAL from restarting outside the end of a cycle (see the top). */
  private readonly guard: Guard;
  /** The one-page commit that may start the WAL again: user_version set to its own value. */
  private readonly restartStmt: Database.Statement;
  /** The last restart commit failed: SQLite's own syncs (synchronous=NORMAL) protect restarts until one succeeds. */
  private unguarded = false;
  private stopped = false;
  private closedFds: (() => void) | undefined;
  private warnedSync = false;
  private syncFailures = 0;
  /** The last fsync's failure while no fsync has succeeded since; null once one has. */
  private lastSyncError: string | null = null;
  private warnedCopy = false;
  private warnedSize = false;

  /**
   * undefined when the guard's connection cannot be opened: the store then keeps synchronous=NORMAL
   * and SQLite's own checkpoints, whose fsyncs run inside commits.
   */
  static open(
    db: Database.Database,
    file: string,
    options: WalCheckpointOptions,
    log: CheckpointLog,
    quiet: () => boolean,
    released: () => void,
    io: SyncIo = NODE_SYNC_IO,
  ): WalCheckpoints | undefined {
    const guard = openGuard(file);
    if (guard === undefined) {
      log.warn({ file }, `cannot open a second connection to ${file}; SQLite checkpoints inside commits instead`);
      return undefined;
    }
    return new WalCheckpoints(db, file, guard, options, log, quiet, released, io);
  }

  private constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    guard: Guard,
    private readonly options: WalCheckpointOptions,
    private readonly log: CheckpointLog,
    /** Whether the connection has no open transaction (a checkpoint cannot run inside one). */
    private readonly quiet: () => boolean,
    /** Called when a cycle ends: the store commits what it held. */
    private readonly released: () => void,
    private readonly io: SyncIo = NODE_SYNC_IO,
  ) {
    db.pragma('wal_autocheckpoint = 0');
    db.pragma('synchronous = OFF');
    this.dataVersionStmt = db.prepare('PRAGMA data_version').pluck();
    this.passiveStmt = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
    this.versionAtStart = this.dataVersion();
    this.restartStmt = db.prepare(`PRAGMA user_version = ${db.pragma('user_version', { simple: true }) as number}`);
    this.guard = guard;
    // Until now the connection may have restarted the WAL with SQLite's own header fsync
    // (synchronous=NORMAL, at open): from here on only the end of a cycle does, as at its end.
    this.restartWal(true);
    this.timer = setInterval(() => this.onTimer(), options.intervalMs);
    this.timer.unref();
  }

  /** fsyncs that failed since start, and the last failure while none has succeeded since. */
  get syncStats(): { readonly failures: number; readonly lastError: string | null } {
    return { failures: this.syncFailures, lastError: this.lastSyncError };
  }

  /** While true, nothing may commit on the connection. */
  get holding(): boolean {
    return this.phase !== 'idle';
  }

  /** The store calls this after each of its commits, when the connection is quiet. */
  committed(writes: number): void {
    if (this.stopped) return;
    this.writesSinceCycle += writes;
    if (this.phase === 'idle' && (this.due || this.writesSinceCycle >= this.options.cycleWrites)) this.start();
  }

  /** Runs the rest of a cycle now, its fsyncs on this thread: something must write through the connection. */
  settle(): void {
    if (this.phase === 'wal-sync') {
      if (this.syncNow(this.walFd!, 'wal')) this.copy();
      else this.phase = 'db-sync';
    }
    if (this.phase === 'db-sync') {
      this.syncNow(this.dbFd!, 'db');
      this.finish(true);
    }
    if (this.phase === 'header-sync') {
      this.syncNow(this.walFd!, 'wal');
      this.end();
    }
  }

  /** Settles, stops the timer, and resolves once no fsync is in flight and the files are closed. */
  stop(): Promise<void> {
    this.settle();
    this.stopped = true;
    clearInterval(this.timer);
    this.guard.db.close();
    if (this.inFlight === 0) {
      this.closeFds();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.closedFds = resolve;
    });
  }

  private onTimer(): void {
    if (this.stopped || this.phase !== 'idle') return;
    // Another process's commits count too: the guard's snapshot, held until the next cycle, would
    // otherwise keep their frames in the WAL for as long as this server writes nothing.
    if (this.writesSinceCycle === 0 && this.dataVersion() === this.versionAtStart) return;
    if (this.quiet()) this.start();
    else this.due = true; // started by the next commit
  }

  private start(): void {
    this.due = false;
    this.writesSinceCycle = 0;
    this.versionAtStart = this.dataVersion();
    if (!this.openFds()) return;
    this.phase = 'wal-sync';
    this.holdWal();
    const cycle = this.cycle;
    const walFd = this.walFd!;
    const ino = fs.fstatSync(walFd).ino;
    let resyncs = 0;
    const syncWal = (): void => {
      const version = this.dataVersion();
      this.syncAsync(walFd, 'wal', cycle, (ok) => {
        // Another process committed while the fsync ran (the CLI, a second server): its frames
        // are synced too before anything is copied.
        if (ok && this.dataVersion() !== version && ++resyncs <= MAX_RESYNCS) {
          syncWal();
          return;
        }
        // Frames the disk did not confirm are not copied: the file would be ahead of its log.
        if (ok) this.copy();
        else this.phase = 'db-sync';
        this.syncAsync(this.dbFd!, 'db', cycle, () => this.finish(false));
      });
    };
    if (ino === this.walInoSynced) {
      syncWal();
      return;
    }
    // A -wal file created since the last cycle: its directory entry goes to disk first.
    let dirFd: number;
    try {
      dirFd = fs.openSync(path.dirname(this.file), 'r');
    } catch {
      syncWal(); // some file systems refuse to open a directory; SQLite then skips it too
      return;
    }
    this.inFlight++;
    this.io.fdatasync(dirFd, (err) => {
      this.inFlight--;
      fs.closeSync(dirFd);
      if (!err) this.walInoSynced = ino;
      if (this.afterFlight(cycle)) syncWal();
    });
  }

  /** (Re)takes the guard's read transaction at the WAL's current end. */
  private holdWal(): boolean {
    try {
      this.releaseWal();
      this.guard.begin();
      return true;
    } catch {
      this.releaseWal(); // without it the cycle still orders this connection's own commits
      return false;
    }
  }

  private releaseWal(): void {
    if (this.guard.db.inTransaction) this.guard.end();
  }

  /**
   * The one place this connection starts the WAL again (see the top): the one-page commit, the
   * guard taken again behind it, and the -wal file synced before anything else commits (on the
   * loop when `onLoop`, else in the pool while the store holds its commits). false = nothing to sync.
   */
  private restartWal(onLoop: boolean): boolean {
    let ok = true;
    try {
      this.restartStmt.run();
    } catch (err) {
      ok = false;
      if (!this.unguarded) {
        this.log.warn(
          { file: this.file, err: (err as Error).message },
          `could not start the WAL of ${this.file} again (${(err as Error).message}); SQLite syncs its restarts itself until it can`,
        );
      }
    }
    // Either way the guard is taken again: it keeps the next commits from restarting the WAL.
    ok = this.holdWal() && ok;
    this.setUnguarded(!ok);
    if (onLoop) {
      if (this.openFds()) this.syncNow(this.walFd!, 'wal');
      return false;
    }
    return true;
  }

  /** Without the guard or the restart commit, restarts must carry SQLite's own header fsync. */
  private setUnguarded(unguarded: boolean): void {
    if (unguarded === this.unguarded) return;
    this.unguarded = unguarded;
    this.db.pragma(`synchronous = ${unguarded ? 'NORMAL' : 'OFF'}`);
  }

  /** Changes when another connection commits (this connection's own commits leave it). */
  private dataVersion(): number {
    return this.dataVersionStmt.get() as number;
  }

  /** The copy: every frame the readers allow, into the database file's page cache. */
  private copy(): void {
    this.copiedAll = false;
    this.versionAtCopy = this.dataVersion();
    try {
      const r = this.passiveStmt.get() as PassiveResult;
      this.copiedAll = r.busy === 0 && r.checkpointed === r.log;
    } catch (err) {
      if (!this.warnedCopy) {
        this.warnedCopy = true; // repeats every cycle while it lasts; once is enough
        this.log.warn(
          { file: this.file, err: (err as Error).message },
          `WAL checkpoint of ${this.file} failed; the -wal file grows until it works`,
        );
      }
    }
    this.phase = 'db-sync';
  }

  /** The database file is on disk: the WAL may start again (or be cut back) at the end of the cycle. */
  private finish(onLoop: boolean): void {
    // Only when all of the WAL is in the database file and on disk may it start again or be cut
    // (and only outside a transaction, which the store never has open while it holds its commits).
    const complete = this.copiedAll && this.dataVersion() === this.versionAtCopy && this.quiet();
    const size = this.walSize();
    if (complete && size >= this.options.truncateBytes) {
      this.releaseWal(); // TRUNCATE waits for no reader
      this.truncate(size);
    } else if (size >= this.options.truncateBytes) {
      this.warnLarge(size); // a reader held the copy back
    }
    if (!complete) {
      // Frames are left that the file does not hold: commits append behind them, no restart.
      // (Only a restart commit that worked makes the connection drop SQLite's own syncs again.)
      if (!this.holdWal()) this.setUnguarded(true);
      this.end();
      return;
    }
    this.releaseWal();
    if (!this.restartWal(onLoop)) {
      this.end();
      return;
    }
    this.phase = 'header-sync';
    this.syncAsync(this.walFd!, 'wal', this.cycle, () => this.end());
  }

  private end(): void {
    this.phase = 'idle';
    this.cycle++;
    this.released();
  }

  private walSize(): number {
    try {
      return fs.fstatSync(this.walFd!).size;
    } catch {
      return 0;
    }
  }

  private truncate(size: number): void {
    const busyTimeout = this.db.pragma('busy_timeout', { simple: true }) as number;
    try {
      // Never waits for a reader on the loop: a reader in the way means another try next cycle.
      this.db.pragma('busy_timeout = 0');
      // Another process may have committed since the copy: SQLite then syncs its frames before
      // copying them and the file after, as its own checkpoints do (rare: only a large WAL is cut).
      this.db.pragma('synchronous = NORMAL');
      const r = (this.db.pragma('wal_checkpoint(TRUNCATE)') as PassiveResult[])[0]!;
      if (r.busy !== 0) this.warnLarge(size);
    } catch {
      this.warnLarge(size);
    } finally {
      this.db.pragma(`synchronous = ${this.unguarded ? 'NORMAL' : 'OFF'}`);
      this.db.pragma(`busy_timeout = ${busyTimeout}`);
    }
  }

  private warnLarge(size: number): void {
    if (this.warnedSize || size < 3 * this.options.truncateBytes) return;
    this.warnedSize = true; // a reader holding an old snapshot (a long backup) keeps the frames
    this.log.warn(
      { file: this.file, walBytes: size },
      `the WAL of ${this.file} could not be truncated (a long-running reader?); it is retried`,
    );
  }

  private syncAsync(fd: number, which: 'wal' | 'db', cycle: number, next: (ok: boolean) => void): void {
    this.inFlight++;
    this.io.fdatasync(fd, (err) => {
      this.inFlight--;
      if (err) this.syncFailed(which, err);
      else this.lastSyncError = null;
      if (this.afterFlight(cycle)) next(!err);
    });
  }

  /** After an fsync returns: whether its cycle is still the one running (settle() may have ended it). */
  private afterFlight(cycle: number): boolean {
    if (this.stopped && this.inFlight === 0 && this.closedFds !== undefined) {
      this.closeFds();
      this.closedFds();
      this.closedFds = undefined;
    }
    return cycle === this.cycle && !this.stopped;
  }

  private syncNow(fd: number, which: 'wal' | 'db'): boolean {
    try {
      this.io.fdatasyncSync(fd);
      this.lastSyncError = null;
      return true;
    } catch (err) {
      this.syncFailed(which, err as NodeJS.ErrnoException);
      return false;
    }
  }

  private syncFailed(which: 'wal' | 'db', err: NodeJS.ErrnoException): void {
    const f = which === 'wal' ? `${this.file}-wal` : this.file;
    this.syncFailures++;
    this.lastSyncError = `${err.code ?? err.message} on ${f}`;
    if (this.warnedSync) return;
    this.warnedSync = true;
    this.log.error(
      { code: 'KMS_ERR_STORE_SYNC_FAILED', file: f, err: err.code ?? err.message },
      `fsync of ${f} failed (${err.code ?? err.message}): the disk did not confirm what was written, so a power cut could ` +
        'lose recent activations; the host keeps serving (the records stay in the file and the request journal). Check the disk',
    );
  }

  private openFds(): boolean {
    try {
      this.dbFd ??= fs.openSync(this.file, 'r');
      this.walFd ??= fs.openSync(`${this.file}-wal`, 'r');
      return true;
    } catch {
      return false; // no -wal file yet: nothing to checkpoint
    }
  }

  private closeFds(): void {
    for (const fd of [this.dbFd, this.walFd]) {
      if (fd !== undefined) fs.closeSync(fd);
    }
    this.dbFd = this.walFd = undefined;
  }
}

interface Guard {
  readonly db: Database.Database;
  begin(): void;
  end(): void;
}

/** A connection of its own for the guard's read transaction; undefined if it cannot be opened. */
function openGuard(file: string): Guard | undefined {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('cache_size = -64'); // it reads one page per cycle
    const begin = db.prepare('BEGIN');
    const read = db.prepare('SELECT 1 FROM sqlite_master LIMIT 1'); // the read transaction starts at its first read
    const end = db.prepare('COMMIT');
    return {
      db,
      begin() {
        begin.run();
        read.get();
      },
      end() {
        end.run();
      },
    };
  } catch {
    db?.close();
    return undefined;
  }
}
