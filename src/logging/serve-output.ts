// Where serve's log lines go: batches (line-batch.ts) in front of a bounded non-blocking socket
// when stdout is a pipe or a socket (stream-destination.ts), else in front of pino's asynchronous
// file destination (a file, a terminal, /dev/null), bounded too. Closing waits a bounded time for
// the reader, so a stopped journal or `| less` never keeps the appliance from stopping; a write
// that fails (a full disk: ENOSPC, a terminal gone: EIO) ends the log, never the appliance.
import pino from 'pino';
import { batchLines, DEFAULT_BATCH_BYTES, type BufferedDestination, type ReservingDestination } from './line-batch';
import {
  boundedStreamDestination,
  countLines,
  DEFAULT_MAX_QUEUED_BYTES,
  isStreamDescriptor,
  openStreamDescriptor,
  type StreamDestinationOptions,
} from './stream-destination';

export interface ServeLogOutput {
  readonly destination: BufferedDestination & ReservingDestination;
  /** Flushes; what the reader has not taken after `ms` is given up. Resolves with the bytes given up. */
  close(ms: number): Promise<number>;
}

export function serveLogOutput(fd: number, options: StreamDestinationOptions): ServeLogOutput {
  const socket = isStreamDescriptor(fd) ? openOrUndefined(fd) : undefined;
  if (socket === undefined) {
    const destination = batchLines(guardedFileDestination(fd, options), DEFAULT_BATCH_BYTES);
    return { destination, close: (ms) => flushWithin(destination, ms).then(() => 0) };
  }
  const stream = boundedStreamDestination(socket, options);
  const destination = batchLines(stream, DEFAULT_BATCH_BYTES);
  return {
    destination,
    async close(ms) {
      return (await flushWithin(destination, ms)) ? 0 : stream.abandon();
    },
  };
}

/** A socket on `fd`, or undefined when Node cannot make one (a datagram socket): written as a file then. */
function openOrUndefined(fd: number): ReturnType<typeof openStreamDescriptor> | undefined {
  try {
    return openStreamDescriptor(fd);
  } catch {
    return undefined;
  }
}

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * pino's asynchronous destination (sonic-boom, Buffer mode) with what it lacks for an appliance:
 * a bound on what waits (beyond it batches are dropped and counted, reported once it drained),
 * and a failed write handled. Unhandled, a failed write is an uncaught error, and at exit
 * sonic-boom's synchronous flush retries it forever, 100 ms at a time: the process neither
 * serves nor ends. pino makes the stream inert the same way on EPIPE.
 */
function guardedFileDestination(fd: number, options: StreamDestinationOptions): SonicBoom {
  const boom = pino.destination({
    dest: fd,
    sync: false,
    minLength: DEFAULT_BATCH_BYTES,
    maxLength: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    contentMode: 'buffer',
  });
  let dropped = 0;
  let sinceMs = 0;
  let failed = false;
  boom.on('drop', (data: Buffer | string) => {
    if (dropped === 0) sinceMs = Date.now();
    dropped += countLines(typeof data === 'string' ? Buffer.from(data) : data);
  });
  boom.on('drain', () => {
    if (dropped === 0 || failed) return;
    const lines = dropped;
    dropped = 0;
    options.onResumed?.({ lines, sinceMs });
  });
  boom.on('error', (err: NodeJS.ErrnoException) => {
    if (failed) return;
    failed = true;
    const inert = boom as unknown as Record<'write' | 'flushSync' | 'end', () => void> & { flush: (cb?: () => void) => void };
    inert.write = () => {};
    inert.flushSync = () => {};
    inert.end = () => {};
    inert.flush = (cb) => cb?.();
    options.onClosed?.(err);
  });
  return boom;
}

/** True when the flush ended within `ms`. */
function flushWithin(destination: BufferedDestination, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    destination.flush(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
