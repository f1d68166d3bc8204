// mDNS on loopback only: the responder binds 127.0.0.1 with multicast off, announcements go to
// a local listener, and nothing is sent to the real multicast group.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import { startMdns, MDNS_SERVICE, buildMdnsRecords, mdnsNames, answerMdnsQuestion } from '../../src/dns/mdns';
import { encodeMessage, EMPTY_HEADER, RR_TYPE, RR_CLASS } from '../../src/protocol/dns/message';
import { freePort } from './named';
import { afterPoll } from '../wait';
import { captureLog, listener, type Listener } from './mdns-listener';

/** These tests bind 127.0.0.x, which loopback always has. */
async function listenOn(t: Test, address?: string): Promise<Listener> {
  return (await listener(t, address))!;
}

t.test('answers a PTR query for _vlmcs._tcp.local with SRV, TXT and A/AAAA; announces and says goodbye', async (t) => {
  const port = await freePort();
  const announcements = await listenOn(t);
  const { log, lines } = captureLog();
  const firstAnnouncement = announcements.next();
  const h = startMdns(
    { enabled: true, instanceName: 'Branch KMS' },
    { kmsPort: 1688, hostName: 'kms01.corp.example', addresses: () => ['127.0.0.1', '::1'], log },
    {
      socket: { multicast: false, port, ip: '127.0.0.1', interface: '127.0.0.1' },
      announceTo: { address: '127.0.0.1', port: announcements.port },
      announceDelaysMs: [0],
    },
  );
  t.teardown(() => h.stop());
  t.equal(await h.ready, true, 'bound');
  const info = lines.find((l) => l.level === 'info');
  t.match(info?.msg, /Windows clients do not use mDNS/, 'the log line says who mDNS is for');

  const ann = await firstAnnouncement;
  t.ok(ann, 'an announcement arrived');
  t.equal(ann!.header.qr, true);
  t.equal(ann!.header.aa, true);
  t.ok(
    ann!.answers.some((r) => r.type === RR_TYPE.PTR && r.name === MDNS_SERVICE),
    'announcement carries the PTR',
  );

  const client = await listenOn(t);
  const query = encodeMessage({
    header: { ...EMPTY_HEADER, id: 0x4d44 },
    questions: [{ name: MDNS_SERVICE, type: RR_TYPE.PTR, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  const reply = client.next();
  client.socket.send(query, port, '127.0.0.1');
  const r = await reply;
  t.ok(r, 'a unicast reply to a legacy querier');
  t.equal(r!.header.id, 0x4d44, 'ID echoed (RFC 6762 §6.7)');
  t.same(
    r!.questions.map((q) => q.name),
    [MDNS_SERVICE],
    'question echoed',
  );
  t.same(
    r!.answers.map((a) => [a.name, a.type, a.data]),
    [[MDNS_SERVICE, RR_TYPE.PTR, { kind: 'name', target: 'Branch\\032KMS._vlmcs._tcp.local' }]],
  );
  const byType = new Map(r!.additionals.map((a) => [a.type, a]));
  t.same(byType.get(RR_TYPE.SRV)?.data, { kind: 'srv', priority: 0, weight: 0, port: 1688, target: 'kms01.local' });
  t.same((byType.get(RR_TYPE.TXT)!.data as unknown as { strings: Buffer[] }).strings.map(String), ['txtvers=1', 'port=1688']);
  t.same(byType.get(RR_TYPE.A)?.data, { kind: 'a', address: '127.0.0.1' });
  t.same(byType.get(RR_TYPE.AAAA)?.data, { kind: 'aaaa', address: '::1' });
  t.ok(
    [...r!.answers, ...r!.additionals].every((a) => a.ttl <= 10),
    'legacy unicast TTLs are at most 10 s',
  );

  // Silence has no event: the query it knows follows the one it does not, from the same socket, and
  // the responder answers a socket's queries in the order they came, so the first reply tells.
  const first = client.next();
  client.socket.send(
    encodeMessage({
      header: { ...EMPTY_HEADER, id: 7 },
      questions: [{ name: '_http._tcp.local', type: RR_TYPE.PTR, class: RR_CLASS.IN }],
      answers: [],
      authorities: [],
      additionals: [],
    }),
    port,
    '127.0.0.1',
  );
  client.socket.send(query, port, '127.0.0.1');
  t.equal((await first)?.header.id, 0x4d44, 'silent for services it does not offer (the next query is the first answered)');

  const goodbye = announcements.next();
  await h.stop();
  const bye = await goodbye;
  t.ok(bye, 'a goodbye was sent');
  t.ok(bye!.answers.length >= 4 && bye!.answers.every((a) => a.ttl === 0), 'every record withdrawn with TTL 0');
});

t.test('a port already bound without reuse is reported, not thrown', async (t) => {
  const blocker = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  await new Promise<void>((r) => blocker.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => blocker.close());
  const { log, lines } = captureLog();
  const h = startMdns(
    { enabled: true, instanceName: '' },
    { kmsPort: 1688, hostName: 'x', addresses: () => [], log },
    { socket: { multicast: false, port: blocker.address().port, ip: '127.0.0.1', interface: '127.0.0.1' } },
  );
  t.equal(await h.ready, false);
  t.ok(lines.some((l) => l.obj.code === 'KMS_ERR_DNS_LISTEN'));
  await h.stop();
});

t.test('record set and question matching', async (t) => {
  const names = mdnsNames('', 'kms01.corp.example');
  t.same(names, { instance: 'KMS on kms01._vlmcs._tcp.local', host: 'kms01.local' });
  t.equal(mdnsNames('a.b', 'x').instance, 'a-b._vlmcs._tcp.local', 'no dots inside the instance label');
  const records = buildMdnsRecords(names, 11688, ['192.0.2.1', 'fe80::1%eth0']);
  const srv = answerMdnsQuestion({ name: names.instance, type: 'SRV' }, records);
  t.same(
    srv.answers.map((a) => a.type),
    ['SRV'],
  );
  t.same(
    srv.additionals.map((a) => [a.type, (a as { data: unknown }).data]),
    [
      ['A', '192.0.2.1'],
      ['AAAA', 'fe80::1'],
    ],
  );
  t.same(
    answerMdnsQuestion({ name: 'KMS01.local', type: 'A' }, records).answers.map((a) => (a as { data: unknown }).data),
    ['192.0.2.1'],
    'names match case-insensitively',
  );
});

t.test('a flood of legacy queries is not turned into a flood of replies', async (t) => {
  const port = await freePort();
  const announcements = await listenOn(t);
  const { log } = captureLog();
  const h = startMdns(
    { enabled: true, instanceName: 'Branch KMS' },
    { kmsPort: 1688, hostName: 'kms01', addresses: () => ['127.0.0.1'], log },
    {
      socket: { multicast: false, port, ip: '127.0.0.1', interface: '127.0.0.1' },
      announceTo: { address: '127.0.0.1', port: announcements.port },
      announceDelaysMs: [0],
    },
  );
  t.teardown(() => h.stop());
  t.equal(await h.ready, true);
  const client = await listenOn(t);
  const query = encodeMessage({
    header: { ...EMPTY_HEADER, id: 1 },
    questions: [{ name: MDNS_SERVICE, type: RR_TYPE.PTR, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  for (let i = 0; i < 60; i++) client.socket.send(query, port, '127.0.0.1');
  // The end of the flood has no event: a query from another address (its own budget) follows it.
  // The responder reads its socket in order and sends its replies in order, so once the other
  // address is answered, every reply to the flood has been sent, and one more poll of the event
  // loop reads them (a UDP socket is read 32 datagrams a poll, more than the 30 allowed).
  const other = await listenOn(t, '127.0.0.2');
  const probe = other.next();
  other.socket.send(query, port, '127.0.0.1');
  t.ok(await probe, 'another address is answered after the flood');
  await afterPoll();
  t.ok(client.got.length >= 20, `the burst is answered (${client.got.length})`);
  t.ok(client.got.length <= 20 + 10, `then about 10 a second (${client.got.length} of 60)`);
});
