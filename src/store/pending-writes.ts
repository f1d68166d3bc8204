// What the store could not write yet (disk full, read-only, I/O error): the writes in their
// original order, plus an in-memory overlay so counts answer from stored + pending until the
// writes succeed. Bounded, so a long outage cannot exhaust memory.

/** Per (application, CMID) touched while writes fail: what counting must see instead of the file. */
export interface OverlayClient {
  /** last_counted_ms in the file when the entry was created (the file does not change meanwhile). */
  readonly stored: number | null;
  /** Effective last counted: stored merged with pending writes; null = not counted (or replaced). */
  counted: number | null;
}

export interface PendingLimits {
  /** Row writes (client upserts, deletions, thresholds, settings) kept while the file is unwritable. */
  readonly maxOps: number;
  /** Event-log rows kept; the oldest are dropped first, the log is history, not state. */
  readonly maxEvents: number;
}

export const DEFAULT_PENDING_LIMITS: PendingLimits = Object.freeze({ maxOps: 50_000, maxEvents: 10_000 });

export class PendingWrites<E> {
  private ops: Array<() => void> = [];
  private events: E[] = [];
  /** application → CMID → overlay. */
  readonly clients = new Map<string, Map<string, OverlayClient>>();
  readonly settings = new Map<string, string>();
  droppedOps = 0;
  droppedEvents = 0;

  constructor(private readonly limits: PendingLimits) {}

  get isEmpty(): boolean {
    return this.ops.length === 0 && this.events.length === 0;
  }

  get size(): { ops: number; events: number } {
    return { ops: this.ops.length, events: this.events.length };
  }

  /** false when the bound is reached: the write is lost (the overlay still counts it until restart). */
  addOp(op: () => void): boolean {
    if (this.ops.length >= this.limits.maxOps) {
      this.droppedOps++;
      return false;
    }
    this.ops.push(op);
    return true;
  }

  addEvent(event: E): void {
    if (this.events.length >= this.limits.maxEvents) {
      this.events.shift();
      this.droppedEvents++;
    }
    this.events.push(event);
  }

  overlayOf(application: string, cmid: string, loadStored: () => number | null): OverlayClient {
    let app = this.clients.get(application);
    if (app === undefined) this.clients.set(application, (app = new Map()));
    let entry = app.get(cmid);
    if (entry === undefined) {
      const stored = loadStored();
      entry = { stored, counted: stored };
      app.set(cmid, entry);
    }
    return entry;
  }

  /** Runs every pending write in order; the caller wraps this in one transaction. */
  replay(insertEvent: (event: E) => void): void {
    for (const op of this.ops) op();
    for (const event of this.events) insertEvent(event);
  }

  clear(): void {
    this.ops = [];
    this.events = [];
    this.clients.clear();
    this.settings.clear();
    this.droppedOps = 0;
    this.droppedEvents = 0;
  }
}
