// The RequiredClientCounts served per application and when each was last served: a handful of
// entries, held exactly in memory so counting reads no table for them, and written to the file
// only when a value moved by PERSIST_GRANULARITY_MS (one page write less per activation).

/**
 * How stale the copy in the file may get. Only a crash (kill -9, power cut) exposes it: a
 * threshold then leaves the 30-day window at most this much early after the restart. close()
 * writes the exact values.
 */
const PERSIST_GRANULARITY_MS = 60_000;

interface Entry {
  /** The RequiredClientCount (the map's key, kept here too for maxSince's walk over the values). */
  readonly required: number;
  /** Exact host time this threshold was last served (never moves backwards). */
  served: number;
  /** The value the file holds. */
  persisted: number;
}

export class Thresholds {
  private readonly apps = new Map<string, Map<number, Entry>>();

  load(rows: Iterable<{ application: string; required_count: number; last_served_ms: number }>): void {
    for (const r of rows) {
      const e = { required: r.required_count, served: r.last_served_ms, persisted: r.last_served_ms };
      this.entries(r.application).set(r.required_count, e);
    }
  }

  /** Records a serve; true when the file's copy should be rewritten now. */
  note(application: string, requiredCount: number, nowMs: number): boolean {
    const entries = this.entries(application);
    const e = entries.get(requiredCount);
    if (e === undefined) {
      entries.set(requiredCount, { required: requiredCount, served: nowMs, persisted: -Infinity });
      return true;
    }
    // max(): a clock set back must not shorten how long a threshold stays in the window.
    e.served = Math.max(e.served, nowMs);
    return e.served - e.persisted >= PERSIST_GRANULARITY_MS;
  }

  markPersisted(application: string, requiredCount: number, value: number): void {
    const e = this.apps.get(application)?.get(requiredCount);
    if (e !== undefined) e.persisted = Math.max(e.persisted, value);
  }

  served(application: string, requiredCount: number): number {
    return this.apps.get(application)?.get(requiredCount)?.served ?? 0;
  }

  /** Largest threshold served at or after `cutoff`; 1 when none (PROTOCOL.md §7.2). */
  maxSince(application: string, cutoff: number): number {
    let max = 1;
    const entries = this.apps.get(application);
    if (entries === undefined) return max;
    // Over the values, not [key, value] pairs: no pair is made per entry and request.
    for (const e of entries.values()) if (e.served >= cutoff && e.required > max) max = e.required;
    return max;
  }

  /** The latest time any threshold was served (-Infinity when none). */
  newestServed(): number {
    let newest = -Infinity;
    for (const entries of this.apps.values()) for (const e of entries.values()) if (e.served > newest) newest = e.served;
    return newest;
  }

  /**
   * A host clock that was set ahead and corrected since: a serve after `limitMs` counts as served
   * at `nowMs`, in memory and (the caller updates app_required alongside) in the file.
   */
  clampAhead(limitMs: number, nowMs: number): void {
    for (const entries of this.apps.values()) {
      for (const e of entries.values()) {
        if (e.served <= limitMs) continue;
        e.served = nowMs;
        if (e.persisted > limitMs) e.persisted = nowMs;
      }
    }
  }

  /** Entries whose file copy is behind, for close(). */
  *unpersisted(): Generator<[string, number, number]> {
    for (const [app, entries] of this.apps) {
      for (const [required, e] of entries) if (e.served > e.persisted) yield [app, required, e.served];
    }
  }

  private entries(application: string): Map<number, Entry> {
    let m = this.apps.get(application);
    if (m === undefined) this.apps.set(application, (m = new Map()));
    return m;
  }
}
