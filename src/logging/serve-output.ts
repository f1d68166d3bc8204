// Where serve's log lines go: batches (line-batch.ts) in front of a bounded non-blocking socket
// when stdout is a pipe or a socket (stream-destination.ts), else in front of pino's asynchronous
// file destination (a file or a terminal). Closing waits a bounded time for the reader, so a
// stopped journal or `| less` never keeps the appliance from stopping.
import { batchedDestination, batchLines, type BufferedDestination, type ReservingDestination } from './line-batch';
import { boundedStreamDestination, isStreamDescriptor, openStreamDescriptor, type StreamDestinationOptions } from './stream-destination';

export interface ServeLogOutput {
  readonly destination: BufferedDestination & ReservingDestination;
  /** Flushes; what the reader has not taken after `ms` is given up. Resolves with the bytes given up. */
  close(ms: number): Promise<number>;
}

export function serveLogOutput(fd: number, options: StreamDestinationOptions): ServeLogOutput {
  if (!isStreamDescriptor(fd)) {
    const destination = batchedDestination(fd);
    return { destination, close: (ms) => flushWithin(destination, ms).then(() => 0) };
  }
  const stream = boundedStreamDestination(openStreamDescriptor(fd), options);
  const destination = batchLines(stream);
  return {
    destination,
    async close(ms) {
      return (await flushWithin(destination, ms)) ? 0 : stream.abandon();
    },
  };
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
