// Which sockets the DNS responder binds for its listen addresses. dns2's UDPServer takes a socket
// type and nothing else, so a "[::]:P" socket cannot ask for IPV6_V6ONLY: it follows the host's
// default, dual-stack on Linux (net.ipv6.bindv6only = 0), and carries IPv4 on port P as well. TCP
// binds the same way so both transports answer the same clients. "0.0.0.0:P" beside "[::]:P" is
// therefore served by the "[::]" sockets, and a specific IPv4 address on P beside "[::]:P" (which
// the kernel would refuse) is reported as a configuration error before anything is bound.
import fs from 'node:fs';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import { ConfigError } from '../errors';
import { parseIpv6 } from '../protocol/dns/addresses';

export interface DnsSocketPlan {
  /** The address the UDP and TCP sockets are bound to. */
  readonly bind: ListenAddress;
  /** Indexes of the configured listen addresses these sockets answer for. */
  readonly serves: readonly number[];
}

const BINDV6ONLY_SYSCTL = '/proc/sys/net/ipv6/bindv6only';

/** True when a "[::]" socket bound without IPV6_V6ONLY receives IPv4 too (the host's default). */
export function ipv6WildcardIsDualStack(readSysctl: () => string = () => fs.readFileSync(BINDV6ONLY_SYSCTL, 'utf8')): boolean {
  try {
    return readSysctl().trim() !== '1';
  } catch {
    return true; // not Linux: the appliance's target is Linux, and dual-stack is the common default elsewhere
  }
}

function isWildcard(a: ListenAddress): boolean {
  if (a.family === 4) return a.host === '0.0.0.0';
  return parseIpv6(a.host)?.every((b) => b === 0) ?? false;
}

/** Groups the configured addresses into the sockets to bind (order kept); throws ConfigError on a dual-stack conflict. */
export function planDnsSockets(addrs: readonly ListenAddress[], dualStack: boolean): DnsSocketPlan[] {
  // Port → index of the first "[::]" address on it, whose sockets carry IPv4 on that port.
  const carrier = new Map<number, number>();
  addrs.forEach((a, i) => {
    if (dualStack && a.family === 6 && isWildcard(a) && !carrier.has(a.port)) carrier.set(a.port, i);
  });
  const plans = new Map<number, { bind: ListenAddress; serves: number[] }>();
  addrs.forEach((a, i) => {
    const v6 = a.family === 4 ? carrier.get(a.port) : undefined;
    if (v6 !== undefined && !isWildcard(a) && a.port !== 0) {
      throw new ConfigError(
        'KMS_ERR_CONFIG_INVALID',
        `dns.listen: ${formatListenAddress(a)} cannot be bound beside ${formatListenAddress(addrs[v6]!)}, ` +
          `which answers IPv4 on port ${a.port} too (dual-stack); list one of them`,
      );
    }
    const key = v6 !== undefined && isWildcard(a) ? v6 : i;
    const plan = plans.get(key);
    if (plan) plan.serves.push(i);
    else plans.set(key, { bind: addrs[key]!, serves: [i] });
  });
  return [...plans.values()];
}
