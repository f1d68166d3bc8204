// The client-network allowlist (kms.clientNetworks): a branch-office host should answer its own
// networks, not the internet. An empty list allows everyone.
import net from 'node:net';

export type ClientFilter = (remoteAddress: string | undefined) => boolean;

export function buildClientFilter(cidrs: readonly string[]): ClientFilter {
  if (cidrs.length === 0) return () => true;
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [addr, bits] = cidr.split('/');
    const family = net.isIP(addr ?? '');
    if (family === 0) throw new TypeError(`not a network: ${cidr}`);
    const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
    list.addSubnet(addr!, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return (remote) => {
    if (!remote) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    return list.check(remote, net.isIPv6(remote) ? 'ipv6' : 'ipv4');
  };
}

const PRIVATE = new net.BlockList();
const PRIVATE_V4_RANGES = [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['127.0.0.0', 8], ['169.254.0.0', 16], ['100.64.0.0', 10]] as const;
/** The same IPv4 ranges as [network, mask] numbers: checked on every connection, without parsing the address twice. */
const PRIVATE_V4: readonly (readonly [number, number])[] = PRIVATE_V4_RANGES.map(([a, p]) => [ipv4Number(a)!, (0xffffffff << (32 - p)) >>> 0] as const);

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
for (const [a, p] of [['::1', 128], ['fe80::', 10], ['fc00::', 7]] as const) PRIVATE.addSubnet(a, p, 'ipv6');

/**
 * True for an address from outside private, loopback, link-local and CGNAT ranges: a client
 * there means the host is reachable from the internet (worth a warning while no allowlist is set).
 */
export function isPublicAddress(remote: string | undefined): boolean {
  if (!remote) return false;
  const v4 = ipv4Number(remote);
  if (v4 !== undefined) return !PRIVATE_V4.some(([net4, mask]) => ((v4 & mask) >>> 0) === net4);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  const addr = mapped ? mapped[1]! : remote;
  const family = net.isIP(addr);
  if (family === 0) return false;
  return !PRIVATE.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}
