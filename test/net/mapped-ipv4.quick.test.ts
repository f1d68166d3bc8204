import t from 'tap';
import { unmapIPv4 } from '../../src/net/mapped-ipv4';

t.test('an IPv4-mapped peer is its IPv4 address; every other address is left as it is', async (t) => {
  t.equal(unmapIPv4('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(unmapIPv4('::FFFF:192.0.2.7'), '192.0.2.7', 'any case');
  for (const a of ['192.0.2.7', '::1', '2001:db8::ffff:1', '::ffff:1:2', '::ffff:', '::ffff:300.1.1.1', '', 'fe80::1%eth0'])
    t.equal(unmapIPv4(a), a, JSON.stringify(a));
});
