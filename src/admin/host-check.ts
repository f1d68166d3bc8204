// DNS rebinding defence: a request is answered only when its Host header names this listener — a
// configured or own host name, or the very address the client connected to. A page loaded from
// attacker.example that rebinds its name to our address still sends `Host: attacker.example`.
import net from 'node:net';
import { unmapIPv4 } from '../net/mapped-ipv4';

/** Host header value → lower-case name or address without port and brackets; undefined when malformed. */
export function hostOf(header: string | undefined): string | undefined {
  if (header === undefined || header.length === 0 || header.length > 300) return undefined;
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    h = h.slice(1, end);
    return net.isIPv6(h) ? h : undefined;
  }
  const colon = h.lastIndexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(h.slice(colon + 1))) return undefined;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return /^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$/.test(h) || net.isIPv4(h) ? h : undefined;
}

/** An address as it compares: IPv4-mapped IPv6 as IPv4, IPv6 in canonical lower-case form. */
export function normalizeAddress(a: string): string {
  const plain = a.split('%')[0]!.toLowerCase();
  const v4 = unmapIPv4(plain);
  if (v4 !== plain) return v4;
  if (net.isIPv6(plain)) {
    // Let the URL parser canonicalise (compresses zeros, drops leading zeros).
    try {
      return new URL(`http://[${plain}]/`).hostname.slice(1, -1);
    } catch {
      return plain;
    }
  }
  return plain;
}

export class HostCheck {
  private readonly names: ReadonlySet<string>;

  /** `names`: host names accepted on every listener (own name, localhost, admin.hostNames). */
  constructor(names: readonly string[]) {
    this.names = new Set(names.map((n) => n.toLowerCase().replace(/\.$/, '')).filter(Boolean));
  }

  /** Whether `hostHeader` names this server as reached through `localAddress`. */
  allows(hostHeader: string | undefined, localAddress: string | undefined): boolean {
    const h = hostOf(hostHeader);
    if (h === undefined) return false;
    if (net.isIP(h) !== 0) return localAddress !== undefined && normalizeAddress(h) === normalizeAddress(localAddress);
    return this.names.has(h);
  }
}

/** The names every listener answers to: localhost, the machine's name and its first label, the configured ones. */
export function ownHostNames(hostName: string, configured: readonly string[]): string[] {
  const short = hostName.split('.')[0] ?? '';
  return [...new Set(['localhost', hostName, short, ...configured].map((n) => n.toLowerCase()).filter(Boolean))];
}
