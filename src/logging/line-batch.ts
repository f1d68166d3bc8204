// Log lines gathered into one Buffer of a few kilobytes before they reach pino's asynchronous
// destination (sonic-boom, in its Buffer mode). Handed one string line at a time, sonic-boom
// appends each to the text it is holding and measures that whole text's UTF-8 length again: 2–4 µs
// per request line for an 8 KiB buffer. Here a line is encoded once into the batch, and the request
// line is written into it directly (reserve/commit, no string at all); the destination sees one
// write per batch.
import type { DestinationStream } from 'pino';
import { JsonBytes } from '../json-bytes';

/** What serve's log output needs from a destination: lines in, a timed flush, a flush at exit. */
export interface BufferedDestination extends DestinationStream {
  /** A batch writes Buffers only. */
  write(line: string | Buffer): void;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/** A destination that lets a line be written into its own buffer (the request line's fast path). */
export interface ReservingDestination {
  /**
   * A cursor at the end of what is waiting, with room for `bytes`, or undefined for a line too long
   * for a batch (the caller then writes a string). End the line with commit().
   */
  reserve(bytes: number): JsonBytes | undefined;
  commit(line: JsonBytes): void;
}

export function canReserve(dest: unknown): dest is ReservingDestination {
  return typeof (dest as Partial<ReservingDestination>).reserve === 'function';
}

/** Lines are passed on once at least this many bytes wait (sonic-boom's minLength is bytes too). */
export const DEFAULT_BATCH_BYTES = 8192;
const MIN_CAPACITY = 16384;

/** Batches not yet passed on when the process exits: passed on first, so the destination's own exit flush writes them. */
const live = new Set<LineBatch>();
let exitHooked = false;

class LineBatch implements BufferedDestination, ReservingDestination {
  private buf: Buffer;
  private used = 0;
  private readonly cursor: JsonBytes;
  /** Room for a whole batch and one more line of up to a batch's size (16 KiB at least). */
  private readonly capacity: number;

  constructor(
    private readonly dest: BufferedDestination,
    private readonly batchBytes: number,
  ) {
    this.capacity = Math.max(2 * batchBytes, MIN_CAPACITY);
    this.buf = Buffer.allocUnsafeSlow(this.capacity);
    this.cursor = new JsonBytes(this.buf, 0);
  }

  write(line: string | Buffer): void {
    // Three bytes per UTF-16 unit at most: checked before writing, as utf8Write cuts short silently.
    const most = typeof line === 'string' ? 3 * line.length : line.length;
    if (most > this.capacity - this.used) {
      this.pass();
      if (most > this.capacity) {
        this.dest.write(typeof line === 'string' ? Buffer.from(line, 'utf8') : line);
        return;
      }
    }
    this.used += typeof line === 'string' ? this.buf.write(line, this.used, 'utf8') : line.copy(this.buf, this.used);
    if (this.used >= this.batchBytes) this.pass();
  }

  reserve(bytes: number): JsonBytes | undefined {
    if (bytes > this.capacity) return undefined;
    if (bytes > this.capacity - this.used) this.pass();
    this.cursor.buf = this.buf;
    this.cursor.at = this.used;
    return this.cursor;
  }

  commit(line: JsonBytes): void {
    this.used = line.at;
    if (this.used >= this.batchBytes) this.pass();
  }

  flush(cb?: (err?: Error) => void): void {
    this.pass();
    this.dest.flush(cb);
  }

  flushSync(): void {
    this.pass();
    this.dest.flushSync();
  }

  pass(): void {
    if (this.used === 0) return;
    const out = this.buf.subarray(0, this.used);
    // The destination keeps `out` until its write completes: the next lines go to a new buffer.
    this.buf = Buffer.allocUnsafeSlow(this.capacity);
    this.used = 0;
    this.dest.write(out);
  }
}

export function batchLines(
  dest: BufferedDestination,
  batchBytes: number = DEFAULT_BATCH_BYTES,
): BufferedDestination & ReservingDestination {
  const batch = new LineBatch(dest, batchBytes);
  live.add(batch);
  if (!exitHooked) {
    exitHooked = true;
    // Before pino's own exit hooks (registered when the destination was made), which flush it.
    const passAll = (): void => {
      for (const b of live) {
        try {
          b.pass();
        } catch {
          // Its destination is already closed (a serve run that ended): nothing left to write to.
        }
      }
    };
    process.prependListener('beforeExit', passAll);
    process.prependListener('exit', passAll);
  }
  return batch;
}
