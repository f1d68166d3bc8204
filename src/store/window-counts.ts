// Counting without a query per request (PROTOCOL.md §7.2): per application, the machines counted
// most recently (at least MAX_REPORTED_COUNT of them, or all of them) with their last counted
// time. That is enough to give min(distinct machines in the window, 2 × threshold) exactly as a
// count over the file would: the cap never exceeds MAX_REPORTED_COUNT, and no machine left out
// was counted later than any machine held, so when a held machine is outside the window, so is
// every machine left out.
import { MAX_REPORTED_COUNT } from '../host/counting';

/** Where the counts come from at start, and what they consult in the rare cases memory cannot answer. */
export interface CountSource {
  /** A machine's last counted time: undefined = no row at all, null = a row that was never counted. */
  lastCounted(application: string, cmid: string): number | null | undefined;
  /** The `limit` most recently counted machines of an application, newest first. */
  mostRecent(application: string, limit: number): Iterable<readonly [string, number]>;
}

class ApplicationWindow {
  /** cmid → last counted; at least `tracked` entries unless `complete`. */
  readonly times = new Map<string, number>();
  /** Every counted machine of the application is held. */
  complete = true;
  /** No machine left out was counted after this. */
  leftOutMax = -Infinity;
  // The count of held machines counted at or after `validFrom`, and a lower bound of their
  // times: while the cutoff stays in [validFrom, oldest] the count needs no walk.
  private validFrom = Infinity;
  private oldest = Infinity;
  private inWindow = 0;

  constructor(private readonly tracked: number) {}

  count(cutoff: number): number {
    if (cutoff < this.validFrom || cutoff > this.oldest) this.recount(cutoff);
    return this.inWindow;
  }

  set(cmid: string, time: number): void {
    const before = this.times.get(cmid);
    this.times.set(cmid, time);
    if (before !== undefined && before >= this.validFrom) this.inWindow--;
    if (time >= this.validFrom) {
      this.inWindow++;
      if (time < this.oldest) this.oldest = time;
    }
    if (this.times.size > 2 * this.tracked) this.trim();
  }

  delete(cmid: string): void {
    const before = this.times.get(cmid);
    if (before === undefined) return;
    this.times.delete(cmid);
    if (before >= this.validFrom) this.inWindow--;
  }

  load(rows: Iterable<readonly [string, number]>, limit: number): void {
    this.times.clear();
    let n = 0;
    let min = Infinity;
    for (const [cmid, time] of rows) {
      this.times.set(cmid, time);
      if (time < min) min = time;
      n++;
    }
    this.complete = n < limit;
    this.leftOutMax = this.complete ? -Infinity : min;
    this.validFrom = Infinity;
  }

  // Keeps the `tracked` newest: sorting once per `tracked` insertions is O(log n) each.
  private trim(): void {
    const sorted = [...this.times].sort((a, b) => b[1] - a[1]);
    this.times.clear();
    for (let i = 0; i < this.tracked; i++) this.times.set(sorted[i]![0], sorted[i]![1]);
    const firstLeftOut = sorted[this.tracked]![1];
    if (firstLeftOut > this.leftOutMax) this.leftOutMax = firstLeftOut;
    this.complete = false;
    this.validFrom = Infinity;
  }

  private recount(cutoff: number): void {
    let n = 0;
    let oldest = Infinity;
    for (const time of this.times.values()) {
      if (time >= cutoff) {
        n++;
        if (time < oldest) oldest = time;
      }
    }
    this.inWindow = n;
    this.oldest = oldest;
    this.validFrom = cutoff;
  }
}

export class WindowCounts {
  private readonly apps = new Map<string, ApplicationWindow>();

  /** `tracked` is a parameter only so tests can reach the left-out cases with few machines. */
  constructor(
    private readonly source: CountSource,
    private readonly tracked: number = MAX_REPORTED_COUNT,
  ) {}

  /** Loads the newest machines of each application from the source. */
  load(applications: Iterable<string>): void {
    for (const app of applications) this.reload(app);
  }

  /**
   * Counts a served request of `cmid` at `nowMs`; when `previous` names another machine, that one
   * is replaced (PROTOCOL.md §7.2: a re-imaged machine counts once), the way the SQL writes do:
   * the new id takes over the old row, and so its counting time, only when it has no row itself.
   * Returns the machines counted at or after `cutoff`, up to `cap`.
   */
  served(application: string, cmid: string, previous: string | undefined, nowMs: number, cutoff: number, cap: number): number {
    let w = this.apps.get(application);
    if (w === undefined) this.apps.set(application, (w = new ApplicationWindow(this.tracked)));
    const held = w.times.get(cmid);
    let known: number | null | undefined = held;
    if (previous !== undefined) {
      const old = w.times.get(previous);
      if (old !== undefined && held !== undefined && !w.complete && w.times.size - 1 < this.tracked) {
        // Removing one would leave too few held to answer: take the newest from the source again,
        // before this request changes anything (the source does not have it yet).
        this.reload(application);
        return this.served(application, cmid, previous, nowMs, cutoff, cap);
      }
      if (held === undefined) {
        // Only a clock set back can make an older time matter; otherwise the new id counts from now.
        const mayMatter = (old !== undefined && old > nowMs) || nowMs < w.leftOutMax;
        if (mayMatter) {
          const own = this.source.lastCounted(application, cmid);
          known = own !== undefined ? own : (old ?? this.leftOut(w, application, previous, nowMs));
        }
      }
      w.delete(previous);
    } else if (held === undefined && nowMs < w.leftOutMax) {
      known = this.source.lastCounted(application, cmid);
    }
    w.set(cmid, known === undefined || known === null ? nowMs : Math.max(known, nowMs));
    return Math.min(w.count(cutoff), cap);
  }

  /** Counted machines at or after `cutoff`, up to `cap`, without recording anything. */
  countSince(application: string, cutoff: number, cap: number): number {
    const w = this.apps.get(application);
    return w === undefined ? 0 : Math.min(w.count(cutoff), cap);
  }

  private leftOut(w: ApplicationWindow, application: string, cmid: string, nowMs: number): number | null | undefined {
    return nowMs < w.leftOutMax ? this.source.lastCounted(application, cmid) : undefined;
  }

  /** Takes the newest machines of an application from the source again (after the file's times were corrected). */
  reload(application: string): void {
    let w = this.apps.get(application);
    if (w === undefined) this.apps.set(application, (w = new ApplicationWindow(this.tracked)));
    const limit = 2 * this.tracked;
    w.load(this.source.mostRecent(application, limit), limit);
  }
}
