// A number of lines per time window for one kind of line a peer can cause, shared by every
// address: a peer with many addresses (an IPv6 prefix, a botnet) gets no more lines than one. The
// line written after some were left out says how many (`suppressedSimilar`), so nothing goes
// uncounted; what each line stood for is still counted in the metrics.

export class LineBudget {
  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly perWindow = 20,
    private readonly windowMs = 10_000,
  ) {}

  /** A similar line left out for another reason (a per-address limit): the next line counts it too. */
  skip(): void {
    this.suppressed++;
  }

  /** -1: leave this line out; otherwise write it, with this many similar lines left out before it. */
  admit(nowMs: number): number {
    if (nowMs - this.windowStart >= this.windowMs) {
      this.windowStart = nowMs;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.perWindow) {
      this.suppressed++;
      return -1;
    }
    this.inWindow++;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}
