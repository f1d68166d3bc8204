// Client-network lists: kms.clientNetworks (who may activate: an empty list allows everyone) and
// dns.forwarding.allowNetworks (who may use the forwarder: an empty list allows nobody, so the
// responder is never an open resolver). One parser for both, so "ADDR/PREFIX" means the same
// everywhere; and the check for a public address behind the "no allowlist" warning.
import net from 'node:net';
import { unmapIPv4 } from './mapped-ipv4';

/** Whether an address (as a socket reports it, IPv4-mapped or with a zone id) is in the list. */
export type NetworkMatcher = (remoteAddress: string | undefined) => boolean;

/**
 * Matches against a list of ADDR or ADDR/PREFIX entries; `whenEmpty` says what an empty list
 * means. Throws a TypeError naming the first entry that is not a network (the schema refuses such
 * a configuration earlier; this keeps a bad value from ever matching everything).
 */
export function buildNetworkMatcher(cidrs: readonly string[], whenEmpty: 'everyone' | 'nobody'): NetworkMatcher {
  if (cidrs.length === 0) return whenEmpty === 'everyone' ? () => true : () => false;
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [addr = '', bits, extra] = cidr.split('/');
    const family = net.isIP(addr);
    const max = family === 4 ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (family === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
      throw new TypeError(`not a network: ${cidr}`);
    }
    list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return (remote) => {
    if (!remote) return false;
    const plain = unmapIPv4(remote.replace(/%.*$/, ''));
    if (net.isIPv4(plain)) return list.check(plain, 'ipv4');
    if (net.isIPv6(plain)) return list.check(plain, 'ipv6');
    return false;
  };
}

const PRIVATE = new net.BlockList();
const PRIVATE_V4_RANGES = [
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['100.64.0.0', 10],
] as const;
/** The same IPv4 ranges as [network, mask] numbers: checked on every connection, without parsing the address twice. */
const PRIVATE_V4: readonly (readonly [number, number])[] = PRIVATE_V4_RANGES.map(
  ([a, p]) => [ipv4Number(a)!, (0xffffffff << (32 - p)) >>> 0] as const,
);

/** A dotted-quad IPv4 address as an unsigned number; undefined for anything else. */
function ipv4Number(s: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}
for (const [a, p] of PRIVATE_V4_RANGES) {
  PRIVATE.addSubnet(a, p, 'ipv4');
}
for (const [a, p] of [
  ['::1', 128],
  ['fe80::', 10],
  ['fc00::', 7],
] as const)
  PRIVATE.addSubnet(a, p, 'ipv6');

/**
 * True for an address from outside private, loopback, link-local and CGNAT ranges: a client
 * there means the host is reachable from the internet (worth a warning while no allowlist is set).
 */
export function isPublicAddress(remote: string | undefined): boolean {
  if (!remote) return false;
  const v4 = ipv4Number(remote);
  if (v4 !== undefined) return !PRIVATE_V4.some(([net4, mask]) => (v4 & mask) >>> 0 === net4);
  const addr = unmapIPv4(remote);
  const family = net.isIP(addr);
  if (family === 0) return false;
  return !PRIVATE.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}
