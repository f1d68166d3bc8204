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
