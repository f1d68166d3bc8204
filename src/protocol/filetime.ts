// FILETIME: u64 count of 100 ns ticks since 1601-01-01T00:00:00Z (PROTOCOL.md conventions).

const EPOCH_DIFF_MS = 11_644_473_600_000n; // 1601 → 1970
const TICKS_PER_MS = 10_000n;

export function filetimeFromMs(unixMs: number): bigint {
  return (BigInt(Math.trunc(unixMs)) + EPOCH_DIFF_MS) * TICKS_PER_MS;
}

/** Milliseconds since the Unix epoch; exact for any FILETIME a client can send. */
export function msFromFiletime(ft: bigint): number {
  return Number(ft / TICKS_PER_MS - EPOCH_DIFF_MS);
}
