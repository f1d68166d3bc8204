import t from 'tap';
import { peerAddress } from '../../src/dns/peer-address';

t.test('an IPv4-mapped peer is its IPv4 address; every other address is left as it is', async (t) => {
  t.equal(peerAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(peerAddress('::FFFF:192.0.2.7'), '192.0.2.7', 'any case');
  for (const a of ['192.0.2.7', '::1', '2001:db8::ffff:1', '::ffff:1:2', '::ffff:', '::ffff:300.1.1.1', '', 'fe80::1%eth0'])
    t.equal(peerAddress(a), a, JSON.stringify(a));
});
