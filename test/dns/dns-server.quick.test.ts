import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import DNS from 'dns2';
import { DEFAULTS, type AppConfig, type DnsZoneConfig } from '../../src/config/defaults';
import { startDnsServer, type DnsServerHandle } from '../../src/dns/dns-server';
import { dig } from './dig';
import { afterPoll, settledWithin, until } from '../wait';
import { captureLog, type LogLine } from './capture-log';

const BIG_HOSTS = 40;
const MID_HOSTS = 30; // 30 SRV records (~1100 bytes) fit in 1232 bytes, their addresses do not
function manyHosts(zone: string, n: number): DnsZoneConfig['hosts'] {
  return Array.from({ length: n }, (_, i) => ({
    target: `kms-${String(i).padStart(2, '0')}.${zone}`,
    port: 1688,
    priority: i % 3,
    weight: 10,
    addresses: [`192.0.2.${i + 1}`],
  }));
}
const ZONES: DnsZoneConfig[] = [
  { domain: 'example.test', ttlSeconds: 300, hosts: [] },
  {
    domain: 'branch.test',
    ttlSeconds: 900,
    hosts: [
      { target: 'kms-a.branch.test', port: 1688, priority: 0, weight: 60, addresses: ['192.0.2.10'] },
      { target: 'kms-b.branch.test', port: 11688, priority: 0, weight: 40, addresses: ['192.0.2.11', '2001:db8::11'] },
      { target: 'kms-c.elsewhere.test', port: 1688, priority: 10, weight: 0, addresses: ['198.51.100.7'] },
    ],
  },
  { domain: 'big.test', ttlSeconds: 60, hosts: manyHosts('big.test', BIG_HOSTS) },
  { domain: 'mid.test', ttlSeconds: 60, hosts: manyHosts('mid.test', MID_HOSTS) },
];

function dnsConfig(over: Partial<AppConfig['dns']> = {}): AppConfig['dns'] {
  return { ...DEFAULTS.dns, zones: ZONES, rateLimit: { responsesPerSecond: 0, burst: 1, slip: 0 }, ...over };
}

const KMS_PORT = 1688;

async function start(
  t: Test,
  over: Partial<AppConfig['dns']> = {},
  listen = ['127.0.0.1:0', '[::1]:0'],
): Promise<{ h: DnsServerHandle; lines: LogLine[]; v4: number; v6: number }> {
  const { log, lines } = captureLog();
  const h = await startDnsServer(
    dnsConfig(over),
    { kmsPort: KMS_PORT, hostName: 'kms01', addresses: () => ['127.0.0.1', '::1'], log },
    listen,
  );
  t.teardown(() => h.close());
  const v4 = h.addresses.find((a) => a.family === 4)?.port ?? 0;
  const v6 = h.addresses.find((a) => a.family === 6)?.port ?? 0;
  return { h, lines, v4, v6 };
}

t.test('SRV for a zone without hosts publishes this appliance on its KMS port, over UDP and TCP, IPv4 and IPv6', async (t) => {
  const { v4, v6 } = await start(t);
  t.ok(v4 > 0 && v6 > 0, 'bound ports are reported');
  for (const [server, port] of [
    ['127.0.0.1', v4],
    ['::1', v6],
  ] as const) {
    for (const tcp of [false, true]) {
      const r = await dig(server, port, ['SRV', '_vlmcs._tcp.example.test', ...(tcp ? ['+tcp'] : [])]);
      const where = `${server} ${tcp ? 'TCP' : 'UDP'}`;
      t.equal(r.status, 'NOERROR', where);
      t.equal(r.tcp, tcp, `${where}: transport`);
      t.ok(r.flags.includes('aa'), `${where}: authoritative`);
      t.same(
        r.answer,
        [['_vlmcs._tcp.example.test.', '300', 'IN', 'SRV', '0', '0', String(KMS_PORT), 'kms01.example.test.']],
        `${where}: SRV`,
      );
      t.same(
        r.additional,
        [
          ['kms01.example.test.', '300', 'IN', 'A', '127.0.0.1'],
          ['kms01.example.test.', '300', 'IN', 'AAAA', '::1'],
        ],
        `${where}: target addresses as additional data`,
      );
    }
  }
});

t.test("several hosts per zone with priority, weight, port, and each target's addresses", async (t) => {
  const { v4 } = await start(t);
  const r = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.branch.test']);
  t.equal(r.status, 'NOERROR');
  t.same(
    r.answer.map((a) => a.slice(3)),
    [
      ['SRV', '0', '60', '1688', 'kms-a.branch.test.'],
      ['SRV', '0', '40', '11688', 'kms-b.branch.test.'],
      ['SRV', '10', '0', '1688', 'kms-c.elsewhere.test.'],
    ],
  );
  t.same(
    r.additional.map((a) => [a[0], a[3], a[4]]),
    [
      ['kms-a.branch.test.', 'A', '192.0.2.10'],
      ['kms-b.branch.test.', 'A', '192.0.2.11'],
      ['kms-b.branch.test.', 'AAAA', '2001:db8::11'],
      ['kms-c.elsewhere.test.', 'A', '198.51.100.7'],
    ],
  );
  const a = await dig('127.0.0.1', v4, ['A', 'kms-b.branch.test']);
  t.same(a.answer, [['kms-b.branch.test.', '900', 'IN', 'A', '192.0.2.11']], 'a target inside the zone answers its A');
});

t.test('NXDOMAIN and NODATA carry the SOA in the authority section; SOA and NS at the apex', async (t) => {
  const { v4 } = await start(t);
  const nx = await dig('127.0.0.1', v4, ['A', 'nothing-here.example.test']);
  t.equal(nx.status, 'NXDOMAIN');
  t.same(nx.answer, []);
  t.equal(nx.authority.length, 1);
  t.same(nx.authority[0]!.slice(0, 5), ['example.test.', '300', 'IN', 'SOA', 'kms01.example.test.']);
  t.equal(nx.authority[0]![nx.authority[0]!.length - 1], '300', 'negative TTL = zone TTL');

  const nodata = await dig('127.0.0.1', v4, ['TXT', '_vlmcs._tcp.example.test']);
  t.equal(nodata.status, 'NOERROR');
  t.same(nodata.answer, []);
  t.same(nodata.authority[0]!.slice(0, 4), ['example.test.', '300', 'IN', 'SOA']);

  const ent = await dig('127.0.0.1', v4, ['A', '_tcp.example.test']);
  t.equal(ent.status, 'NOERROR', 'an empty non-terminal exists (RFC 8020)');

  const soa = await dig('127.0.0.1', v4, ['SOA', 'example.test']);
  t.same(soa.answer[0]!.slice(3, 6), ['SOA', 'kms01.example.test.', 'hostmaster.example.test.']);
  const ns = await dig('127.0.0.1', v4, ['NS', 'example.test']);
  t.same(ns.answer, [['example.test.', '300', 'IN', 'NS', 'kms01.example.test.']]);
  t.same(
    ns.additional.map((a) => a[3]),
    ['A', 'AAAA'],
    'name server addresses as additional data',
  );

  const unknownType = await dig('127.0.0.1', v4, ['TYPE65280', '_vlmcs._tcp.example.test']);
  t.equal(unknownType.status, 'NOERROR', 'an unknown type at an existing name is NODATA');
  t.equal(unknownType.authority.length, 1);
});

t.test('names outside the zones are REFUSED, not answered, and the query casing is echoed', async (t) => {
  const { v4, lines } = await start(t);
  const r = await dig('127.0.0.1', v4, ['A', 'www.example.com']);
  t.equal(r.status, 'REFUSED');
  t.notOk(r.flags.includes('aa'));
  t.notOk(r.flags.includes('ra'), 'no recursion offered');
  t.ok(
    lines.some((l) => l.obj.code === 'KMS_ERR_DNS_REFUSED'),
    'logged with its code',
  );
  const ch = await dig('127.0.0.1', v4, ['CH', 'TXT', 'version.bind']);
  t.equal(ch.status, 'REFUSED', 'CHAOS class is refused');
  const mixed = await dig('127.0.0.1', v4, ['SRV', '_VLMCS._TCP.Example.TEST']);
  t.equal(mixed.status, 'NOERROR');
  t.equal(mixed.answer[0]![0], '_VLMCS._TCP.Example.TEST.', 'answer owner spelled as asked');
});

t.test('EDNS(0): an OPT answers an OPT; without one there is none; an unknown version gets BADVERS', async (t) => {
  const { v4 } = await start(t);
  const withOpt = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test', '+bufsize=4096']);
  t.equal(withOpt.ednsUdp, 1232, 'our OPT advertises 1232 bytes');
  const without = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test', '+noedns']);
  t.equal(without.ednsUdp, undefined);
  t.equal(without.status, 'NOERROR');
  const badvers = await dig('127.0.0.1', v4, ['SOA', 'example.test', '+edns=1', '+noednsneg']);
  t.equal(badvers.status, 'BADVERS');
});

t.test('truncation: a large SRV set sets TC over small UDP, and TCP returns it whole', async (t) => {
  const { v4, v6 } = await start(t);
  const small = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.big.test', '+bufsize=512', '+ignore']);
  t.ok(small.flags.includes('tc'), 'TC set with a 512-byte buffer');
  t.same(small.answer, [], 'no partial RRset');
  const classic = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.big.test', '+noedns', '+ignore']);
  t.ok(classic.flags.includes('tc'), 'TC set without EDNS (512 bytes)');
  const tcp = await dig('::1', v6, ['SRV', '_vlmcs._tcp.big.test', '+tcp']);
  t.notOk(tcp.flags.includes('tc'));
  t.equal(tcp.answer.length, BIG_HOSTS, 'every SRV over TCP');
  t.equal(tcp.additional.length, BIG_HOSTS, 'and every address');
  const fallback = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.big.test', '+bufsize=512']);
  t.equal(fallback.answer.length, BIG_HOSTS, 'dig retries over TCP by itself after TC');
  t.ok(fallback.tcp);
  const mid = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.mid.test', '+bufsize=1232', '+ignore']);
  t.notOk(mid.flags.includes('tc'));
  t.equal(mid.answer.length, MID_HOSTS);
  t.same(mid.additional, [], 'additional data dropped rather than truncating (RFC 2181 §9)');
});

t.test('forwarding: refused for clients outside allowNetworks, served for those inside', async (t) => {
  const upstream = await start(t, { zones: [{ domain: 'upstream.test', ttlSeconds: 120, hosts: [] }] }, ['127.0.0.1:0']);
  const forwarding = { enabled: true, upstream: [`127.0.0.1:${upstream.v4}`], allowNetworks: ['10.0.0.0/8', 'fd00::/8'] };
  const closed = await start(t, { forwarding }, ['127.0.0.1:0']);
  const refused = await dig('127.0.0.1', closed.v4, ['SRV', '_vlmcs._tcp.upstream.test']);
  t.equal(refused.status, 'REFUSED', 'a stranger asking with RD gets REFUSED');
  t.notOk(refused.flags.includes('ra'));
  t.same(refused.answer, []);
  const own = await dig('127.0.0.1', closed.v4, ['SRV', '_vlmcs._tcp.example.test']);
  t.equal(own.status, 'NOERROR', 'own zones are still answered');

  const open = await start(t, { forwarding: { ...forwarding, allowNetworks: ['127.0.0.0/8'] } }, ['127.0.0.1:0']);
  // The client sends from 127.0.0.2: 127.0.0.1 is the upstream's own address.
  const fwd = await dig('127.0.0.1', open.v4, ['-b', '127.0.0.2', 'SRV', '_vlmcs._tcp.upstream.test']);
  t.equal(fwd.status, 'NOERROR');
  t.ok(fwd.flags.includes('ra'), 'recursion available to this client');
  t.same(
    fwd.answer.map((a) => a.slice(3)),
    [['SRV', '0', '0', '1688', 'kms01.upstream.test.']],
    'answer relayed from upstream',
  );
  const fwdTcp = await dig('127.0.0.1', open.v4, ['-b', '127.0.0.2', 'SRV', '_vlmcs._tcp.upstream.test', '+tcp']);
  t.equal(fwdTcp.answer.length, 1, 'forwarding over TCP too');
  const fromUpstream = await dig('127.0.0.1', open.v4, ['-b', '127.0.0.1', 'SRV', '_vlmcs._tcp.upstream.test']);
  t.equal(fromUpstream.status, 'REFUSED', 'queries from the upstream itself are not forwarded back (no loop)');

  const dead = await start(t, { forwarding: { enabled: true, upstream: ['127.0.0.1:9'], allowNetworks: ['127.0.0.0/8'] } }, [
    '127.0.0.1:0',
  ]);
  const fail = await dig('127.0.0.1', dead.v4, ['-b', '127.0.0.2', 'A', 'www.example.com']);
  t.equal(fail.status, 'SERVFAIL', 'an unreachable upstream gives SERVFAIL');
});

// ---- raw datagrams

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}
// _vlmcs._tcp.example.test in wire form, written out label by label.
const QNAME_EXAMPLE = Buffer.concat([
  Buffer.from([6]),
  Buffer.from('_vlmcs'),
  Buffer.from([4]),
  Buffer.from('_tcp'),
  Buffer.from([7]),
  Buffer.from('example'),
  Buffer.from([4]),
  Buffer.from('test'),
  Buffer.from([0]),
]);
const QNAME_BRANCH = Buffer.concat([
  Buffer.from([6]),
  Buffer.from('_vlmcs'),
  Buffer.from([4]),
  Buffer.from('_tcp'),
  Buffer.from([6]),
  Buffer.from('branch'),
  Buffer.from([4]),
  Buffer.from('test'),
  Buffer.from([0]),
]);
const TYPE_SRV_IN = Buffer.from('00210001', 'hex');

const PROBE_ID = 0xbeef;
const PROBE = Buffer.concat([header(PROBE_ID, 0, 1), QNAME_BRANCH, TYPE_SRV_IN]);

/**
 * Sends `datagram` and resolves with its reply, or with null when it gets none. Silence has no event
 * of its own, so a good query (the probe) follows it from the same socket: the responder answers a
 * socket's datagrams in the order they came, so when the probe's answer arrives first, the datagram
 * before it was not answered. Without `probe`, null means nothing came within the (generous) bound.
 */
async function exchangeRaw(
  port: number,
  datagram: Buffer,
  options: { bindAddress?: string; probe?: boolean } = {},
): Promise<Buffer | null> {
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((r) => s.bind(0, options.bindAddress ?? '127.0.0.1', () => r()));
    const first = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(datagram, port, '127.0.0.1');
    if (options.probe) s.send(PROBE, port, '127.0.0.1');
    const reply = await settledWithin(first, 5000, null);
    return options.probe && reply?.readUInt16BE(0) === PROBE_ID ? null : reply; // no case uses the probe's ID
  } finally {
    s.close();
  }
}

t.test('malformed datagrams are answered FORMERR or dropped, logged, and the server keeps answering', async (t) => {
  const { v4, lines } = await start(t, {}, ['127.0.0.1:0']);
  const label64 = Buffer.concat([Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0])]);
  const longName = Buffer.concat([
    ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([60]), Buffer.alloc(60, 0x62)])),
    Buffer.from([0]),
  ]);
  const cases: { what: string; bytes: Buffer; expect: number | null }[] = [
    { what: '5-byte datagram', bytes: Buffer.from('0102030405', 'hex'), expect: null },
    { what: 'empty datagram', bytes: Buffer.alloc(0), expect: null },
    { what: 'header promising a question that is missing', bytes: header(0x1111, 0x0100, 1), expect: 1 },
    { what: 'question cut inside its name', bytes: Buffer.concat([header(0x1112, 0, 1), QNAME_EXAMPLE.subarray(0, 9)]), expect: 1 },
    { what: 'question without type and class', bytes: Buffer.concat([header(0x1113, 0, 1), QNAME_EXAMPLE]), expect: 1 },
    {
      what: 'compression pointer to itself',
      bytes: Buffer.concat([header(0x1114, 0, 1), Buffer.from('c00c', 'hex'), TYPE_SRV_IN]),
      expect: 1,
    },
    {
      what: 'compression loop of two pointers',
      bytes: Buffer.concat([header(0x1115, 0, 1), Buffer.from('c00e', 'hex'), Buffer.from('c00c', 'hex'), TYPE_SRV_IN]),
      expect: 1,
    },
    {
      what: 'forward compression pointer',
      bytes: Buffer.concat([header(0x1116, 0, 1), Buffer.from('c020', 'hex'), TYPE_SRV_IN, Buffer.alloc(20)]),
      expect: 1,
    },
    { what: '64-octet label', bytes: Buffer.concat([header(0x1117, 0, 1), label64, TYPE_SRV_IN]), expect: 1 },
    { what: 'name over 255 octets', bytes: Buffer.concat([header(0x1118, 0, 1), longName, TYPE_SRV_IN]), expect: 1 },
    { what: 'reserved label type 0x40', bytes: Buffer.concat([header(0x1119, 0, 1), Buffer.from('4100', 'hex'), TYPE_SRV_IN]), expect: 1 },
    { what: 'answer count with no answers', bytes: Buffer.concat([header(0x111a, 0, 1, 3), QNAME_EXAMPLE, TYPE_SRV_IN]), expect: 1 },
    {
      what: 'trailing garbage',
      bytes: Buffer.concat([header(0x111b, 0, 1), QNAME_EXAMPLE, TYPE_SRV_IN, Buffer.from('deadbeef', 'hex')]),
      expect: 1,
    },
    {
      what: 'two questions',
      bytes: Buffer.concat([header(0x111c, 0, 2), QNAME_EXAMPLE, TYPE_SRV_IN, QNAME_EXAMPLE, TYPE_SRV_IN]),
      expect: 1,
    },
    { what: 'no question', bytes: header(0x111d, 0, 0), expect: 1 },
    {
      what: 'a response (QR=1) is never answered',
      bytes: Buffer.concat([header(0x111e, 0x8000, 1), QNAME_EXAMPLE, TYPE_SRV_IN]),
      expect: null,
    },
    { what: 'opcode NOTIFY', bytes: Buffer.concat([header(0x111f, 4 << 11, 1), QNAME_EXAMPLE, TYPE_SRV_IN]), expect: 4 },
    {
      what: 'opcode UPDATE (this responder takes none)',
      bytes: Buffer.concat([header(0x1120, 5 << 11, 1), QNAME_EXAMPLE, TYPE_SRV_IN]),
      expect: 4,
    },
    { what: 'unknown class 42', bytes: Buffer.concat([header(0x1121, 0, 1), QNAME_EXAMPLE, Buffer.from('0021002a', 'hex')]), expect: 5 },
    {
      what: 'two OPT records',
      bytes: Buffer.concat([
        header(0x1122, 0, 1, 0, 0, 2),
        QNAME_EXAMPLE,
        TYPE_SRV_IN,
        Buffer.from('0000291000000000000000', 'hex'),
        Buffer.from('0000291000000000000000', 'hex'),
      ]),
      expect: 1,
    },
  ];
  for (const c of cases) {
    const reply = await exchangeRaw(v4, c.bytes, { probe: true });
    if (c.expect === null) {
      t.equal(reply, null, `${c.what}: no reply`);
    } else {
      t.ok(reply && reply.length >= 12, `${c.what}: a reply`);
      if (!reply) continue;
      t.equal(reply.readUInt16BE(0), c.bytes.readUInt16BE(0), `${c.what}: ID echoed`);
      t.equal(reply.readUInt16BE(2) & 0x8000, 0x8000, `${c.what}: QR`);
      t.equal(reply.readUInt16BE(2) & 0xf, c.expect, `${c.what}: rcode ${c.expect}`);
    }
  }
  const good = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test']);
  t.equal(good.status, 'NOERROR', 'still serving after the garbage');
  t.equal(good.answer.length, 1);
  const malformedLogs = lines.filter((l) => l.obj.code === 'KMS_ERR_DNS_MALFORMED');
  t.ok(malformedLogs.length >= 14, 'each malformed message logged with its code');
  t.ok(
    malformedLogs.every((l) => l.level === 'warn' && typeof l.obj.reason === 'string'),
    'one warn line with a reason',
  );
});

t.test('malformed TCP frames: FORMERR on the stream, and the server keeps serving', async (t) => {
  const net = await import('node:net');
  const { v4 } = await start(t, {}, ['127.0.0.1:0']);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const s = net.connect(v4, '127.0.0.1');
    const loop = Buffer.concat([header(0x2222, 0, 1), Buffer.from('c00c', 'hex'), TYPE_SRV_IN]);
    const frame = Buffer.concat([Buffer.from([0, loop.length]), loop]);
    let got = Buffer.alloc(0);
    // Sent one byte at a time, each read by the server before the next is written: framing must
    // not depend on segment boundaries.
    s.once('connect', async () => {
      for (let i = 0; i < frame.length && !s.destroyed; i++) {
        s.write(frame.subarray(i, i + 1));
        await afterPoll();
      }
    });
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        s.destroy();
        resolve(got.subarray(2));
      }
    });
    s.on('error', reject);
  });
  t.equal(reply.readUInt16BE(0), 0x2222);
  t.equal(reply.readUInt16BE(2) & 0xf, 1, 'FORMERR');
  const good = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test', '+tcp']);
  t.equal(good.status, 'NOERROR');
});

t.test('rate limiting: a flood from one address is cut to the burst, other clients are still answered', async (t) => {
  const { h, v4, lines } = await start(t, { rateLimit: { responsesPerSecond: 5, burst: 10, slip: 0 } }, ['127.0.0.1:0']);
  const query = Buffer.concat([header(0x3333, 0, 1), QNAME_EXAMPLE, TYPE_SRV_IN]);
  const FLOOD = 60;
  const s = dgram.createSocket('udp4');
  t.teardown(() => s.close());
  let replies = 0;
  s.on('message', () => replies++);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  for (let i = 0; i < FLOOD; i++) s.send(query, v4, '127.0.0.1');
  // Every datagram of the flood is either answered or dropped, and the server counts which: the
  // wait ends once all are counted and every answer the server sent has arrived.
  const sent = (): number => Object.values(h.stats().responsesByRcode).reduce((a, b) => a + b, 0);
  await until(() => sent() + h.stats().rateLimited + h.stats().udpDropped >= FLOOD && replies >= sent(), 'the whole flood handled', {
    on: [{ emitter: s, events: ['message'] }],
    everyMs: 5,
  });
  t.ok(replies >= 10, `at least the burst is answered (${replies})`);
  t.ok(replies <= 10 + 5, `no more than burst + rate × time (${replies} of ${FLOOD})`);
  t.ok(
    lines.some((l) => l.obj.code === 'KMS_ERR_DNS_RATE_LIMITED'),
    'logged',
  );
  const other = await exchangeRaw(v4, query, { bindAddress: '127.0.0.2' });
  t.ok(other, 'another address is answered');
  t.equal(other!.readUInt16BE(2) & 0xf, 0);
  const tcp = await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test', '+tcp']);
  t.equal(tcp.status, 'NOERROR', 'TCP from the flooding address is slowed down to the rate, and answered');
});

t.test('a port that is taken is reported as KMS_ERR_DNS_LISTEN', async (t) => {
  const { v4 } = await start(t, {}, ['127.0.0.1:0']);
  const { log } = captureLog();
  await t.rejects(startDnsServer(dnsConfig(), { kmsPort: 1688, hostName: 'x', addresses: () => [], log }, [`127.0.0.1:${v4}`]), {
    code: 'KMS_ERR_DNS_LISTEN',
  });
});

t.test("an independent parser (dns2's) reads the answers as we mean them, over UDP and TCP", async (t) => {
  const net = await import('node:net');
  const { v4 } = await start(t, {}, ['127.0.0.1:0']);
  const query = Buffer.concat([header(0x4242, 0x0100, 1), QNAME_BRANCH, TYPE_SRV_IN]);
  const viaUdp = await exchangeRaw(v4, query);
  const viaTcp = await new Promise<Buffer>((resolve, reject) => {
    const s = net.connect(v4, '127.0.0.1', () => s.end(Buffer.concat([Buffer.from([0, query.length]), query])));
    let got = Buffer.alloc(0);
    s.on('data', (d) => (got = Buffer.concat([got, d])));
    s.on('end', () => resolve(got.subarray(2)));
    s.on('error', reject);
  });
  for (const [what, reply] of [
    ['UDP', viaUdp],
    ['TCP', viaTcp],
  ] as const) {
    t.ok(reply, `${what}: answered`);
    const p = DNS.Packet.parse(reply!);
    t.equal(p.header.id, 0x4242, `${what}: ID`);
    t.equal(p.header.aa, 1, `${what}: authoritative`);
    const srv = p.answers
      .map((a) => a as unknown as { priority: number; weight: number; port: number; target: string })
      .map((a) => `${a.priority} ${a.weight} ${a.port} ${a.target}`)
      .sort();
    t.same(srv, ['0 40 11688 kms-b.branch.test', '0 60 1688 kms-a.branch.test', '10 0 1688 kms-c.elsewhere.test'], `${what}: SRV set`);
  }
});

t.test('stats() counts replies by rcode, refusals and malformed messages as they happen', async (t) => {
  const { h, v4 } = await start(t, {}, ['127.0.0.1:0']);
  t.same(h.stats().responsesByRcode, {}, 'nothing yet');
  await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test']);
  await dig('127.0.0.1', v4, ['A', 'nothere.example.test']);
  await dig('127.0.0.1', v4, ['A', 'www.elsewhere.invalid']);
  await exchangeRaw(v4, Buffer.concat([header(0x5151, 0, 2), QNAME_EXAMPLE, TYPE_SRV_IN, QNAME_EXAMPLE, TYPE_SRV_IN]));
  await dig('127.0.0.1', v4, ['SRV', '_vlmcs._tcp.example.test', '+tcp']);
  const s = h.stats();
  t.same(s.responsesByRcode, { NOERROR: 2, NXDOMAIN: 1, REFUSED: 1, FORMERR: 1 });
  t.equal(s.refused, 1);
  t.equal(s.malformed, 1);
  t.equal(s.rateLimited, 0);
  // dig has the answer before the server sees its close: wait for the server's own count.
  await until(() => h.stats().tcpOpen === 0, 'the server seeing the TCP connection closed', { everyMs: 5 });
  t.equal(h.stats().tcpOpen, 0, 'the TCP connection is closed again');
  s.responsesByRcode.NOERROR = 99;
  t.equal(h.stats().responsesByRcode.NOERROR, 2, 'a snapshot, not the live counters');
});
