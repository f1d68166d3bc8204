// A message refused before it decoded (wrong version, length, MAC, padding: not a KMS request at
// all) has no machine, product or name to audit and costs a client nothing to send, so its warn
// line is written once per client address per window, and at most `perWindow` such lines per
// window from all addresses together; the next line written counts those left out. The request
// itself still has its row in the event log and its count in the metrics.

import { LineBudget } from './line-budget';

export class UndecodableLines {
  /** Client address → when its last line was written; insertion order = least recent first. */
  private readonly lastLine = new Map<string, number>();
  private readonly budget: LineBudget;

  constructor(
    private readonly windowMs = 60_000,
    perWindow = 20,
    /** Addresses remembered; beyond it the least recent is forgotten, so cycling addresses cannot grow the map. */
    private readonly maxAddresses = 4096,
  ) {
    this.budget = new LineBudget(perWindow, windowMs);
  }

  /** -1: leave this line out; otherwise write it, saying this many similar lines were left out before it. */
  admit(address: string, nowMs: number): number {
    const last = this.lastLine.get(address);
    if (last !== undefined && nowMs - last < this.windowMs) {
      this.budget.skip();
      return -1;
    }
    const suppressed = this.budget.admit(nowMs);
    if (suppressed < 0) return -1;
    this.lastLine.delete(address);
    this.lastLine.set(address, nowMs);
    if (this.lastLine.size > this.maxAddresses) this.lastLine.delete(this.lastLine.keys().next().value!);
    return suppressed;
  }
}
