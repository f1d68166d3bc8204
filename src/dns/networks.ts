// Client-network lists for the DNS responder (dns.forwarding.allowNetworks): who may use the
// forwarder. Unlike kms.clientNetworks an empty list here allows nobody (never an open resolver).
import net from 'node:net';

export type AddressMatcher = (address: string | undefined) => boolean;

/** Throws a TypeError naming the first entry that is not ADDR or ADDR/PREFIX. */
export function buildAddressMatcher(cidrs: readonly string[]): AddressMatcher {
  if (cidrs.length === 0) return () => false;
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
  return (address) => {
    if (!address) return false;
    const plain = address.replace(/%.*$/, '');
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    if (net.isIPv4(plain)) return list.check(plain, 'ipv4');
    if (net.isIPv6(plain)) return list.check(plain, 'ipv6');
    return false;
  };
}
