import t from 'tap';
import { decodeMessage, encodeMessage, encodingLength, EMPTY_HEADER, RR_TYPE, RR_CLASS } from '../../src/protocol/dns/message';
import { ipv6ToBytes, ipv6ToText, parseIpv4, parseIpv6 } from '../../src/protocol/dns/addresses';
import { decodeName, nameToLabels } from '../../src/protocol/dns/names';
import { bytes, hex } from '../bytes';

// A query for SRV _vlmcs._tcp.example.org with an EDNS OPT (4096, DO clear), written by hand
// from RFC 1035 §4.1 and RFC 6891 §6.1.2.
const QUERY = bytes(`
  1234                                                         # ID
  0100                                                         # flags: RD
  0001 0000 0000 0001                                          # QD AN NS AR
  06 5f766c6d6373 04 5f746370 07 6578616d706c65 03 6f7267 00   # _vlmcs._tcp.example.org
  0021 0001                                                    # SRV IN
  00 0029 1000 00000000 0000                                   # OPT: root, type 41, UDP 4096, ttl 0, rdlen 0
`);

t.test('decodes a hand-written query', async (t) => {
  const m = decodeMessage(QUERY);
  t.equal(m.header.id, 0x1234);
  t.equal(m.header.rd, true);
  t.equal(m.header.qr, false);
  t.same(m.questions, [{ name: '_vlmcs._tcp.example.org', type: RR_TYPE.SRV, class: RR_CLASS.IN }]);
  t.equal(m.additionals.length, 1);
  t.equal(m.additionals[0]!.type, RR_TYPE.OPT);
  t.equal(m.additionals[0]!.class, 4096);
  t.equal(m.additionals[0]!.offset, QUERY.length - 11, 'records know their offset');
});

t.test('encodes an SRV answer: owner compressed, SRV target never compressed (RFC 2782)', async (t) => {
  const out = encodeMessage({
    header: { ...EMPTY_HEADER, id: 0x1234, qr: true, aa: true },
    questions: [{ name: 'example.org', type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [
      {
        name: 'example.org',
        type: RR_TYPE.SRV,
        class: RR_CLASS.IN,
        ttl: 900,
        data: { kind: 'srv', priority: 0, weight: 5, port: 1688, target: 'kms.example.org' },
      },
    ],
    authorities: [],
    additionals: [],
  });
  const expected = hex(`
    1234 8400 0001 0001 0000 0000
    07 6578616d706c65 03 6f7267 00 0021 0001     # question
    c00c 0021 0001 00000384                      # owner = pointer to offset 12, SRV IN, TTL 900
    0017 0000 0005 0698                          # RDLENGTH 23, priority 0, weight 5, port 1688
    03 6b6d73 07 6578616d706c65 03 6f7267 00     # kms.example.org in full
  `);
  t.equal(out.toString('hex'), expected);
  const back = decodeMessage(out);
  t.same(back.answers[0]!.data, { kind: 'srv', priority: 0, weight: 5, port: 1688, target: 'kms.example.org' });
});

t.test('name decoding limits', async (t) => {
  const bad: [string, Buffer][] = [
    ['pointer to itself', Buffer.from('c000', 'hex')],
    ['pointer forward', Buffer.from('c00200', 'hex')],
    ['pointer cut short', Buffer.from('c0', 'hex')],
    ['label past the end', Buffer.from('0561', 'hex')],
    ['64-octet label', Buffer.concat([Buffer.from([64]), Buffer.alloc(64, 97), Buffer.from([0])])],
    ['reserved 0x80 label type', Buffer.from('8100', 'hex')],
    [
      '256-octet name',
      Buffer.concat([...Array.from({ length: 4 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 97)])), Buffer.from([0])]),
    ],
  ];
  for (const [what, bytes] of bad) t.throws(() => decodeName(bytes, 0), { code: 'KMS_ERR_DNS_MALFORMED' }, what);
  const max = Buffer.concat([
    ...Array.from({ length: 3 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 97)])),
    Buffer.from([61]),
    Buffer.alloc(61, 97),
    Buffer.from([0]),
  ]);
  t.equal(max.length, 255);
  t.equal(decodeName(max, 0).name.length, 253, 'a 255-octet name is fine');
  // Backward pointer chain: www -> example.org at 0.
  const chain = Buffer.concat([
    Buffer.from('076578616d706c6503', 'hex'),
    Buffer.from('6f726700', 'hex'),
    Buffer.from('03777777c000', 'hex'),
  ]);
  t.same(decodeName(chain, 13), { name: 'www.example.org', next: 19 });
  t.same(decodeName(Buffer.from('03612e6200', 'hex'), 0).name, 'a\\.b', 'a dot inside a label is escaped');
  t.same(
    nameToLabels('a\\.b.c').map((l) => l.toString()),
    ['a.b', 'c'],
  );
  t.throws(() => nameToLabels('a..b'), TypeError);
});

t.test('whole-message consistency checks', async (t) => {
  t.throws(() => decodeMessage(QUERY.subarray(0, QUERY.length - 1)), { code: 'KMS_ERR_DNS_MALFORMED' }, 'cut OPT');
  t.throws(() => decodeMessage(Buffer.concat([QUERY, Buffer.from([0])])), { code: 'KMS_ERR_DNS_MALFORMED' }, 'trailing byte');
  const moreAr = Buffer.from(QUERY);
  moreAr.writeUInt16BE(2, 10);
  t.throws(() => decodeMessage(moreAr), { code: 'KMS_ERR_DNS_MALFORMED' }, 'count larger than the records');
  const badA = bytes('0000 8000 0000 0001 0000 0000 00 0001 0001 00000000 0003 010203');
  t.throws(() => decodeMessage(badA), { code: 'KMS_ERR_DNS_MALFORMED' }, 'A with RDLENGTH 3');
});

t.test('IPv6 text and bytes (RFC 5952)', async (t) => {
  t.equal(ipv6ToBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
  t.equal(ipv6ToBytes('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201');
  t.equal(ipv6ToBytes('::').toString('hex'), '0'.repeat(32));
  t.equal(ipv6ToText(Buffer.from('20010db8000000010000000000000001', 'hex')), '2001:db8:0:1::1');
  t.equal(ipv6ToText(Buffer.from('20010db8000100000001000100010001', 'hex')), '2001:db8:1:0:1:1:1:1', 'a single zero group stays');
  t.equal(ipv6ToText(Buffer.alloc(16)), '::');
});

t.test('address parsing without node:net agrees with RFC 4291 text forms', async (t) => {
  t.equal(parseIpv4('192.0.2.255')?.toString('hex'), 'c00002ff');
  for (const bad of ['256.0.0.1', '1.2.3', '01.2.3.4', '1.2.3.4.5', ' 1.2.3.4', '']) t.equal(parseIpv4(bad), null, `IPv4 "${bad}" refused`);
  t.equal(parseIpv6('fe80::1%eth0')?.toString('hex'), 'fe800000000000000000000000000001', 'zone id ignored');
  t.equal(parseIpv6('1:2:3:4:5:6:7:8')?.toString('hex'), '00010002000300040005000600070008');
  t.equal(parseIpv6('1:2:3:4:5:6:1.2.3.4')?.toString('hex'), '00010002000300040005000601020304');
  for (const bad of [
    '1:2:3:4:5:6:7',
    '1::2::3',
    '12345::',
    ':::',
    '1:2:3:4:5:6:7:8:9',
    '::1.2.3',
    'g::1',
    '1.2.3.4::',
    '1:2:3:4:5:6:7::8',
  ]) {
    t.equal(parseIpv6(bad), null, `IPv6 "${bad}" refused`);
  }
});

t.test('encodingLength is the exact encoded size, name compression included', async (t) => {
  const m = {
    header: { ...EMPTY_HEADER, id: 7, qr: true },
    questions: [{ name: '_vlmcs._tcp.Example.org', type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [
      {
        name: '_vlmcs._tcp.example.org',
        type: RR_TYPE.SRV,
        class: RR_CLASS.IN,
        ttl: 60,
        data: { kind: 'srv' as const, priority: 0, weight: 0, port: 1688, target: 'kms.example.org' },
      },
    ],
    authorities: [
      { name: 'example.org', type: RR_TYPE.NS, class: RR_CLASS.IN, ttl: 60, data: { kind: 'name' as const, target: 'kms.example.org' } },
    ],
    additionals: [
      { name: 'kms.example.org', type: RR_TYPE.A, class: RR_CLASS.IN, ttl: 60, data: { kind: 'a' as const, address: '192.0.2.1' } },
      { name: 'kms.example.org', type: RR_TYPE.AAAA, class: RR_CLASS.IN, ttl: 60, data: { kind: 'aaaa' as const, address: '2001:db8::1' } },
    ],
  };
  const bytes = encodeMessage(m);
  t.equal(encodingLength(m), bytes.length);
  t.ok(bytes.length < 150, `names are compressed (${bytes.length} bytes)`);
  t.same(
    decodeMessage(bytes).additionals.map((r) => r.data),
    m.additionals.map((r) => r.data),
    'round trip',
  );
});
