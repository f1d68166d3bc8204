// mDNS against hostile hosts on the link, on loopback only: the responder binds 127.0.0.1 with
// multicast off, its "multicast" replies go to a local listener, and full mDNS queriers send from
// port 5353 of other loopback addresses. The responder's clock is frozen, so rate limits are
// counted exactly and no test depends on how fast the machine is.
import t, { type Test } from 'tap';
import { startMdns, MDNS_SERVICE } from '../../src/dns/mdns';
import {
  encodeMessage,
  EMPTY_HEADER,
  RR_TYPE,
  RR_CLASS,
  type DecodedMessage,
  type DnsRecord as ResourceRecord,
} from '../../src/protocol/dns/message';
import { freePort } from './named';
import { afterPoll } from '../wait';
import { captureLog, listener, type Listener } from './mdns-listener';

const HOST = 'kms01.local';
const INSTANCE = 'Branch\\032KMS._vlmcs._tcp.local';
const QU = 0x8001;

// Hostile peers may answer late: a wait for a datagram lasts 3 s here.
const listenerOf = (t: Test, address?: string, port?: number) => listener(t, address, port, 3000);

function query(
  questions: { name: string; type: number; klass?: number }[],
  extra: { answers?: ResourceRecord[]; authorities?: ResourceRecord[]; id?: number } = {},
): Buffer {
  return encodeMessage({
    header: { ...EMPTY_HEADER, id: extra.id ?? 0 },
    questions: questions.map((q) => ({ name: q.name, type: q.type, class: q.klass ?? RR_CLASS.IN })),
    answers: extra.answers ?? [],
    authorities: extra.authorities ?? [],
    additionals: [],
  });
}

const aRecord = (address: string, ttl = 120): ResourceRecord => ({
  name: HOST,
  type: RR_TYPE.A,
  class: RR_CLASS.IN,
  ttl,
  data: { kind: 'a', address },
});

interface Rig {
  readonly port: number;
  /** Where the responder's multicast replies arrive. */
  readonly link: Listener;
  readonly lines: ReturnType<typeof captureLog>['lines'];
  clock: number;
}

async function rig(t: Test): Promise<Rig> {
  const port = await freePort();
  const link = (await listenerOf(t))!;
  const { log, lines } = captureLog();
  const r: Rig = { port, link, lines, clock: 1_000_000 };
  const h = startMdns(
    { enabled: true, instanceName: 'Branch KMS' },
    { kmsPort: 1688, hostName: 'kms01.corp.example', addresses: () => ['127.0.0.1'], log },
    {
      socket: { multicast: false, port, ip: '127.0.0.1', interface: '127.0.0.1' },
      announceTo: { address: '127.0.0.1', port: link.port },
      announceDelaysMs: [],
      now: () => r.clock,
    },
  );
  t.teardown(() => h.stop());
  t.equal(await h.ready, true, 'the responder is up');
  return r;
}

/** A full mDNS querier: source port 5353, on its own loopback address. */
async function mdnsPeer(t: Test, address: string): Promise<Listener | undefined> {
  const peer = await listenerOf(t, address, 5353);
  if (!peer) t.comment(`cannot bind ${address}:5353 here: skipped`);
  return peer;
}

const has = (m: DecodedMessage | undefined, type: number, name: string): boolean =>
  (m?.answers ?? []).some((a) => a.type === type && a.name.toLowerCase() === name.toLowerCase());

t.test('one querier asking for one record cannot silence the answers about the others', async (t) => {
  const r = await rig(t);
  const peer = await mdnsPeer(t, '127.0.0.3');
  if (!peer) return;
  const first = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  t.ok(has(await first, RR_TYPE.A, HOST), 'the address question is answered by multicast');
  // Same instant: the A record may not be multicast again, but the PTR never was.
  const second = r.link.next();
  peer.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR }]), r.port, '127.0.0.1');
  const reply = await second;
  t.ok(has(reply, RR_TYPE.PTR, MDNS_SERVICE), 'the service question is answered too');
  t.notOk(
    [...(reply?.answers ?? []), ...(reply?.additionals ?? [])].some((a) => a.type === RR_TYPE.A),
    'without the A record multicast a moment ago',
  );
  // The A question again within the second: silence. The next reply on the link is the one to a
  // question nothing was multicast for yet (the service enumeration).
  const third = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  peer.socket.send(query([{ name: '_services._dns-sd._udp.local', type: RR_TYPE.PTR }]), r.port, '127.0.0.1');
  t.ok(has(await third, RR_TYPE.PTR, '_services._dns-sd._udp.local'), 'a record is multicast at most once a second');
  r.clock += 1000;
  const fourth = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  t.ok(has(await fourth, RR_TYPE.A, HOST), 'and again a second later');
});

t.test('a probe for our host name is answered even right after an answer (RFC 6762 §8.1), at most every 250 ms', async (t) => {
  const r = await rig(t);
  const peer = await mdnsPeer(t, '127.0.0.4');
  if (!peer) return;
  const first = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  t.ok(has(await first, RR_TYPE.A, HOST), 'answered');
  r.clock += 300;
  const probe = query([{ name: HOST, type: RR_TYPE.ANY }], { authorities: [aRecord('127.0.0.4')] });
  const defended = r.link.next();
  peer.socket.send(probe, r.port, '127.0.0.1');
  const d = await defended;
  t.ok(has(d, RR_TYPE.A, HOST), 'the probe is answered with our address 300 ms later: the name is defended');
  t.same(
    d?.answers.filter((a) => a.type === RR_TYPE.A).map((a) => a.data),
    [{ kind: 'a', address: '127.0.0.1' }],
    'our own address, not the prober’s',
  );
  // A flood of probes does not become a flood of multicast: the same instant, nothing more.
  const after = r.link.next();
  for (let i = 0; i < 20; i++) peer.socket.send(probe, r.port, '127.0.0.1');
  peer.socket.send(query([{ name: '_services._dns-sd._udp.local', type: RR_TYPE.PTR }]), r.port, '127.0.0.1');
  t.ok(has(await after, RR_TYPE.PTR, '_services._dns-sd._udp.local'), 'repeated probes within 250 ms are not answered again');
});

t.test('answers the querier already holds are not sent again (known-answer suppression, RFC 6762 §7.1)', async (t) => {
  const r = await rig(t);
  const peer = await mdnsPeer(t, '127.0.0.5');
  if (!peer) return;
  const ptr = (ttl: number): ResourceRecord => ({
    name: MDNS_SERVICE,
    type: RR_TYPE.PTR,
    class: RR_CLASS.IN,
    ttl,
    data: { kind: 'name', target: INSTANCE },
  });
  const next = r.link.next();
  peer.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR }], { answers: [ptr(4500)] }), r.port, '127.0.0.1');
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  const first = await next;
  t.notOk(has(first, RR_TYPE.PTR, MDNS_SERVICE), 'the PTR the querier holds with its full TTL is not multicast');
  t.ok(has(first, RR_TYPE.A, HOST), '(the next question is the first answered)');
  const stale = r.link.next();
  peer.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR }], { answers: [ptr(100)] }), r.port, '127.0.0.1');
  t.ok(has(await stale, RR_TYPE.PTR, MDNS_SERVICE), 'one held with less than half its TTL left is refreshed');
});

t.test('QU queries from many spoofed local addresses are not reflected without bound', async (t) => {
  const r = await rig(t);
  const sources: Listener[] = [];
  for (let i = 10; i < 50; i++) {
    const s = await listenerOf(t, `127.0.0.${i}`);
    if (s) sources.push(s);
  }
  t.ok(sources.length >= 30, `${sources.length} source addresses`);
  const qu = query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass: QU }]);
  // Paced, one address's burst per poll: the kernel's receive buffer would drop most of a single burst.
  for (const s of sources) {
    for (let k = 0; k < 20; k++) s.socket.send(qu, r.port, '127.0.0.1');
    await afterPoll();
  }
  // The end of the flood: a multicast question after it, answered on the link once all of the
  // flood was read (one socket, read in order), then one more poll to read the replies.
  const peer = await mdnsPeer(t, '127.0.0.6');
  if (!peer) return;
  const good = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  t.ok(has(await good, RR_TYPE.A, HOST), 'a multicast querier is still answered during the flood');
  await afterPoll();
  const replies = sources.reduce((n, s) => n + s.got.length, 0);
  t.ok(replies > 0, `some QU queries are answered (${replies})`);
  t.ok(replies <= 100, `the unicast replies are bounded in all, not per address (${replies} for ${sources.length * 20} queries)`);
});

t.test('another host claiming our names is logged once; we keep our records', async (t) => {
  const r = await rig(t);
  const peer = await mdnsPeer(t, '127.0.0.7');
  if (!peer) return;
  const claim = encodeMessage({
    header: { ...EMPTY_HEADER, qr: true, aa: true },
    questions: [],
    answers: [aRecord('127.0.0.7')],
    authorities: [],
    additionals: [],
  });
  for (let i = 0; i < 50; i++) peer.socket.send(claim, r.port, '127.0.0.1');
  // Our own record sent back (as the multicast loop does) is no conflict.
  const ours = encodeMessage({
    header: { ...EMPTY_HEADER, qr: true, aa: true },
    questions: [],
    answers: [aRecord('127.0.0.1')],
    authorities: [],
    additionals: [],
  });
  peer.socket.send(ours, r.port, '127.0.0.1');
  const next = r.link.next();
  peer.socket.send(query([{ name: HOST, type: RR_TYPE.A }]), r.port, '127.0.0.1');
  const answer = await next;
  t.same(
    answer?.answers.filter((a) => a.type === RR_TYPE.A).map((a) => a.data),
    [{ kind: 'a', address: '127.0.0.1' }],
    'we still answer with our own address',
  );
  const warnings = r.lines.filter((l) => l.obj.code === 'KMS_ERR_MDNS_CONFLICT');
  t.equal(warnings.length, 1, 'one warning for fifty conflicting packets');
  t.equal(warnings[0]?.level, 'warn');
  t.match(warnings[0]?.msg ?? '', /127\.0\.0\.7.*kms01\.local.*instanceName/, 'naming the other host, the name and the fix');
});

t.test('questions of another class than IN are not answered with IN records, nor echoed', async (t) => {
  const r = await rig(t);
  const client = (await listenerOf(t, '127.0.0.8'))!;
  const CH = 3;
  const HS = 4;
  const next = client.next();
  // A legacy query whose questions repeat our service under every class but IN.
  const classes = Array.from({ length: 300 }, (_, i) => i + 2).filter((c) => c !== 255);
  client.socket.send(
    query(
      classes.map((klass) => ({ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass })),
      { id: 1 },
    ),
    r.port,
    '127.0.0.1',
  );
  client.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass: CH }], { id: 2 }), r.port, '127.0.0.1');
  client.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass: HS }], { id: 3 }), r.port, '127.0.0.1');
  client.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass: RR_CLASS.ANY }], { id: 4 }), r.port, '127.0.0.1');
  const first = await next;
  t.equal(first?.header.id, 4, 'the first query answered is the one of class ANY');
  t.equal(first?.questions.length, 1, 'echoing its one question');
  const qu = client.next();
  client.socket.send(query([{ name: MDNS_SERVICE, type: RR_TYPE.PTR, klass: 0x8000 | 255 }], { id: 5 }), r.port, '127.0.0.1');
  t.equal((await qu)?.header.id, 5, 'ANY with the unicast-response bit is answered too');
});
