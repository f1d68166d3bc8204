// The counting rules every ActivationStore shares (PROTOCOL.md §7.2): the 30-day window, what
// "inside" it means at the boundary, and the count a client is told.
import type { CountSnapshot } from './ports';

/** §7.1 step 4: the largest RequiredClientCount a genuine product sends. */
export const MAX_REQUIRED_CLIENT_COUNT = 1000;

/** The largest count ever reported: twice the largest threshold (C28). Stores count this far. */
export const MAX_REPORTED_COUNT = 2 * MAX_REQUIRED_CLIENT_COUNT;

/** 30 days: a machine silent for longer no longer counts. */
export const COUNT_WINDOW_MS = 30 * 24 * 60 * 60 * 1000;

/**
 * A machine last counted at `lastCountedMs` still counts at `nowMs` when it was seen at most
 * `windowMs` ago ("more than 30 days ago no longer counts", C29). A last-seen time in the future
 * (the host clock went back) is inside: a clock jump never drops a client.
 */
export function isInsideWindow(lastCountedMs: number, nowMs: number, windowMs: number): boolean {
  return nowMs - lastCountedMs <= windowMs;
}

/** RequiredClientCount 0 is accepted and treated as 1 (§7.1 step 4, U8). */
export function effectiveRequiredCount(requiredClientCount: number): number {
  return Math.max(1, requiredClientCount >>> 0);
}

/** The count a client receives: distinct machines, capped at twice the largest threshold seen (C28). */
export function reportedCount(snapshot: CountSnapshot): number {
  return Math.min(snapshot.activeClients, 2 * Math.max(1, snapshot.maxRequiredClientCount));
}
