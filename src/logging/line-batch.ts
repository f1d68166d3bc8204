// Log lines gathered into one string of a few kilobytes before they reach pino's asynchronous
// destination (sonic-boom). Handed one line at a time, sonic-boom appends each to the text it is
// holding and measures that whole text's UTF-8 length again (Buffer.byteLength of a string built
// by +=, which V8 first copies into one piece): 2–4 µs per request line for an 8 KiB buffer. Here
// a line costs one append; the destination sees one write per batch.
import type { DestinationStream } from 'pino';

/** What serve's log output needs from a destination: lines in, a timed flush, a flush at exit. */
export interface BufferedDestination extends DestinationStream {
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/** Lines held until at least this many characters are waiting (sonic-boom's minLength is bytes). */
const DEFAULT_BATCH_CHARS = 8192;

/** Batches not yet passed on when the process exits: passed on first, so the destination's own exit flush writes them. */
const live = new Set<LineBatch>();
let exitHooked = false;

class LineBatch implements BufferedDestination {
  private pending = '';

  constructor(
    private readonly dest: BufferedDestination,
    private readonly batchChars: number,
  ) {}

  write(line: string): void {
    this.pending += line;
    if (this.pending.length >= this.batchChars) this.pass();
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
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.dest.write(text);
  }
}

export function batchLines(dest: BufferedDestination, batchChars: number = DEFAULT_BATCH_CHARS): BufferedDestination {
  const batch = new LineBatch(dest, batchChars);
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
