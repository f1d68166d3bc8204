// Which DNS clients share one budget (rate limit, TCP connections per address). An IPv4 address
// is one client; an IPv6 client usually owns a whole /64 (SLAAC, privacy addresses) and could
// otherwise pick a fresh source address for every query, so IPv6 sources count per /64.
import { parseIpv6 } from '../protocol/dns/addresses';

const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** "192.0.2.1", or "2001:db8:1:2::/64" for any address in that /64. */
export function clientGroup(address: string): string {
  if (!address.includes(':')) return address;
  const mapped = MAPPED_V4.exec(address);
  if (mapped) return mapped[1]!;
  const b = parseIpv6(address);
  if (!b) return address;
  const g = (i: number): string => ((b[i]! << 8) | b[i + 1]!).toString(16);
  return `${g(0)}:${g(2)}:${g(4)}:${g(6)}::/64`;
}
