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
