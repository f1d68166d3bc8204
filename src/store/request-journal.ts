// The request journal: an append-only file beside the database that makes an answered request
// durable with one write() instead of a SQLite commit. A lone commit costs a quarter of an
// activation's CPU (a dozen pwrites of WAL frames, five fcntl locks, the commit's own work); one
// append of a short line to a file is a tenth of that and gives the same guarantee as the WAL
// with synchronous=NORMAL: once write() returns, the bytes are the kernel's, and a crash of the
// process (kill -9, an abort) cannot lose them. The store commits to SQLite every few tens of
// milliseconds instead, and empties this file after each commit; at start it replays what a
// crash left here (sqlite-store.ts). When this file cannot be written (a full disk, an I/O
// error), the store falls back to a commit per turn, so nothing answered depends on it alone.
import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import type { StoreLog } from './store-log';

/** The file operations the journal makes, so that a test can make them fail as a full disk does. */
export interface JournalIo {
  write(fd: number, data: Buffer): number;
  truncate(fd: number, length: number): void;
}

export const NODE_JOURNAL_IO: JournalIo = Object.freeze({
  write: (fd: number, data: Buffer) => fs.writeSync(fd, data),
  truncate: (fd: number, length: number) => fs.ftruncateSync(fd, length),
});

/**
 * More than a crash can leave: the store commits after at most a few thousand lines. A larger
 * file is not ours to trust whole; its first part is read and the rest reported.
 */
const MAX_READ_BYTES = 16 * 1024 * 1024;

const { O_APPEND, O_CREAT, O_NOFOLLOW, O_RDWR } = fs.constants;
const OPEN_FLAGS = O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW;

export interface OpenedJournal {
  readonly journal: RequestJournal;
  /**
   * The lines found at start (every complete line; the store decides what they mean), read one
   * at a time: a file of millions of empty lines must not become an array of millions of strings.
   */
  readonly lines: Iterable<string>;
  /** Bytes at the end that were not a complete line: a write cut short. */
  readonly tornBytes: number;
}

export class RequestJournal {
  /** Bytes of whole lines in the file: what a failed append is cut back to. */
  private size: number;
  private broken = false;
  private warned = false;

  private constructor(
    private readonly fd: number,
    readonly file: string,
    size: number,
    private readonly io: JournalIo,
    private readonly log: StoreLog,
    private readonly lock: Database.Database,
  ) {
    this.size = size;
  }

  /**
   * Opens (or creates) the journal and reads what it holds. undefined, with the reason logged,
   * when it cannot be used: the store then commits every turn as it did without one.
   */
  static open(file: string, log: StoreLog, io: JournalIo = NODE_JOURNAL_IO): OpenedJournal | undefined {
    const lock = lockFor(file, log);
    if (lock === undefined) return undefined;
    let fd: number;
    try {
      // Not through a symbolic link: the journal is emptied after every commit, and the file a
      // link names (put there by mistake or by someone else) is not ours to truncate.
      fd = fs.openSync(file, OPEN_FLAGS, 0o640);
    } catch (err) {
      lock.close();
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        log.warn(
          { code: 'KMS_ERR_STORE_WRITE_FAILED', file },
          `the request journal ${file} is not a regular file (a symbolic link, not followed): it is not used, and every ` +
            'group of requests is committed to the database on its own; remove it',
        );
        return undefined;
      }
      log.warn(
        { code: 'KMS_ERR_STORE_WRITE_FAILED', file, err: (err as Error).message },
        `cannot open the request journal ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}): every group of ` +
          "requests is committed to the database on its own instead, which is slower; fix the data directory's permissions",
      );
      return undefined;
    }
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      fs.closeSync(fd);
      lock.close();
      log.warn(
        { code: 'KMS_ERR_STORE_WRITE_FAILED', file },
        `the request journal ${file} is not a regular file: it is not used, and every group of requests is committed ` +
          'to the database on its own; remove it',
      );
      return undefined;
    }
    const length = Math.min(stat.size, MAX_READ_BYTES);
    const data = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const n = fs.readSync(fd, data, read, length - read, read);
      if (n === 0) break;
      read += n;
    }
    const text = data.subarray(0, read).toString('utf8');
    const end = text.lastIndexOf('\n') + 1;
    const lines = linesOf(text, end);
    const whole = Buffer.byteLength(text.slice(0, end));
    const journal = new RequestJournal(fd, file, whole, io, log, lock);
    // A torn end is cut off now: the next append would otherwise join it into one bad line.
    if (whole < stat.size) journal.cut(whole);
    return { journal, lines, tornBytes: stat.size - whole };
  }

  /** Bytes of whole lines in the file. */
  get bytes(): number {
    return this.size;
  }

  /** Whether appends can be made (false after a failure that could not be cut back). */
  get usable(): boolean {
    return !this.broken;
  }

  /**
   * Appends whole lines with one write. false when they are not (all) in the file: the caller
   * must make the same writes durable another way. A partial write is cut back, so the file
   * never holds a torn line in the middle.
   */
  append(lines: Buffer): boolean {
    if (this.broken) return false;
    const bytes = lines.length;
    let written = 0;
    try {
      written = this.io.write(this.fd, lines);
    } catch (err) {
      this.failed(err);
      return false;
    }
    if (written !== bytes) {
      this.failed(Object.assign(new Error(`short write: ${written} of ${bytes} bytes`), { code: 'ENOSPC' }));
      return false;
    }
    this.size += bytes;
    this.warned = false;
    return true;
  }

  /** Empties the file once everything in it is committed to the database. */
  reset(): void {
    if (this.size === 0 || this.broken) return;
    this.cut(0);
    if (!this.broken) this.size = 0;
  }

  private cut(length: number): void {
    try {
      this.io.truncate(this.fd, length);
    } catch (err) {
      this.stop(err);
    }
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // closing twice, or an fd already gone: nothing to keep
    }
    if (this.lock.open) this.lock.close();
  }

  private failed(err: unknown): void {
    this.cut(this.size);
    if (this.broken || this.warned) return;
    this.warned = true; // once per outage: every turn fails the same way until space returns
    this.log.warn(
      { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, err: (err as Error).message },
      `cannot append to the request journal ${this.file} (${(err as NodeJS.ErrnoException).code ?? 'error'}): ` +
        'requests are committed to the database directly until it works again; free disk space',
    );
  }

  // The file may now end in a torn line that cannot be cut off: appending after it would put
  // whole lines behind a bad one, which a replay stops at. So no more appends until a restart,
  // whose replay reads every whole line before the torn one and then empties the file.
  private stop(err: unknown): void {
    this.broken = true;
    this.log.error(
      { code: 'KMS_ERR_STORE_WRITE_FAILED', file: this.file, err: (err as Error).message },
      `the request journal ${this.file} cannot be truncated (${(err as NodeJS.ErrnoException).code ?? 'error'}): it is ` +
        'no longer used until the service restarts, and every group of requests is committed to the database on its own',
    );
  }
}

/** The complete lines of text[0, end), end just past a newline, each without it. */
function* linesOf(text: string, end: number): Generator<string> {
  let from = 0;
  while (from < end) {
    const nl = text.indexOf('\n', from);
    yield text.slice(from, nl);
    from = nl + 1;
  }
}

/**
 * The journal belongs to one process: a second server on the same data directory would empty it
 * after its own commits and lose the first one's answered requests. Node has no file lock, so an
 * exclusive SQLite transaction on a file beside it holds one (an fcntl lock, which the kernel
 * drops when the process ends, kill -9 included). undefined, with the reason logged, when another
 * process holds it: this one then commits every group itself and leaves the journal alone.
 */
function lockFor(file: string, log: StoreLog): Database.Database | undefined {
  const lockFile = `${file}-lock`;
  let lock: Database.Database | undefined;
  try {
    lock = new Database(lockFile, { timeout: 0 });
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.pragma('journal_mode = MEMORY'); // nothing is ever written there: no rollback journal file beside it
    lock.exec('BEGIN EXCLUSIVE');
    return lock;
  } catch (err) {
    lock?.close();
    const busy = (err as { code?: string }).code?.startsWith('SQLITE_BUSY') === true;
    log.warn(
      { code: 'KMS_ERR_STORE_WRITE_FAILED', file, err: (err as Error).message },
      busy
        ? `another process serves from this data directory (it holds ${lockFile}): this one does not use the request journal ` +
            'and commits every group of requests itself; two servers on one database are not supported, stop one of them'
        : `cannot lock the request journal (${lockFile}: ${(err as Error).message}): every group of requests is committed ` +
            "to the database on its own instead, which is slower; fix the data directory's permissions",
    );
    return undefined;
  }
}
