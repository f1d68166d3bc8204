// Severity for journald. A service's stdout reaches the journal at one priority (info) unless each
// line starts with "<N>", the syslog priority (sd-daemon(3); journald honours it while the unit
// keeps SyslogLevelPrefix=yes, the default). With it `journalctl -p warning` shows warnings and
// errors only. systemd sets JOURNAL_STREAM=<dev>:<inode> to the stream it connected; a descriptor
// is the journal only when it is that very stream (a pipe to `| jq` from a unit is not).
import fs from 'node:fs';
import pino, { type DestinationStream } from 'pino';
import type { JsonBytes } from '../json-bytes';
import { canReserve, type ReservingDestination } from './line-batch';

/** pino's numeric level → syslog priority: fatal crit(2), error err(3), warn warning(4), info(6), debug(7). */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/** True when `fd` is the stream journald handed this process (see the comment above). */
export function isJournalStream(fd: number, env: NodeJS.ProcessEnv): boolean {
  const m = /^(\d+):(\d+)$/.exec(env['JOURNAL_STREAM'] ?? '');
  if (!m) return false;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}

/** One line with its priority prefix: for text written straight to stderr (start-up errors). */
export function journalLine(priority: number, line: string): string {
  return `<${priority}>${line}`;
}

/**
 * Wraps a pino destination so that each line starts with its syslog priority. pino tells a
 * stream that asks for metadata (needsMetadataGsym) the level of the line it is about to write.
 */
export function withSyslogPrefix(dest: DestinationStream, enabled: boolean): DestinationStream {
  if (!enabled) return dest;
  const wrapper = {
    [pino.symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(line: string): void {
      dest.write(`${PREFIXES[syslogPriority(wrapper.lastLevel)]}${line}`);
    },
    flush(cb?: (err?: Error) => void): void {
      const f = (dest as { flush?: (cb?: (err?: Error) => void) => void }).flush;
      if (f) f.call(dest, cb);
      else cb?.();
    },
  };
  if (!canReserve(dest)) return wrapper as unknown as DestinationStream;
  // The request line's fast path (logger.ts) through the wrapper: the prefix first, in the batch.
  const reserving: ReservingDestination = {
    reserve(bytes: number): JsonBytes | undefined {
      const w = dest.reserve(bytes + PREFIX_LENGTH);
      w?.raw(PREFIXES[syslogPriority(wrapper.lastLevel)]!);
      return w;
    },
    commit: (line: JsonBytes) => dest.commit(line),
  };
  return Object.assign(wrapper, reserving) as unknown as DestinationStream;
}

/** "<0>" … "<7>", made once. */
const PREFIXES = Array.from({ length: 8 }, (_, p) => journalLine(p, ''));
const PREFIX_LENGTH = 3;
