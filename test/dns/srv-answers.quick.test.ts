import t from 'tap';
import { buildDnsAnswer, selfTargetIn } from '../../src/dns/srv-answers';
import { RCODE, RR_CLASS, RR_TYPE } from '../../src/protocol/dns/message';
import type { DnsZoneConfig } from '../../src/config/defaults';

const ZONES: DnsZoneConfig[] = [
  { domain: 'corp.example', ttlSeconds: 600, hosts: [] },
  {
    domain: 'branch.corp.example',
    ttlSeconds: 300,
    hosts: [
      { target: 'kms1.branch.corp.example', port: 1688, priority: 0, weight: 10, addresses: ['192.0.2.1'] },
      { target: 'kms2.branch.corp.example', port: 1689, priority: 5, weight: 0, addresses: [] },
    ],
  },
];
const OPTS = { kmsPort: 11688, hostName: 'appliance.lan', addresses: ['192.0.2.50', '2001:db8::50'], serial: 42 };
const q = (name: string, type: number, klass: number = RR_CLASS.IN) => ({ name, type, class: klass });

t.test('a zone without hosts publishes this appliance with its actual KMS port (C35)', async (t) => {
  const a = buildDnsAnswer(ZONES, q('_vlmcs._tcp.corp.example', RR_TYPE.SRV), OPTS);
  t.equal(a.rcode, RCODE.NOERROR);
  t.equal(a.authoritative, true);
  t.same(
    a.answers.map((r) => r.data),
    [{ kind: 'srv', priority: 0, weight: 0, port: 11688, target: 'appliance.corp.example' }],
  );
  t.same(
    a.additionals.map((r) => [r.name, r.data]),
    [
      ['appliance.corp.example', { kind: 'a', address: '192.0.2.50' }],
      ['appliance.corp.example', { kind: 'aaaa', address: '2001:db8::50' }],
    ],
  );
  t.equal(a.answers[0]!.ttl, 600);
});

t.test("the most specific zone wins; hosts without addresses get the appliance's", async (t) => {
  const a = buildDnsAnswer(ZONES, q('_vlmcs._tcp.branch.corp.example', RR_TYPE.SRV), OPTS);
  t.same(
    a.answers.map((r) => r.data),
    [
      { kind: 'srv', priority: 0, weight: 10, port: 1688, target: 'kms1.branch.corp.example' },
      { kind: 'srv', priority: 5, weight: 0, port: 1689, target: 'kms2.branch.corp.example' },
    ],
  );
  t.same(
    a.additionals.map((r) => `${r.name} ${r.data.kind === 'a' || r.data.kind === 'aaaa' ? r.data.address : ''}`),
    ['kms1.branch.corp.example 192.0.2.1', 'kms2.branch.corp.example 192.0.2.50', 'kms2.branch.corp.example 2001:db8::50'],
  );
  t.equal(a.answers[0]!.ttl, 300);
});

t.test('negative answers carry the SOA; REFUSED outside the zones', async (t) => {
  const nx = buildDnsAnswer(ZONES, q('nothing.corp.example', RR_TYPE.A), OPTS);
  t.equal(nx.rcode, RCODE.NXDOMAIN);
  t.same(nx.answers, []);
  t.equal(nx.authorities[0]!.type, RR_TYPE.SOA);
  t.match(nx.authorities[0]!.data, {
    kind: 'soa',
    serial: 42,
    minimum: 600,
    mname: 'appliance.corp.example',
    rname: 'hostmaster.corp.example',
  });
  const nodata = buildDnsAnswer(ZONES, q('_vlmcs._tcp.corp.example', RR_TYPE.A), OPTS);
  t.equal(nodata.rcode, RCODE.NOERROR);
  t.same(nodata.answers, []);
  t.equal(nodata.authorities.length, 1);
  const ent = buildDnsAnswer(ZONES, q('_tcp.corp.example', RR_TYPE.SRV), OPTS);
  t.equal(ent.rcode, RCODE.NOERROR, 'empty non-terminal');
  const out = buildDnsAnswer(ZONES, q('www.example.com', RR_TYPE.A), OPTS);
  t.equal(out.rcode, RCODE.REFUSED);
  t.equal(out.authoritative, false);
  t.equal(buildDnsAnswer(ZONES, q('_vlmcs._tcp.corp.example', RR_TYPE.SRV, RR_CLASS.CH), OPTS).rcode, RCODE.REFUSED, 'class CH');
  t.equal(buildDnsAnswer(ZONES, q('corp.example', RR_TYPE.AXFR), OPTS).rcode, RCODE.REFUSED, 'no zone transfers');
  t.equal(buildDnsAnswer(ZONES, q('notcorp.example', RR_TYPE.A), OPTS).rcode, RCODE.REFUSED, 'suffix match is by label');
});

t.test('apex SOA and NS, ANY, case-insensitive match echoing the asked spelling', async (t) => {
  const any = buildDnsAnswer(ZONES, q('CORP.example', RR_TYPE.ANY), OPTS);
  t.same(
    any.answers.map((r) => [r.name, r.type]),
    [
      ['CORP.example', RR_TYPE.SOA],
      ['CORP.example', RR_TYPE.NS],
    ],
  );
  t.same(
    any.additionals.map((r) => r.type),
    [RR_TYPE.A, RR_TYPE.AAAA],
    'NS target addresses',
  );
  const aaaa = buildDnsAnswer(ZONES, q('Appliance.corp.example', RR_TYPE.AAAA), OPTS);
  t.same(
    aaaa.answers.map((r) => r.data),
    [{ kind: 'aaaa', address: '2001:db8::50' }],
  );
});

t.test('selfTargetIn keeps a name inside the zone and qualifies a short one', async (t) => {
  t.equal(selfTargetIn('corp.example', 'kms.corp.example'), 'kms.corp.example');
  t.equal(selfTargetIn('corp.example', 'KMS'), 'kms.corp.example');
  t.equal(selfTargetIn('corp.example', 'kms.other.example'), 'kms.corp.example');
  t.equal(selfTargetIn('corp.example', ''), 'kms.corp.example');
});
