// The responder without sockets: bytes in, bytes out. The answer cache (the common query answered
// from bytes encoded once) must give exactly what the full decode/encode path gives.
import t from 'tap';
import { createDnsResponder, type DnsClient, type DnsResponder, type ResponderEvent } from '../../src/dns/dns-responder';
import { DEFAULTS, type DnsZoneConfig } from '../../src/config/defaults';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE, type DnsRecord } from '../../src/protocol/dns/message';
import { bytes, hex } from '../bytes';

const ZONES: DnsZoneConfig[] = [
  { domain: 'example.test', ttlSeconds: 300, hosts: [] },
  {
    domain: 'branch.test',
    ttlSeconds: 900,
    hosts: [
      { target: 'kms-a.branch.test', port: 1688, priority: 0, weight: 60, addresses: ['192.0.2.10'] },
      { target: 'kms-b.branch.test', port: 11688, priority: 0, weight: 40, addresses: ['192.0.2.11', '2001:db8::11'] },
    ],
  },
  {
    domain: 'big.test',
    ttlSeconds: 60,
    hosts: Array.from({ length: 40 }, (_, i) => ({
      target: `kms-${i}.big.test`,
      port: 1688,
      priority: 0,
      weight: 0,
      addresses: [`192.0.2.${i + 1}`],
    })),
  },
];

const UDP: DnsClient = { address: '192.0.2.200', port: 5353, transport: 'udp' };
const TCP: DnsClient = { address: '192.0.2.200', port: 5353, transport: 'tcp' };

function responder(
  opts: { cache?: boolean; addresses?: () => string[]; now?: () => number; events?: ResponderEvent[] } = {},
): DnsResponder {
  const settings = { ...DEFAULTS.dns, zones: ZONES };
  const context = {
    kmsPort: 1688,
    hostName: 'kms01',
    addresses: opts.addresses ?? (() => ['198.51.100.1']),
    log: { info() {}, warn() {}, error() {}, debug() {} },
  };
  return createDnsResponder(settings, context, {
    serial: 2026,
    answerCache: opts.cache ?? true,
    ...(opts.now ? { nowMs: opts.now } : {}),
    onEvent: (e) => opts.events?.push(e),
  });
}

function q(id: number, name: string, type: number, o: { rd?: boolean; cd?: boolean; udp?: number; klass?: number } = {}): Buffer {
  const additionals: DnsRecord[] =
    o.udp === undefined ? [] : [{ name: '', type: RR_TYPE.OPT, class: o.udp, ttl: 0, data: { kind: 'raw', bytes: Buffer.alloc(0) } }];
  return encodeMessage({
    header: { ...EMPTY_HEADER, id, rd: o.rd ?? false, cd: o.cd ?? false },
    questions: [{ name, type, class: o.klass ?? RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals,
  });
}

const sync = (r: Buffer | null | Promise<Buffer | null>): Buffer | null => {
  if (r instanceof Promise) throw new Error('a zone answer must not wait');
  return r;
};

t.test('a hand-written SRV query gets the exact bytes RFC 1035 and RFC 2782 call for', async (t) => {
  const query = bytes(`
    beef 0100 0001 0000 0000 0000                                  # ID, RD, one question
    06 5f766c6d6373 04 5f746370 07 6578616d706c65 04 74657374 00   # _vlmcs._tcp.example.test
    0021 0001                                                      # SRV IN
  `);
  const reply = sync(responder()(query, UDP))!;
  const expected = hex(`
    beef 8500 0001 0001 0000 0001                  # QR AA RD, NOERROR; 1 answer, 1 additional
    06 5f766c6d6373 04 5f746370 07 6578616d706c65 04 74657374 00 0021 0001
    c00c 0021 0001 0000012c 001a 0000 0000 0698    # owner → question, TTL 300, RDLENGTH 26, prio 0, weight 0, port 1688
    05 6b6d733031 07 6578616d706c65 04 74657374 00 # kms01.example.test, never compressed
    c03c 0001 0001 0000012c 0004 c6336401          # kms01.example.test (pointer to the SRV target at 60) A 198.51.100.1
  `);
  t.equal(reply.toString('hex'), expected);
});

t.test('the cached answer equals the full path for every shape of the common query', async (t) => {
  const cached = responder();
  const full = responder({ cache: false });
  const names = [
    '_vlmcs._tcp.example.test',
    '_VLMCS._TCP.Example.TEST',
    '_vlmcs._tcp.branch.test',
    'kms-b.branch.test',
    'branch.test',
    'nothere.branch.test',
    '_vlmcs._tcp.big.test',
    'outside.invalid',
  ];
  const types = [RR_TYPE.SRV, RR_TYPE.A, RR_TYPE.AAAA, RR_TYPE.SOA, RR_TYPE.NS, RR_TYPE.ANY, RR_TYPE.TXT];
  let compared = 0;
  let id = 1;
  for (const name of names) {
    for (const type of types) {
      for (const o of [{}, { rd: true }, { cd: true, udp: 1232 }, { udp: 512 }, { udp: 4096, rd: true }, { klass: RR_CLASS.CH }]) {
        for (const client of [UDP, TCP]) {
          const query = q(id++ & 0xffff, name, type, o);
          // Twice through the cache: the second answer is the patched one.
          sync(cached(q(0x7777, name.toLowerCase(), type, o), client));
          const a = sync(cached(query, client));
          const b = sync(full(query, client));
          if (!a || !b || !a.equals(b)) {
            t.fail(`${name} type ${type} ${JSON.stringify(o)} ${client.transport}: ${a?.toString('hex')} != ${b?.toString('hex')}`);
            return;
          }
          compared++;
        }
      }
    }
  }
  t.ok(compared > 600, `${compared} answers identical byte for byte`);
});

t.test('only the ID, RD/CD and the question casing change between cached answers', async (t) => {
  const r = responder();
  const a = sync(r(q(0x0001, '_vlmcs._tcp.branch.test', RR_TYPE.SRV, { udp: 1232 }), UDP))!;
  const b = sync(r(q(0xabcd, '_VLMCS._tcp.Branch.test', RR_TYPE.SRV, { udp: 1232, rd: true, cd: true }), UDP))!;
  const m = decodeMessage(b);
  t.equal(m.header.id, 0xabcd);
  t.ok(m.header.rd && m.header.cd && m.header.aa && m.header.qr);
  t.equal(m.questions[0]!.name, '_VLMCS._tcp.Branch.test', "the client's spelling is echoed");
  t.equal(m.answers[0]!.name, '_VLMCS._tcp.Branch.test', 'owner names point at the question');
  t.equal(a.length, b.length);
  t.equal(decodeMessage(a).questions[0]!.name, '_vlmcs._tcp.branch.test', 'the first answer was not changed by the second');
});

t.test('UDP answers respect the size the client offers; TCP answers are whole', async (t) => {
  const r = responder();
  const small = decodeMessage(sync(r(q(1, '_vlmcs._tcp.big.test', RR_TYPE.SRV), UDP))!);
  t.ok(small.header.tc, '40 SRV records do not fit 512 bytes: TC');
  t.equal(small.answers.length, 0);
  const big = sync(r(q(2, '_vlmcs._tcp.big.test', RR_TYPE.SRV, { udp: 4096 }), UDP))!;
  t.ok(big.length <= 1232, `never more than 1232 bytes over UDP (${big.length})`);
  const tcp = decodeMessage(sync(r(q(3, '_vlmcs._tcp.big.test', RR_TYPE.SRV), TCP))!);
  t.equal(tcp.answers.length, 40);
  t.equal(tcp.additionals.length, 40);
});

t.test('new machine addresses reach the answers (the cache is dropped when they change)', async (t) => {
  let addrs = ['198.51.100.1'];
  let now = 1_000_000;
  const r = responder({ addresses: () => addrs, now: () => now });
  const aOf = (b: Buffer | null): string[] => decodeMessage(b!).answers.map((x) => (x.data.kind === 'a' ? x.data.address : '?'));
  t.same(aOf(sync(r(q(1, 'kms01.example.test', RR_TYPE.A), UDP))), ['198.51.100.1']);
  addrs = ['198.51.100.2'];
  now += 1500;
  t.same(aOf(sync(r(q(2, 'kms01.example.test', RR_TYPE.A), UDP))), ['198.51.100.2']);
});

t.test('the cache starts over when full and still answers as the full path does', async (t) => {
  const r = responder();
  const full = responder({ cache: false });
  // More distinct names than the cache holds (4096), then names seen before the restart again.
  for (let i = 0; i < 10_000; i++) sync(r(q(i, `n${i}.example.test`, RR_TYPE.A), UDP));
  for (const [id, name, type] of [
    [1, 'n1.example.test', RR_TYPE.A],
    [2, 'n9999.example.test', RR_TYPE.A],
    [3, '_vlmcs._tcp.branch.test', RR_TYPE.SRV],
    [4, 'kms01.example.test', RR_TYPE.A],
  ] as const) {
    const query = q(id, name, type);
    t.equal(sync(r(query, UDP))!.toString('hex'), sync(full(query, UDP))!.toString('hex'), name);
  }
});

t.test('silence, FORMERR and events for what is not a plain query', async (t) => {
  const events: ResponderEvent[] = [];
  const r = responder({ events });
  t.equal(sync(r(Buffer.from('0102', 'hex'), UDP)), null, 'shorter than a header: silence');
  const response = q(9, 'example.test', RR_TYPE.A);
  response[2] = response[2]! | 0x80;
  t.equal(sync(r(response, UDP)), null, 'a response: silence');
  const trailing = Buffer.concat([q(10, 'example.test', RR_TYPE.A), Buffer.from([0])]);
  t.equal(sync(r(trailing, UDP))![3]! & 0xf, 1, 'a trailing byte: FORMERR');
  const badvers = q(11, 'example.test', RR_TYPE.A, { udp: 1232 });
  badvers[badvers.length - 5] = 1; // EDNS version 1
  const bv = decodeMessage(sync(r(badvers, UDP))!);
  t.equal(bv.additionals[0]!.ttl >>> 24, 1, 'EDNS version 1: BADVERS in the OPT');
  sync(r(q(12, 'www.outside.invalid', RR_TYPE.A), UDP));
  sync(r(q(13, 'www.outside.invalid', RR_TYPE.A), UDP));
  t.same(
    events.map((e) => e.code),
    ['KMS_ERR_DNS_MALFORMED', 'KMS_ERR_DNS_MALFORMED', 'KMS_ERR_DNS_MALFORMED', 'KMS_ERR_DNS_REFUSED', 'KMS_ERR_DNS_REFUSED'],
    'cached refusals are still reported',
  );
});
