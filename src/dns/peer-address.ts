// The one place a DNS peer's address is normalised: an IPv4 client reaching a dual-stack "[::]"
// socket shows up as ::ffff:a.b.c.d, and the rate limit, the per-address caps, the forwarding
// allowlist and the logs must all see the IPv4 address it really is.
import net from 'node:net';

const MAPPED_PREFIX = '::ffff:';
const COLON = 0x3a;

/** The client's address as the policies see it: IPv4-mapped IPv6 becomes plain IPv4. */
export function peerAddress(remote: string): string {
  // Plain IPv4 (the common case) and ordinary IPv6 never start with "::ffff:".
  if (remote.charCodeAt(0) !== COLON || remote.length <= MAPPED_PREFIX.length) return remote;
  if (remote.slice(0, MAPPED_PREFIX.length).toLowerCase() !== MAPPED_PREFIX) return remote;
  const v4 = remote.slice(MAPPED_PREFIX.length);
  return net.isIPv4(v4) ? v4 : remote;
}
