// One parser for every client-network list: the KMS allowlist (empty = everyone) and the DNS
// forwarder's (empty = nobody) must agree on what "ADDR/PREFIX" matches.
import t from 'tap';
import { buildNetworkMatcher, isPublicAddress } from '../../src/net/networks';
import { addressGroup } from '../../src/net/address-group';

t.test('an empty list means what its caller says, never by accident', async (t) => {
  t.ok(buildNetworkMatcher([], 'everyone')('203.0.113.9'));
  t.notOk(buildNetworkMatcher([], 'nobody')('127.0.0.1'));
});

t.test('IPv4, IPv6, mapped and zoned addresses match their networks', async (t) => {
  const m = buildNetworkMatcher(['192.168.1.0/24', 'fd00::/8', '198.51.100.7'], 'nobody');
  t.ok(m('192.168.1.200'));
  t.notOk(m('192.168.2.1'));
  t.ok(m('::ffff:192.168.1.3'), 'an IPv4 client on a dual-stack socket');
  t.ok(m('fd12:3456::1'));
  t.ok(m('fd12:3456::1%eth0'), 'zone id ignored');
  t.notOk(m('fe80::1'));
  t.ok(m('198.51.100.7'), 'a bare address is its own /32');
  t.notOk(m('198.51.100.8'));
  t.notOk(m(undefined));
  t.notOk(m('not an address'));
});

t.test('a bad entry is refused, never widened', async (t) => {
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', 'example.org/24', '10.0.0.0/x']) {
    t.throws(() => buildNetworkMatcher([bad], 'everyone'), TypeError, bad);
  }
});

t.test('public addresses are those outside private, loopback, link-local and CGNAT ranges', async (t) => {
  for (const a of [
    '10.1.2.3',
    '172.16.0.1',
    '192.168.0.1',
    '127.0.0.1',
    '169.254.1.1',
    '100.64.0.1',
    '::1',
    'fe80::1',
    'fd00::1',
    '::ffff:10.0.0.1',
  ]) {
    t.notOk(isPublicAddress(a), a);
  }
  for (const a of ['203.0.113.5', '8.8.8.8', '2001:db8::1', '::ffff:198.51.100.1']) t.ok(isPublicAddress(a), a);
});

t.test('groups print as the network they stand for', async (t) => {
  t.equal(addressGroup('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  t.equal(addressGroup('2001:db8:1:2::1', 48), '2001:db8:1::/48');
  t.equal(addressGroup('2001:db8::1', 128), '2001:db8::1/128');
  t.equal(addressGroup(undefined), '');
  t.equal(addressGroup('garbage:'), 'garbage:', 'unparseable: its own group');
});
