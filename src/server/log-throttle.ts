// Keeps a flood of bad clients from flooding the journal: each error code is logged at most
// `perWindow` times per window, then once more with the number of lines suppressed.

export interface ThrottledLog {
  /** Returns true when the caller should log this occurrence of `key`. */
  allow(key: string, nowMs: number): boolean;
  /** Count of suppressed occurrences of `key` since it was last reported, then resets it. */
  takeSuppressed(key: string): number;
}

export function createLogThrottle(perWindow = 20, windowMs = 10_000): ThrottledLog {
  const windows = new Map<string, { start: number; count: number; suppressed: number }>();
  return {
    allow(key, nowMs) {
      let w = windows.get(key);
      if (!w || nowMs - w.start >= windowMs) {
        const suppressed = w?.suppressed ?? 0;
        w = { start: nowMs, count: 0, suppressed };
        windows.set(key, w);
      }
      w.count++;
      if (w.count <= perWindow) return true;
      w.suppressed++;
      return false;
    },
    takeSuppressed(key) {
      const w = windows.get(key);
      if (!w) return 0;
      const n = w.suppressed;
      w.suppressed = 0;
      return n;
    },
  };
}

/**
 * "Logged once per address": a limit that one client address keeps hitting is one line per
 * window, not one per connection. Remembers at most `maxKeys` (code, address) pairs, forgetting
 * the oldest first, so an attacker cycling addresses cannot grow it.
 */
export function createOncePerAddress(windowMs = 600_000, maxKeys = 4096): (code: string, address: string, nowMs: number) => boolean {
  const seen = new Map<string, number>();
  return (code, address, nowMs) => {
    const key = `${code} ${address}`;
    const at = seen.get(key);
    if (at !== undefined && nowMs - at < windowMs) return false;
    seen.delete(key);
    seen.set(key, nowMs);
    if (seen.size > maxKeys) seen.delete(seen.keys().next().value!);
    return true;
  };
}
