// The one place an IPv4-mapped peer address is unmapped: an IPv4 client reaching a dual-stack
// "[::]" socket shows up as ::ffff:a.b.c.d, and rate limits, per-address caps, allowlists, the
// admin's host check and login throttle, and the logs must all see the IPv4 address it really is.
import net from 'node:net';

const MAPPED_PREFIX = '::ffff:';
const COLON = 0x3a;

/** The client's address as the policies see it: IPv4-mapped IPv6 becomes plain IPv4. */
export function unmapIPv4(remote: string): string {
  // Plain IPv4 (the common case) and ordinary IPv6 never start with "::ffff:".
  if (remote.charCodeAt(0) !== COLON || remote.length <= MAPPED_PREFIX.length) return remote;
  if (remote.slice(0, MAPPED_PREFIX.length).toLowerCase() !== MAPPED_PREFIX) return remote;
  const v4 = remote.slice(MAPPED_PREFIX.length);
  return net.isIPv4(v4) ? v4 : remote;
}
