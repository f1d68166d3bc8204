// Group commit for the KMS listener. An answered activation must be on disk (PROTOCOL.md §7.2:
// counts survive restarts; issue 4: kill -9 loses nothing answered), but a commit per request
// costs more than the rest of the request. So the first request of an event-loop turn opens one
// store batch, every request of that turn joins it, and every reply of the turn waits in FIFO
// order until the batch is durable at the end of the turn (setImmediate): with the store's
// request journal one append, without it a commit (SqliteStore.commitBatch).

/** Where the connection sends its replies and closes: now, or after the pending commit. */
export interface ReplyGate {
  run(send: () => void): void;
}

export const IMMEDIATE_REPLIES: ReplyGate = Object.freeze({ run: (send: () => void) => send() });

/** The store side of a group commit (SqliteStore implements it). */
export interface BatchingStore {
  /** false when no batch could be opened: writes then commit one by one. */
  beginBatch(): boolean;
  /** Makes the batch durable. Never throws: a failed commit keeps its writes in memory for a later retry. */
  commitBatch(): void;
}

export class GroupCommitGate implements ReplyGate {
  private open = false;
  /**
   * queue[0, queued). Two arrays swapped at each flush, their slots cleared (no array per turn):
   * a release that starts the next batch and queues in it must not land on a slot of the turn
   * still being released.
   */
  private queue: ((() => void) | undefined)[] = [];
  private releasing: ((() => void) | undefined)[] = [];
  private queued = 0;
  private readonly flushSoon = (): void => this.flush();

  constructor(private readonly store: BatchingStore) {}

  /** Called before each request that writes to the store. */
  enter(): void {
    if (this.open || !this.store.beginBatch()) return;
    this.open = true;
    setImmediate(this.flushSoon);
  }

  run(send: () => void): void {
    if (this.open) this.queue[this.queued++] = send;
    else send();
  }

  /** Commits and releases the replies; also called at shutdown. */
  flush(): void {
    if (!this.open) return;
    try {
      this.store.commitBatch();
    } finally {
      // Closed first: a send that calls run() goes at once, behind the ones before it.
      this.open = false;
      const n = this.queued;
      this.queued = 0;
      const queue = this.queue;
      this.queue = this.releasing;
      this.releasing = queue;
      for (let i = 0; i < n; i++) {
        const send = queue[i]!;
        queue[i] = undefined;
        send();
      }
    }
  }
}
