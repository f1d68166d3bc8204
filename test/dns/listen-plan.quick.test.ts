import t from 'tap';
import { parseListenAddress, type ListenAddress } from '../../src/config/listen-address';
import { ipv6WildcardIsDualStack, planDnsSockets } from '../../src/dns/listen-plan';

function addrs(...specs: string[]): ListenAddress[] {
  return specs.map((s) => {
    const a = parseListenAddress(s);
    if ('error' in a) throw new Error(a.error);
    return a;
  });
}

/** The plan as "bind <- served…" lines, with the served addresses spelled as configured. */
function shape(specs: string[], dualStack: boolean): string[] {
  return planDnsSockets(addrs(...specs), dualStack).map(
    (p) => `${p.bind.host}:${p.bind.port} <- ${p.serves.map((i) => specs[i]).join(' ')}`,
  );
}

t.test('on a dual-stack host "[::]:P" carries "0.0.0.0:P": one pair of sockets, both addresses served', async (t) => {
  t.same(shape(['0.0.0.0:53', '[::]:53'], true), [':::53 <- 0.0.0.0:53 [::]:53'], 'IPv4 wildcard listed first');
  t.same(shape(['[::]:53', '0.0.0.0:53'], true), [':::53 <- [::]:53 0.0.0.0:53'], 'IPv6 wildcard listed first');
  t.same(shape(['[0:0::0]:53', '0.0.0.0:53'], true), ['0:0::0:53 <- [0:0::0]:53 0.0.0.0:53'], 'any spelling of the IPv6 wildcard');
  t.same(shape(['0.0.0.0:0', '[::]:0'], true), [':::0 <- 0.0.0.0:0 [::]:0'], 'port 0 on both: one port picked for both');
});

t.test('addresses on other ports, specific addresses and IPv6-only hosts keep their own sockets', async (t) => {
  t.same(shape(['0.0.0.0:53', '[::]:5353'], true), ['0.0.0.0:53 <- 0.0.0.0:53', ':::5353 <- [::]:5353'], 'different ports');
  t.same(shape(['127.0.0.1:53', '[::1]:53'], true), ['127.0.0.1:53 <- 127.0.0.1:53', '::1:53 <- [::1]:53'], 'loopback side by side');
  t.same(shape(['[::]:0', '127.0.0.1:0'], true), [':::0 <- [::]:0', '127.0.0.1:0 <- 127.0.0.1:0'], 'port 0 never conflicts');
  t.same(
    shape(['0.0.0.0:53', '[::]:53', '192.0.2.1:53'], false),
    ['0.0.0.0:53 <- 0.0.0.0:53', ':::53 <- [::]:53', '192.0.2.1:53 <- 192.0.2.1:53'],
    'bindv6only=1: "[::]" is IPv6 only, so every address is bound as configured',
  );
});

t.test('a specific IPv4 address on the port of a dual-stack "[::]" is a configuration error, whatever the order', async (t) => {
  for (const specs of [
    ['[::]:53', '127.0.0.1:53'],
    ['192.0.2.1:53', '0.0.0.0:53', '[::]:53'],
  ]) {
    t.throws(() => planDnsSockets(addrs(...specs), true), { code: 'KMS_ERR_CONFIG_INVALID' }, specs.join(' '));
  }
});

t.test('ipv6WildcardIsDualStack reads net.ipv6.bindv6only', async (t) => {
  t.equal(
    ipv6WildcardIsDualStack(() => '0\n'),
    true,
    'Linux default',
  );
  t.equal(
    ipv6WildcardIsDualStack(() => '1\n'),
    false,
    'bindv6only set',
  );
  t.equal(
    ipv6WildcardIsDualStack(() => {
      throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    }),
    true,
    'no sysctl: the common default',
  );
  t.type(ipv6WildcardIsDualStack(), 'boolean', 'this host answers');
});
