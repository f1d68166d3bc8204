// Which peers count as "one client" for per-address limits, rate limits and eviction, on every
// listener (KMS, DNS over UDP and TCP, mDNS). An IPv4 address is one client; an IPv6 client
// usually owns a whole /64 (SLAAC, privacy addresses) and could otherwise pick a fresh source
// address for every connection or query, so IPv6 addresses count per prefix.
import { ipv6ToText, parseIpv6 } from '../protocol/dns/addresses';
import { unmapIPv4 } from './mapped-ipv4';

/**
 * The group key of a peer address: the IPv4 address itself (also when it arrives IPv4-mapped on a
 * dual-stack socket), or the IPv6 network of the first `ipv6PrefixLength` bits, e.g.
 * "2001:db8:1:2::/64". Anything unparseable is its own group.
 */
export function addressGroup(remote: string | undefined, ipv6PrefixLength = 64): string {
  if (!remote) return '';
  if (!remote.includes(':')) return remote; // IPv4, the common case
  const v4 = unmapIPv4(remote);
  if (v4 !== remote) return v4;
  const bytes = parseIpv6(remote);
  if (!bytes) return remote;
  const bits = Math.max(0, Math.min(128, Math.trunc(ipv6PrefixLength)));
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i]! &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
  }
  return `${ipv6ToText(bytes)}/${bits}`;
}
