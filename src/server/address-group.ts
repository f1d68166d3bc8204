// Which connections count as "one client address" for kms.maxConnectionsPerAddress and eviction.
// An IPv4 address is one client; an IPv6 client usually owns a whole /64 (SLAAC, privacy
// addresses), so one machine could otherwise open connections from 2^64 addresses: IPv6 addresses
// are grouped by their first kms.ipv6GroupPrefixLength bits.
import net from 'node:net';

const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** The group key of a peer address: the IPv4 address itself, or an IPv6 prefix as "hex…/len". */
export function addressGroup(remote: string | undefined, ipv6PrefixLength: number): string {
  if (!remote) return '';
  if (!remote.includes(':')) return remote; // IPv4, the common case
  const mapped = MAPPED_V4.exec(remote);
  if (mapped) return mapped[1]!;
  if (!net.isIPv6(remote.replace(/%.*$/, ''))) return remote;
  const words = ipv6Words(remote);
  if (!words) return remote;
  const bits = Math.max(0, Math.min(128, ipv6PrefixLength));
  let key = '';
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits - i * 16));
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    key += (i ? ':' : '') + (words[i]! & mask).toString(16);
  }
  return `${key}/${bits}`;
}

/** The eight 16-bit words of an IPv6 address (zone id ignored; embedded IPv4 allowed). */
export function ipv6Words(address: string): number[] | undefined {
  let text = address.replace(/%.*$/, '');
  const tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    tail.push((a << 8) | b, (c << 8) | d);
    // "…:a.b.c.d" → "…" ("::a.b.c.d" keeps its "::")
    text = text.slice(0, v4.index);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const explicit = head.length + rest.length + tail.length;
  if (halves.length === 1 && explicit !== 8) return undefined;
  if (explicit > 8) return undefined;
  const words = [...head, ...new Array<number>(8 - explicit).fill(0), ...rest, ...tail];
  return words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}
