// Per-client response rate limiting (dns.rateLimit): a token bucket per client (addressGroup: an
// IPv4 address or an IPv6 /64, over UDP and TCP alike), so a
// flood from one address (or a spoofed reflection attempt) cannot use the responder as an
// amplifier, while every other client is still answered.

export interface RateLimitSettings {
  /** Tokens added per second; 0 turns the limiter off. */
  readonly responsesPerSecond: number;
  /** Bucket size: how many responses one address may get in a burst. */
  readonly burst: number;
}

export interface RateLimiter {
  /** True when a response to `client` may be sent now (and takes a token). */
  allow(client: string, nowMs: number): boolean;
  /** Number of addresses currently tracked (bounded by `maxClients`). */
  readonly size: number;
  /** Tokens per second (0 = no limit). */
  readonly rate: number;
}

/** Bounded: when `maxClients` buckets exist, the full (idle) ones are forgotten first. */
export function createRateLimiter(settings: RateLimitSettings, maxClients = 10_000): RateLimiter {
  const rate = settings.responsesPerSecond;
  const burst = Math.max(1, settings.burst);
  const buckets = new Map<string, { tokens: number; at: number }>();
  const prune = (now: number): void => {
    for (const [k, b] of buckets) {
      if (b.tokens + ((now - b.at) / 1000) * rate >= burst) buckets.delete(k);
    }
    // Still full of active flooders: drop the oldest entries rather than grow without bound.
    for (const k of buckets.keys()) {
      if (buckets.size < maxClients) break;
      buckets.delete(k);
    }
  };
  return {
    allow(client, now) {
      if (rate <= 0) return true;
      let b = buckets.get(client);
      if (!b) {
        if (buckets.size >= maxClients) prune(now);
        b = { tokens: burst, at: now };
        buckets.set(client, b);
      } else {
        b.tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.at) / 1000) * rate);
        b.at = now;
      }
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
    get size() {
      return buckets.size;
    },
    rate,
  };
}
