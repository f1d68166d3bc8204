// Waiting on events instead of sleeping: an emitter's event, a child's output line, a condition
// re-checked whenever something happens. Every wait has a bound, and when the bound passes it
// rejects with what never happened, so a failing test says why instead of hanging. The bound's
// timer is always cleared: a finished wait never keeps the test process alive.
import type { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';

/** Generous on purpose: a bound is for a hung test, not a timing assertion (the machine may be busy). */
const DEFAULT_BOUND_MS = 10_000;

class WaitTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not happen within ${ms} ms`);
    this.name = 'WaitTimeout';
  }
}

/** `promise`, or a WaitTimeout naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, what: string, ms = DEFAULT_BOUND_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeout(what, ms)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

/** Resolves with `promise`'s value, or with `fallback` after `ms` (for "did it happen at all?" checks). */
export function settledWithin<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

/** The arguments of the next `event` on `emitter`. */
export function nextEvent(emitter: EventEmitter, event: string, what = `event '${event}'`, ms = DEFAULT_BOUND_MS): Promise<unknown[]> {
  let listener: ((...args: unknown[]) => void) | undefined;
  const seen = new Promise<unknown[]>((resolve) => {
    listener = (...args) => resolve(args);
    emitter.once(event, listener);
  });
  return within(seen, what, ms).finally(() => emitter.off(event, listener!));
}

interface Trigger {
  readonly emitter: EventEmitter;
  readonly events: readonly string[];
}

export interface UntilOptions {
  /** Re-check when one of these emitters emits one of these events. */
  readonly on?: readonly Trigger[];
  /**
   * Also re-check this often: for state that changes without an event a test can see (a row in
   * another process's database, a server's counter). Not a sleep: the wait ends at the first check
   * that holds.
   */
  readonly everyMs?: number;
  readonly ms?: number;
}

/**
 * Resolves with the first truthy value of `check` (sync or async), checked at once, then whenever a
 * trigger fires or the interval ticks; rejects naming `what` once the bound passes.
 */
export function until<T>(check: () => T | Promise<T>, what: string, options: UntilOptions = {}): Promise<NonNullable<T>> {
  const ms = options.ms ?? DEFAULT_BOUND_MS;
  const cleanups: (() => void)[] = [];
  const found = new Promise<NonNullable<T>>((resolve, reject) => {
    let running = false;
    let again = false;
    const probe = (): void => {
      if (running) {
        again = true; // a check is in flight: run once more when it ends, never two at a time
        return;
      }
      running = true;
      Promise.resolve()
        .then(check)
        .then(
          (value) => {
            running = false;
            if (value) resolve(value as NonNullable<T>);
            else if (again) {
              again = false;
              probe();
            }
          },
          (err: unknown) => reject(err),
        );
    };
    for (const { emitter, events } of options.on ?? []) {
      for (const event of events) {
        emitter.on(event, probe);
        cleanups.push(() => emitter.off(event, probe));
      }
    }
    if (options.everyMs !== undefined) {
      const interval = setInterval(probe, options.everyMs);
      cleanups.push(() => clearInterval(interval));
    }
    probe();
  });
  return within(found, what, ms).finally(() => {
    for (const c of cleanups) c();
  });
}

/**
 * The first line of `stream` matching `pattern` (lines already seen before the call are not
 * searched: start the wait before the event that prints it). The text read so far is in the
 * rejection, so a child that printed something else says what it printed.
 */
export function lineMatching(
  stream: Readable,
  pattern: RegExp,
  what = `a line matching ${pattern}`,
  ms = DEFAULT_BOUND_MS,
): Promise<RegExpMatchArray> {
  let text = '';
  let onData: ((chunk: Buffer | string) => void) | undefined;
  let onEnd: (() => void) | undefined;
  const seen = new Promise<RegExpMatchArray>((resolve, reject) => {
    let pending = '';
    onData = (chunk) => {
      text += String(chunk);
      pending += String(chunk);
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const m = line.match(pattern);
        if (m) return resolve(m);
      }
    };
    onEnd = () => {
      const m = pending.match(pattern);
      if (m) resolve(m);
      else reject(new Error(`${what}: the stream ended first; it said:\n${text.slice(-2000)}`));
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
  });
  return within(seen, what, ms)
    .catch((err: unknown) => {
      if (err instanceof WaitTimeout) err.message += `; the stream said:\n${text.slice(-2000)}`;
      throw err;
    })
    .finally(() => {
      stream.off('data', onData!);
      stream.off('end', onEnd!);
    });
}

/**
 * Resolves after the event loop has polled for I/O at least once: an in-process server has read
 * what the test just wrote, so the next write arrives as a separate read (a split PDU stays split).
 * Two immediates, because one scheduled from an I/O callback runs before the next poll.
 */
export function afterPoll(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}
