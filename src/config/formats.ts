// The string formats configuration values use (addresses, networks, DNS names …), each with the
// words an administrator reads when a value does not fit. The schema names them with `format`.
import net from 'node:net';
import { parseListenAddress } from './listen-address';

export interface ConfigFormat {
  /** What a valid value looks like, completing "must be …". */
  readonly expected: string;
  /** Why `value` does not fit, or undefined when it does. */
  check(value: string): string | undefined;
}

const LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/;

function checkDnsName(value: string): string | undefined {
  const name = value.endsWith('.') ? value.slice(0, -1) : value;
  if (name.length === 0) return 'is empty';
  if (name.length > 253) return 'is longer than 253 characters';
  const bad = name.split('.').find((label) => !LABEL.test(label));
  if (bad !== undefined) return bad === '' ? 'has an empty label' : `has an invalid label "${bad}"`;
  return undefined;
}

function checkCidr(value: string): string | undefined {
  const slash = value.lastIndexOf('/');
  if (slash < 0) return 'has no /PREFIX';
  const address = value.slice(0, slash);
  const prefix = value.slice(slash + 1);
  const family = net.isIP(address);
  if (family === 0) return `"${address}" is not an IPv4 or IPv6 address`;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) return `prefix "/${prefix}" is not 0 … ${max}`;
  return undefined;
}

function checkServer(value: string): string | undefined {
  if (net.isIP(value) !== 0) return undefined;
  const parsed = parseListenAddress(value);
  if ('error' in parsed) return parsed.error;
  if (parsed.port === 0) return 'port 0 cannot be contacted';
  return undefined;
}

export const CONFIG_FORMATS: Readonly<Record<string, ConfigFormat>> = Object.freeze({
  'listen-address': {
    expected: 'a listen address',
    check: (v: string) => {
      const parsed = parseListenAddress(v);
      return 'error' in parsed ? parsed.error : undefined;
    },
  },
  'ip-address': {
    expected: 'an IPv4 or IPv6 address',
    check: (v: string) => (net.isIP(v) === 0 ? `"${v}" is not one` : undefined),
  },
  cidr: {
    expected: 'a network as ADDR/PREFIX (e.g. 192.168.1.0/24, fd00::/8)',
    check: checkCidr,
  },
  'dns-name': {
    expected: 'a DNS name (letters, digits and hyphens, dot-separated)',
    check: checkDnsName,
  },
  'dns-server': {
    expected: 'a DNS server as ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT)',
    check: checkServer,
  },
});

/** Reason for a value failing `format`, for error lines. */
export function explainFormat(format: string, value: unknown): string {
  const f = CONFIG_FORMATS[format];
  if (!f) return `must match format ${format}`;
  const reason = typeof value === 'string' ? f.check(value) : undefined;
  return reason ? `must be ${f.expected}: ${reason}` : `must be ${f.expected}`;
}
