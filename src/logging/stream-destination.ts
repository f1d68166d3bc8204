// serve's log output when stdout is a pipe or a socket (journald's stream, `| jq`, a supervisor):
// a reader that stops reading must not cost the appliance its event loop or its memory. The lines
// go through a non-blocking socket on the descriptor, never a synchronous write that waits for the
// reader; while the reader is behind, at most `maxQueuedBytes` wait in memory and later batches
// are dropped and counted. When the reader catches up, `onResumed` gets how many lines were
// dropped and since when (serve logs it as one `log-lines-dropped` line). A closed reader (EPIPE)
// ends the output, never the appliance: one line on stderr, the rest dropped.
import fs from 'node:fs';
import net from 'node:net';
import type { BufferedDestination } from './line-batch';

interface DroppedLines {
  readonly lines: number;
  /** When the first of them was dropped (ms since the epoch). */
  readonly sinceMs: number;
}

export interface StreamDestinationOptions {
  /** Bytes waiting for the reader beyond which batches are dropped. */
  readonly maxQueuedBytes?: number;
  /** The reader caught up after lines were dropped. */
  readonly onResumed?: (dropped: DroppedLines) => void;
  /** The output ended with an error (EPIPE: the reader closed); nothing more is written. */
  readonly onClosed?: (err: NodeJS.ErrnoException) => void;
}

/** About a thousand request lines: a reader that pauses a moment loses nothing. */
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;

/** The part of a net.Socket the destination uses (a test gives its own). */
export interface WritableSocket {
  readonly writableLength: number;
  write(chunk: Buffer, written: () => void): boolean;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  destroy(): unknown;
}

export interface StreamDestination extends BufferedDestination {
  /** Lines dropped and not yet reported (0 when none). */
  readonly droppedLines: number;
  /** Gives up what still waits for the reader (at shutdown) and closes; returns its bytes. */
  abandon(): number;
}

class BoundedStreamDestination implements StreamDestination {
  droppedLines = 0;
  private droppedSinceMs = 0;
  private closed = false;
  private waiting: ((err?: Error) => void)[] = [];

  constructor(
    private readonly socket: WritableSocket,
    private readonly maxQueuedBytes: number,
    private readonly options: StreamDestinationOptions,
  ) {
    socket.on('error', (err) => {
      if (this.closed) return;
      this.closed = true;
      this.options.onClosed?.(err);
      this.release();
    });
  }

  write(line: string | Buffer): void {
    const chunk = typeof line === 'string' ? Buffer.from(line, 'utf8') : line;
    if (this.closed || this.socket.writableLength + chunk.length > this.maxQueuedBytes) {
      if (this.droppedLines === 0) this.droppedSinceMs = Date.now();
      this.droppedLines += countLines(chunk);
      return;
    }
    this.socket.write(chunk, this.written);
  }

  flush(cb?: (err?: Error) => void): void {
    if (cb === undefined) return;
    if (this.closed || this.socket.writableLength === 0) cb();
    else this.waiting.push(cb);
  }

  /** Nothing can be forced through a reader that is not reading: what waits goes as it reads. */
  flushSync(): void {}

  abandon(): number {
    const left = this.closed ? 0 : this.socket.writableLength;
    this.closed = true;
    this.socket.destroy();
    this.release();
    return left;
  }

  /** After each batch reached the reader: once all have, the drops are reported and flushes end. */
  private readonly written = (): void => {
    if (this.closed || this.socket.writableLength > 0) return;
    if (this.droppedLines > 0) {
      const dropped = { lines: this.droppedLines, sinceMs: this.droppedSinceMs };
      this.droppedLines = 0;
      this.options.onResumed?.(dropped);
    }
    this.release();
  };

  private release(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const cb of waiting) cb();
  }
}

export function countLines(chunk: Buffer): number {
  let n = 0;
  for (let at = chunk.indexOf(0x0a); at >= 0; at = chunk.indexOf(0x0a, at + 1)) n++;
  return n;
}

export function boundedStreamDestination(socket: WritableSocket, options: StreamDestinationOptions = {}): StreamDestination {
  return new BoundedStreamDestination(socket, options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES, options);
}

/** True when `fd` is a pipe or a socket: a reader on the other end decides how fast it drains. */
export function isStreamDescriptor(fd: number): boolean {
  try {
    const st = fs.fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

/**
 * A non-blocking socket on `fd` (libuv sets O_NONBLOCK and, for descriptors 0–2, never closes
 * them when the socket is destroyed).
 */
export function openStreamDescriptor(fd: number): net.Socket {
  return new net.Socket({ fd, readable: false, writable: true });
}

/**
 * One line on stderr that never waits: written synchronously, and given up if the descriptor
 * would block (under systemd stderr is the same journal stream that stopped reading).
 */
export function sayOnStderr(line: string, priority?: number): void {
  try {
    fs.writeSync(2, `${priority === undefined ? '' : `<${priority}>`}${line}\n`);
  } catch {
    // EAGAIN or EPIPE: nobody is reading this either.
  }
}
