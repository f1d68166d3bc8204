// "ADDR:PORT" listen specs, IPv6 in brackets ("[::1]:1688"), as used by every listener setting
// and by the --listen / --dns-listen flags.
import net from 'node:net';

export interface ListenAddress {
  readonly host: string; // without brackets
  readonly port: number;
  readonly family: 4 | 6;
}

const BRACKETED = /^\[([^\]]+)\]:(\d{1,5})$/;
const PLAIN = /^([^:\[\]]+):(\d{1,5})$/;

/** Returns the parsed address, or a reason the spec is invalid. */
export function parseListenAddress(spec: string): ListenAddress | { error: string } {
  const m = BRACKETED.exec(spec) ?? PLAIN.exec(spec);
  if (!m) return { error: `"${spec}" is not ADDR:PORT (IPv6 in brackets, e.g. [::]:1688)` };
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return { error: `port ${port} is above 65535` };
  const family = net.isIP(host);
  if (family === 0) return { error: `"${host}" is not an IPv4 or IPv6 address` };
  if (family === 6 && !spec.startsWith('[')) return { error: `IPv6 address "${host}" must be in brackets` };
  return { host, port, family: family as 4 | 6 };
}

export function formatListenAddress(a: { host: string; port: number }): string {
  return net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
