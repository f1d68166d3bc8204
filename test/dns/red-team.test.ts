// Red-team findings on the DNS surface (the responder over UDP and TCP, mDNS, the RFC 2136
// registrar): each test is an attack that once worked, kept so it cannot come back. Loopback only,
// port 0, bounded waits; a good client must still be answered while or after the attack runs.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { DEFAULTS } from '../../src/config/defaults';
import { createDnsResponder, type DnsClient } from '../../src/dns/dns-responder';
import { startDnsServer } from '../../src/dns/dns-server';
import { exchangeDns } from '../../src/dns/dns-transport';
import { DnsUdpServer } from '../../src/dns/dns-udp';
import { startRegistrar, type RegistrationResult } from '../../src/dns/registrar';
import { startMdns, MDNS_SERVICE } from '../../src/dns/mdns';
import { createRateLimiter } from '../../src/dns/rate-limiter';
import { signMessage, TSIG_ALGORITHM_HMAC_SHA256 } from '../../src/dns/tsig';
import {
  decodeMessage,
  encodeMessage,
  EMPTY_HEADER,
  RCODE,
  RR_CLASS,
  RR_TYPE,
  type DnsQuestion,
  type DnsRecord,
} from '../../src/protocol/dns/message';
import { decodeName } from '../../src/protocol/dns/names';
import { freePort } from './named';
import { settledWithin, until } from '../wait';
import { fakeDnsServer } from './fake-dns-server';
import { captureLog, type LogLine } from './capture-log';

const ZONE = 'branch.test';
const SRV_NAME = `_vlmcs._tcp.${ZONE}`;

function queryFor(id: number, questions: DnsQuestion[]): Buffer {
  return encodeMessage({ header: { ...EMPTY_HEADER, id }, questions, answers: [], authorities: [], additionals: [] });
}

const srvQuery = (id: number): Buffer => queryFor(id, [{ name: SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN }]);

/** Errors thrown where nothing catches them (they would end the appliance) while `fn` runs. */
async function uncaughtDuring(fn: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const onError = (err: Error): void => void seen.push(err);
  process.on('uncaughtException', onError);
  try {
    await fn();
    // The replies of a turn leave in its check phase; two more turns let every deferred send run.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('uncaughtException', onError);
  }
  return seen;
}

/** One exchange from a fresh loopback socket; the reply or undefined. */
async function ask(port: number, message: Buffer, from = '127.0.0.1', ms = 2000): Promise<Buffer | undefined> {
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((r) => s.bind(0, from, () => r()));
    const reply = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(message, port, '127.0.0.1');
    return await settledWithin(reply, ms, undefined);
  } finally {
    s.close();
  }
}

/** The DNS responder's UDP socket with the real responder behind it. */
async function udpResponder(t: Test): Promise<{ server: DnsUdpServer; port: number; lines: LogLine[] }> {
  const { log, lines } = captureLog();
  const config = {
    ...DEFAULTS.dns,
    zones: [
      { domain: ZONE, ttlSeconds: 60, hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }] },
    ],
  };
  const respond = createDnsResponder(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, {});
  const server = new DnsUdpServer('udp4', {
    limiter: createRateLimiter({ responsesPerSecond: 0, burst: 1 }),
    slip: 0,
    respond,
    onReply: () => undefined,
    onLimit: (code, client, group, reason) => log.warn({ code, client: client.address, port: client.port, group, reason }),
    counters: { udpDropped: 0, rateLimited: 0, slipped: 0 },
  });
  await server.listen(0, '127.0.0.1');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { server, port: server.address().port, lines };
}

// Source port 0 cannot be sent from an ordinary socket, but a raw one (any host on the link, or
// a spoofer) can, and Linux delivers it: dgram emits 'message' with rinfo.port 0. Node's send()
// throws ERR_SOCKET_BAD_PORT at once for port 0, which once escaped the reply batch and ended the
// process. The datagram is emitted here exactly as dgram emits it.
t.test('a query from source port 0 is dropped and logged; the responder keeps answering', async (t) => {
  const { server, port, lines } = await udpResponder(t);
  const errors = await uncaughtDuring(async () => {
    server.emit('message', srvQuery(0x0bad), { address: '127.0.0.1', family: 'IPv4', port: 0, size: 40 });
    server.emit('message', Buffer.from('00'), { address: '127.0.0.1', family: 'IPv4', port: 0, size: 1 });
  });
  t.same(
    errors.map((e) => e.message),
    [],
    'nothing thrown past the socket',
  );
  const good = await ask(port, srvQuery(0x600d));
  t.equal(good && decodeMessage(good).answers.length, 1, 'a good client is answered after it');
  const line = lines.find((l) => l.obj.port === 0);
  t.match(line?.obj, { code: 'KMS_ERR_DNS_MALFORMED', reason: /source port 0/ }, 'the drop is logged with its reason');
});

/** mDNS on 127.0.0.1 with multicast off, on a socket the test holds (to emit what a raw socket can send). */
async function mdnsResponder(t: Test): Promise<{ socket: dgram.Socket; port: number; lines: LogLine[]; readonly addressReads: number }> {
  let addressReads = 0;
  const port = await freePort();
  const { log, lines } = captureLog();
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const sink = dgram.createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sink.close());
  const h = startMdns(
    { enabled: true, instanceName: 'Branch KMS' },
    {
      kmsPort: 1688,
      hostName: 'kms01',
      addresses: () => {
        addressReads++;
        return ['127.0.0.1'];
      },
      log,
    },
    {
      socket: { multicast: false, port, ip: '127.0.0.1', interface: '127.0.0.1', socket },
      announceTo: { address: '127.0.0.1', port: sink.address().port },
      announceDelaysMs: [],
    },
  );
  t.teardown(() => h.stop());
  t.equal(await h.ready, true, 'mDNS bound');
  return {
    socket,
    port,
    lines,
    get addressReads() {
      return addressReads;
    },
  };
}

const mdnsQuery = (id: number, questions: DnsQuestion[] = [{ name: MDNS_SERVICE, type: RR_TYPE.PTR, class: RR_CLASS.IN }]): Buffer =>
  queryFor(id, questions);

t.test('mDNS: a query for our service from source port 0 is not answered and does not end the process', async (t) => {
  const { socket, port } = await mdnsResponder(t);
  const errors = await uncaughtDuring(async () => {
    socket.emit('message', mdnsQuery(0x0bad), { address: '127.0.0.1', family: 'IPv4', port: 0, size: 40 });
    // multicast-dns sends from a process.nextTick after its bind check; give it those turns.
    await new Promise((r) => setTimeout(r, 20));
  });
  t.same(
    errors.map((e) => e.message),
    [],
    'nothing thrown past the socket',
  );
  const good = await ask(port, mdnsQuery(0x600d), '127.0.0.2');
  t.equal(good && decodeMessage(good).header.id, 0x600d, 'a legacy querier is answered after it');
});

// RFC 6762 §6.7 asks a legacy (unicast) answer to repeat the question; echoing every question of
// the query let a small query (a question a few bytes long, repeated by compression pointers)
// come back as a reply up to the datagram limit, to whatever source address the query named.
t.test('mDNS: a legacy query padded with repeated questions does not come back amplified', async (t) => {
  const { port } = await mdnsResponder(t);
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0x0a0a, 0);
  const first = Buffer.concat([Buffer.from('\x06_vlmcs\x04_tcp\x05local\x00', 'latin1'), Buffer.from([0, 12, 0, 1])]);
  // A long name the first question does not use, then 300 questions pointing at it (6 bytes each):
  // echoed uncompressed, about 60 kB.
  const long = Buffer.concat([
    ...Array.from({ length: 3 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x78)])),
    Buffer.from([0]),
  ]);
  const longAt = 12 + first.length;
  const filler = Buffer.concat([Buffer.from([0xc0 | (longAt >> 8), longAt & 0xff]), Buffer.from([0, 1, 0, 1])]);
  const questions = 2 + 300;
  head.writeUInt16BE(questions, 4);
  const query = Buffer.concat([head, first, long, Buffer.from([0, 1, 0, 1]), ...Array.from({ length: 300 }, () => filler)]);
  t.ok(query.length < 2100, `the query is ${query.length} bytes`);
  const reply = await ask(port, query, '127.0.0.3');
  t.ok(reply, 'the legacy querier is answered');
  t.ok(reply!.length <= Math.max(512, query.length), `the reply (${reply?.length} bytes) is no larger than the query`);
  const decoded = decodeMessage(reply!);
  t.same(
    decoded.questions.map((q) => [q.name, q.type]),
    [[MDNS_SERVICE, RR_TYPE.PTR]],
    'only the question answered is repeated',
  );
});

/** The responder without sockets, with the zone above. */
function plainResponder(answerCache = true): (raw: Buffer, transport?: 'udp' | 'tcp') => Buffer | null {
  const { log } = captureLog();
  const config = {
    ...DEFAULTS.dns,
    zones: [
      { domain: ZONE, ttlSeconds: 60, hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }] },
    ],
  };
  const respond = createDnsResponder(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, { answerCache });
  return (raw, transport = 'udp') => {
    const client: DnsClient = { address: '192.0.2.200', port: 40000, transport };
    const r = respond(raw, client);
    if (r instanceof Promise) throw new Error('a zone answer must not wait');
    return r;
  };
}

function withAdditionals(id: number, additionals: DnsRecord[]): Buffer {
  return encodeMessage({
    header: { ...EMPTY_HEADER, id },
    questions: [{ name: SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals,
  });
}

// RFC 8945 §5.2: a server that does not know the key of a signed request answers NOTAUTH with
// TSIG error BADKEY, unsigned; a TSIG that is not the last additional record is FORMERR. The
// responder knows no keys, and answered signed queries as if they were not signed.
t.test('a TSIG-signed query gets NOTAUTH/BADKEY; a misplaced TSIG gets FORMERR', async (t) => {
  const respond = plainResponder();
  const key = { name: 'update-key.', algorithm: TSIG_ALGORITHM_HMAC_SHA256, secret: Buffer.alloc(32, 7) } as const;
  const { signed } = signMessage(srvQuery(0x5151), key, 1_800_000_000);
  for (const transport of ['udp', 'tcp'] as const) {
    const reply = respond(signed, transport);
    t.ok(reply, `${transport}: answered`);
    const m = decodeMessage(reply!);
    t.equal(m.header.id, 0x5151, `${transport}: ID echoed`);
    t.equal(m.header.rcode, RCODE.NOTAUTH, `${transport}: NOTAUTH`);
    t.equal(m.answers.length, 0, `${transport}: no data for a request it cannot authenticate`);
    const tsig = m.additionals.at(-1);
    t.equal(tsig?.type, RR_TYPE.TSIG, `${transport}: a TSIG record says why`);
    t.match(tsig?.data, { kind: 'tsig', error: RCODE.BADKEY, originalId: 0x5151, algorithm: 'hmac-sha256' }, `${transport}: BADKEY`);
    t.equal(tsig?.data.kind === 'tsig' && tsig.data.mac.length, 0, `${transport}: unsigned (empty MAC)`);
  }
  // The TSIG moved before another additional record.
  const m = decodeMessage(signed);
  const tsigRr = m.additionals[0]!;
  const misplaced = withAdditionals(0x5152, [
    tsigRr,
    { name: `kms.${ZONE}`, type: RR_TYPE.A, class: RR_CLASS.IN, ttl: 0, data: { kind: 'a', address: '192.0.2.1' } },
  ]);
  const formerr = respond(misplaced);
  t.equal(formerr && decodeMessage(formerr).header.rcode, RCODE.FORMERR, 'a TSIG that is not last: FORMERR');
  const good = respond(srvQuery(0x600d));
  t.equal(good && decodeMessage(good).answers.length, 1, 'an unsigned query is still answered');
});

// RFC 6891 §6.1.2: OPT RDATA is a sequence of {code, length, data}; one whose length runs past
// the RDATA is a malformed message (FORMERR), not a query to answer as if the option were absent.
t.test('EDNS options whose lengths do not fill the OPT RDATA get FORMERR', async (t) => {
  const respond = plainResponder();
  const opt = (bytes: Buffer): DnsRecord => ({ name: '', type: RR_TYPE.OPT, class: 1232, ttl: 0, data: { kind: 'raw', bytes } });
  const cases: [string, Buffer][] = [
    ['an option length past the RDATA', Buffer.from('000a0010' + '0102030405060708', 'hex')],
    ['half an option header', Buffer.from('000a00', 'hex')],
  ];
  for (const [what, rdata] of cases) {
    const reply = respond(withAdditionals(0x0e0e, [opt(rdata)]));
    t.ok(reply, `${what}: answered`);
    t.equal(reply && decodeMessage(reply).header.rcode, RCODE.FORMERR, `${what}: FORMERR`);
  }
  const fine = respond(withAdditionals(0x0e0f, [opt(Buffer.from('000a0008' + '0102030405060708', 'hex'))]));
  t.equal(fine && decodeMessage(fine).answers.length, 1, 'a well-formed client cookie is answered');
  const unknown = respond(withAdditionals(0x0e10, [opt(Buffer.from('fde90003' + '010203', 'hex'))]));
  t.equal(unknown && decodeMessage(unknown).answers.length, 1, 'an unknown option is ignored (RFC 6891 §6.1.2)');
});

/** A registrar publishing ZONE through `server` (no address polling, short timeouts). */
function registrarFor(
  t: Test,
  server: string,
  options: { timeoutMs?: number; retryMs?: number; stopDeadlineMs?: number; domains?: number; removeOnShutdown?: boolean } = {},
) {
  const { domains = 1, removeOnShutdown = false, ...registrarOptions } = options;
  const { log, lines } = captureLog();
  const reg = startRegistrar(
    {
      ...DEFAULTS.dns.registration,
      enabled: true,
      server,
      domains: Array.from({ length: domains }, (_, i) => ({ domain: i === 0 ? ZONE : `site${i}.${ZONE}`, priority: 0, weight: 0 })),
      addresses: ['192.0.2.10'],
      removeOnShutdown,
      tsig: { keyName: 'kms-key', algorithm: 'hmac-sha256', secretBase64: Buffer.alloc(32, 3).toString('base64'), secretFile: '' },
    },
    { kmsPort: 1688, hostName: 'kms01', addresses: () => [], log },
    { addressPollMs: 0, timeoutMs: 300, ...registrarOptions },
  );
  t.teardown(() => reg.stop());
  return { reg, lines };
}

/** One registration round against `server`; its result and the log. */
async function registerAgainst(t: Test, server: string): Promise<{ result: RegistrationResult; lines: LogLine[] }> {
  const { reg, lines } = registrarFor(t, server);
  const [result] = await reg.ready;
  return { result: result!, lines };
}

const asResponse = (q: Buffer): Buffer => {
  const a = Buffer.from(q);
  a[2]! |= 0x80;
  return a;
};

// A server (or whatever answers on its port) that sends our own update back, QR still 0: it was
// reported as "a TSIG signature that does not verify with our key", sending the admin to check
// a key that is fine.
t.test('registrar: our own update echoed back is not an answer, and is not blamed on the key', async (t) => {
  const server = await fakeDnsServer(t, (q) => q);
  const { result, lines } = await registerAgainst(t, server.address);
  t.equal(result.ok, false, 'not published');
  t.not(result.code, 'KMS_ERR_DNS_TSIG_BAD', `not a key problem (${result.code}: ${result.reason})`);
  t.match(result.reason, /not (a response|an answer)/, 'the reason says what came back');
  t.ok(
    lines.some((l) => l.level === 'warn' && l.obj.event === 12293),
    'logged as event 12293',
  );
});

// Over TCP the answer's message ID was never compared with the query's: any message on the
// stream was taken as the answer.
t.test('registrar: an answer over TCP with another message ID is refused as such', async (t) => {
  const server = await fakeDnsServer(t, (q, transport) => {
    const a = asResponse(q);
    if (transport === 'udp') {
      // Truncated: "ask again over TCP" (RFC 7766 §5), with nothing but the header.
      a[2]! |= 0x02;
      return a.subarray(0, 12).fill(0, 4, 12);
    }
    a.writeUInt16BE(a.readUInt16BE(0) ^ 0x5a5a, 0);
    return a;
  });
  const { result } = await registerAgainst(t, server.address);
  t.equal(result.ok, false, 'not published');
  t.match(result.reason, /message ID/, `the reason names the mismatch (${result.code}: ${result.reason})`);
  t.ok(server.updates >= 1, 'the update went out');
});

// Answers with another ID over UDP are ignored (they may be spoofed), but the admin only read
// "did not answer" while the server was answering every time.
t.test('registrar: answers over UDP that never carry our message ID are reported as such', async (t) => {
  const server = await fakeDnsServer(t, (q, transport) => {
    if (transport === 'tcp') return null;
    const a = asResponse(q);
    a.writeUInt16BE(a.readUInt16BE(0) ^ 0x0101, 0);
    return a;
  });
  const { result } = await registerAgainst(t, server.address);
  t.equal(result.ok, false, 'not published');
  t.match(result.reason, /another message ID/, `the reason says answers came with another ID (${result.reason})`);
});

// A failed round was retried after min(refreshMinutes, 15 min) every time: a registration that
// failed at boot (network not up yet, the DNS server restarting) left clients without the SRV
// record for 15 minutes, and a server down for days was asked at the same pace throughout.
t.test('registrar: a failed registration is retried by itself, soon at first, then less and less often', async (t) => {
  const server = await fakeDnsServer(t, () => null); // never answers
  const { reg, lines } = registrarFor(t, server.address, { timeoutMs: 100, retryMs: 200 });
  await reg.ready;
  const delays: (number | null)[] = [reg.status().retryDelayMs];
  await until(() => server.updates >= 2, 'a retry without being asked', { everyMs: 20, ms: 8000 });
  for (let i = 0; i < 2; i++) {
    await reg.registerNow();
    delays.push(reg.status().retryDelayMs);
  }
  t.ok(
    delays.every((d) => typeof d === 'number' && d > 0),
    `a retry is scheduled after each failure (${delays.join(', ')} ms)`,
  );
  const [a, b, c] = delays as number[];
  t.ok(a! < b! && b! < c!, `each failed round waits longer than the one before (${delays.join(', ')} ms)`);
  t.ok(c! <= 15 * 60_000, 'never longer than 15 minutes');
  t.ok(lines.filter((l) => l.obj.event === 12293).length >= 3, 'every failed round is logged as event 12293');
});

// RFC 6762 §11 (and avahi's CVE-2017-6519): a responder answering unicast queries from any
// address is a reflector for the whole Internet wherever UDP 5353 is reachable. Legacy unicast
// replies go only to sources on a directly connected network. The socket's send() is wrapped so
// no datagram can leave for the off-link address if the check were missing.
t.test('mDNS: a legacy query from an address on no local network is not answered', async (t) => {
  const { socket, port } = await mdnsResponder(t);
  const offLink: string[] = [];
  const send = socket.send.bind(socket) as (...args: unknown[]) => void;
  (socket as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
    const address = args.find((a) => typeof a === 'string' && a.includes('.')) as string | undefined;
    if (address?.startsWith('127.')) return send(...args);
    offLink.push(String(address));
    const cb = args.find((a) => typeof a === 'function') as ((err: Error | null) => void) | undefined;
    cb?.(null);
  };
  socket.emit('message', mdnsQuery(0x0ff1), { address: '203.0.113.5', family: 'IPv4', port: 40000, size: 40 });
  // The reply of a good client sent after it leaves after any reply to the first (same socket, in order).
  const good = await ask(port, mdnsQuery(0x600d), '127.0.0.4');
  t.equal(good && decodeMessage(good).header.id, 0x600d, 'a querier on the link is answered');
  t.same(offLink, [], 'nothing sent towards the off-link source');
});

// stop() waited for the round in flight, then removed each domain in turn, each exchange up to
// its timeout (5 s, UDP then TCP): against a server that never answers, shutting down took
// 20 s and more per domain, past systemd's stop timeout (90 s) with a few domains, and the
// services after it (the store) were killed rather than closed.
t.test('registrar: stop() against a server that never answers ends at its deadline and says what was left', async (t) => {
  const server = await fakeDnsServer(t, () => null);
  const { reg, lines } = registrarFor(t, server.address, { timeoutMs: 1000, stopDeadlineMs: 200, domains: 3, removeOnShutdown: true });
  // Stopped while the first round waits on the silent server.
  const results = await reg.stop();
  t.equal(results.length, 3, 'one result per domain');
  t.ok(
    results.every((r) => r.action === 'remove' && !r.ok),
    'none removed',
  );
  t.match(results[2]?.reason, /shutdown/, `the reason says shutdown did not wait (${results[2]?.reason})`);
  t.ok(
    lines.some((l) => l.level === 'warn' && /shutdown/.test(l.msg ?? '')),
    'a warning says the records may be left in DNS',
  );
});

/**
 * A QUERY whose answer section (RFC 1035 lets a query carry one) is thousands of records, each
 * owner a compression pointer to the one before: every name walks the whole chain back (pointers
 * reach only the first 16 KiB, so the later ones walk the longest chain there is).
 */
function pointerChainQuery(id: number, bytes: number): Buffer {
  const n = Math.floor((bytes - 17) / 12);
  const b = Buffer.alloc(17 + n * 12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(1, 4);
  b.writeUInt16BE(n, 6);
  b.writeUInt16BE(RR_TYPE.SRV, 13); // the question: the root, SRV, IN
  b.writeUInt16BE(RR_CLASS.IN, 15);
  let previous = 12;
  for (let i = 0, p = 17; i < n; i++, p += 12) {
    b.writeUInt16BE(0xc000 | previous, p);
    b.writeUInt16BE(RR_TYPE.A, p + 2);
    b.writeUInt16BE(RR_CLASS.IN, p + 4); // TTL 0, RDLENGTH 0
    if (p <= 0x3fff) previous = p;
  }
  return b;
}

// Decoding one 64 KiB message of chained compression pointers took about 30 ms here, 3,000 times
// a plain query, and the rate limit counts messages: one address sending 50 such queries a
// second over TCP (dns.rateLimit's default) held the event loop the KMS server shares all the
// time. A message longer than any query is now answered FORMERR from its header alone.
t.test('a query far longer than any real one is FORMERR without being decoded; others are still answered', async (t) => {
  const { log, lines } = captureLog();
  const config = {
    ...DEFAULTS.dns,
    zones: [
      { domain: ZONE, ttlSeconds: 60, hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }] },
    ],
  };
  const h = await startDnsServer(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, ['127.0.0.1:0']);
  t.teardown(() => h.close());
  const port = h.addresses[0]!.port;
  const attack = pointerChainQuery(0x0c0c, 65000);
  const reply = await new Promise<Buffer | undefined>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    s.on('connect', () => s.write(Buffer.concat([Buffer.from([attack.length >> 8, attack.length & 0xff]), attack])));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        resolve(got.subarray(2, 2 + got.readUInt16BE(0)));
        s.destroy();
      }
    });
    s.on('error', () => resolve(undefined));
    s.on('close', () => resolve(undefined));
  });
  t.ok(reply, 'answered');
  t.equal(reply && reply.readUInt16BE(0), 0x0c0c, 'its ID');
  t.equal(reply && reply.readUInt16BE(2) & 0xf, RCODE.FORMERR, 'FORMERR');
  t.ok(
    lines.some((l) => l.obj.code === 'KMS_ERR_DNS_MALFORMED' && /longer than/.test(String(l.obj.reason))),
    'logged as a message too long to be a query',
  );
  const good = await ask(port, srvQuery(0x600d), '127.0.0.2');
  t.equal(good && decodeMessage(good).answers.length, 1, 'a good client is answered');
  const key = { name: 'update-key', algorithm: TSIG_ALGORITHM_HMAC_SHA256, secret: Buffer.alloc(32, 9) } as const;
  const notauth = await ask(port, signMessage(srvQuery(0x5152), key, 1_800_000_000).signed, '127.0.0.3');
  t.equal(notauth && decodeMessage(notauth).header.rcode, RCODE.NOTAUTH, 'a signed query over UDP: NOTAUTH');
  t.match(
    lines.find((l) => l.obj.code === 'KMS_ERR_DNS_TSIG_BAD'),
    { level: 'warn', msg: /holds no TSIG keys/, obj: { reason: /update-key/ } },
    'logged in words, with the key name',
  );
  // RFC 7830 padding to a 468-byte block: a long query that is real.
  const padding = Buffer.concat([Buffer.from('000c01d0', 'hex'), Buffer.alloc(464)]);
  const padded = plainResponder()(
    withAdditionals(0x0d0d, [{ name: '', type: RR_TYPE.OPT, class: 1232, ttl: 0, data: { kind: 'raw', bytes: padding } }]),
  );
  t.equal(padded && decodeMessage(padded).answers.length, 1, 'a padded query is still answered');
});

/** A query of `bytes` whose questions each name a compression pointer to the question before. */
function questionChain(bytes: number): Buffer {
  const n = Math.floor((bytes - 17) / 6) + 1;
  const b = Buffer.alloc(17 + (n - 1) * 6);
  b.writeUInt16BE(n, 4);
  b.writeUInt16BE(RR_TYPE.PTR, 13); // the first question: the root
  b.writeUInt16BE(RR_CLASS.IN, 15);
  for (let i = 1, p = 17, previous = 12; i < n; i++, p += 6) {
    b.writeUInt16BE(0xc000 | previous, p);
    b.writeUInt16BE(RR_TYPE.PTR, p + 2);
    b.writeUInt16BE(RR_CLASS.IN, p + 4);
    if (p <= 0x3fff) previous = p;
  }
  return b;
}

// BIND follows at most 16 pointers in one name (DNS_POINTER_MAXHOPS); our decoder followed any
// number, so each name of a message of pointers to pointers walked all of those before it.
t.test('a name may follow at most 16 compression pointers', async (t) => {
  const chain = (hops: number): Buffer => {
    const b = Buffer.alloc(1 + hops * 2);
    for (let i = 1, previous = 0; i <= hops; i++, previous = i * 2 - 3) b.writeUInt16BE(0xc000 | (i === 1 ? 0 : previous), i * 2 - 1);
    return b;
  };
  t.same(decodeName(chain(16), 31), { name: '', next: 33 }, '16 pointers: decoded');
  t.throws(() => decodeName(chain(17), 33), { code: 'KMS_ERR_DNS_MALFORMED', message: /compression pointers/ }, '17: malformed');
  const respond = plainResponder();
  const reply = respond(questionChain(4000));
  t.equal(reply && decodeMessage(reply).header.rcode, RCODE.FORMERR, 'a query of chained questions: FORMERR');
});

// multicast-dns decodes every datagram reaching UDP 5353 before any of our code runs, with a
// decoder that follows pointers without a bound: one 64 KiB datagram of chained questions kept
// it busy for about half a second. Datagrams go through our strict codec first.
t.test('mDNS: a datagram of chained compression pointers is dropped before decoding, and logged', async (t) => {
  const { socket, port, lines } = await mdnsResponder(t);
  socket.emit('message', questionChain(65000), { address: '127.0.0.1', family: 'IPv4', port: 40001, size: 65000 });
  socket.emit('message', questionChain(8000), { address: '127.0.0.1', family: 'IPv4', port: 40001, size: 8000 });
  const ignored = lines.filter((l) => l.msg === 'mDNS packet ignored').map((l) => String(l.obj.reason));
  t.match(ignored, [/longer than an mDNS packet/, /compression pointers/], `both dropped with the reason (${ignored.join('; ')})`);
  const good = await ask(port, mdnsQuery(0x600d), '127.0.0.2');
  t.equal(good && decodeMessage(good).header.id, 0x600d, 'a legacy querier is answered');
});

// The registrar's and the forwarder's TCP client appended each chunk to all the bytes before it
// (Buffer.concat per 'data' event): a server dripping a 60 kB answer a byte or two at a time made
// it copy hundreds of megabytes (about 0.4 s of CPU here for one answer, more the finer the
// drip, and the forwarder may wait on 256 answers at once).
t.test('an answer over TCP dripped in tiny pieces is read in linear time, intact', async (t) => {
  const size = 30000;
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.once('data', (d) => {
      const answer = Buffer.alloc(2 + size, 0x61);
      answer.writeUInt16BE(size, 0);
      answer.writeUInt16BE(d.readUInt16BE(2), 2); // the query's ID
      answer[4] = 0x80; // QR
      let at = 0;
      const drip = (): void => {
        if (at >= answer.length || s.destroyed) return;
        s.write(answer.subarray(at, at + 2));
        at += 2;
        setImmediate(drip);
      };
      drip();
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const query = srvQuery(0x7e7e);
  let concatenated = 0;
  const concat = Buffer.concat;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const out = concat(list, total);
    concatenated += out.length;
    return out;
  }) as typeof Buffer.concat;
  let response: Buffer;
  try {
    ({ response } = await exchangeDns({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, query, {
      timeoutMs: 20_000,
      tcpOnly: true,
    }));
  } finally {
    Buffer.concat = concat;
  }
  t.equal(response.length, size, 'the whole answer');
  t.equal(response.readUInt16BE(0), 0x7e7e, 'its ID');
  t.ok(concatenated <= 8 * size, `bytes gathered by concatenation: ${concatenated}, for a ${size}-byte answer`);
});

// Every mDNS query, for any name, read the machine's addresses (os.networkInterfaces(), about
// 45 µs, several times the cost of the packet) before looking at what it asked: a flood of
// queries for other services cost that much each. The record set is now read once every few seconds.
t.test("mDNS: a flood of queries does not read the machine's addresses once per packet", async (t) => {
  const r = await mdnsResponder(t);
  const before = r.addressReads;
  const other = mdnsQuery(1, [{ name: '_http._tcp.local', type: RR_TYPE.PTR, class: RR_CLASS.IN }]);
  const ours = mdnsQuery(2);
  for (let i = 0; i < 500; i++) {
    r.socket.emit('message', i % 2 === 0 ? other : ours, { address: `127.0.0.${2 + (i % 200)}`, family: 'IPv4', port: 5353, size: 40 });
  }
  const reads = r.addressReads - before;
  t.ok(reads <= 5, `addresses read ${reads} times for 500 queries`);
  const good = await ask(r.port, mdnsQuery(0x600d), '127.0.0.250');
  t.equal(good && decodeMessage(good).header.id, 0x600d, 'a legacy querier is answered');
});

/**
 * An answer to the registrar's SRV query naming our target `count` times with other ports: the
 * first target written out, the others compression pointers to it (20 bytes a record).
 */
function manyStaleSrv(query: Buffer, count: number, target: string): Buffer {
  const question = query.subarray(12, query.length);
  const head = Buffer.from(query.subarray(0, 12));
  head[2] = 0x84; // QR, AA
  head.writeUInt16BE(count, 6);
  const targetWire = Buffer.concat([
    ...target.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
  const records: Buffer[] = [];
  const firstTargetAt = 12 + question.length + 12 + 6;
  for (let i = 0; i < count; i++) {
    const t = i === 0 ? targetWire : Buffer.from([0xc0 | (firstTargetAt >> 8), firstTargetAt & 0xff]);
    const rr = Buffer.alloc(12 + 6);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(RR_TYPE.SRV, 2);
    rr.writeUInt16BE(RR_CLASS.IN, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(6 + t.length, 10);
    rr.writeUInt16BE(10, 12); // priority
    rr.writeUInt16BE(0, 14);
    rr.writeUInt16BE(2000 + i, 16); // port
    records.push(rr, t);
  }
  return Buffer.concat([head, question, ...records]);
}

// The SRV records found naming our target (stale ones, from an earlier port) are deleted in the
// update, however many the server listed: 3,000 made an update too large for any datagram, and
// registration failed at every round with "did not answer (send EMSGSIZE)".
t.test('registrar: a server listing thousands of stale SRV records still gets a sendable update, and the admin is told', async (t) => {
  const server = await fakeDnsServer(t, (q, transport) => {
    const opcode = (q[2]! >> 3) & 0xf;
    if (opcode === 0 && transport === 'udp') {
      const tc = asResponse(q);
      tc[2]! |= 0x02;
      return tc;
    }
    if (opcode === 0) return manyStaleSrv(q, 3000, `kms01.${ZONE}`);
    return asResponse(q.subarray(0, 12)); // the update: an unsigned NOERROR
  });
  const { reg, lines } = registrarFor(t, server.address, { timeoutMs: 1000 });
  const [result] = await reg.ready;
  t.ok(server.updates >= 1, `the update reached the server (${result?.reason})`);
  t.notMatch(result?.reason ?? '', /EMSGSIZE/, 'not refused by the socket for its size');
  t.ok(
    lines.some((l) => /stale/.test(l.msg ?? '') && l.level === 'warn'),
    'a warning says not every stale record could be deleted at once',
  );
});

// RFC 3225 §3: "the DO bit of the query MUST be copied in the response" (the EDNS compliance
// tests of DNS Flag Day check it). The responder always answered DO=0.
t.test('EDNS: the DO bit of a query is copied into the answer, cached or not, and into BADVERS', async (t) => {
  const opt = (ttl: number): DnsRecord => ({
    name: '',
    type: RR_TYPE.OPT,
    class: 1232,
    ttl,
    data: { kind: 'raw', bytes: Buffer.alloc(0) },
  });
  const optTtl = (reply: Buffer | null): number | undefined =>
    reply ? decodeMessage(reply).additionals.find((r) => r.type === RR_TYPE.OPT)?.ttl : undefined;
  for (const cache of [true, false]) {
    const respond = plainResponder(cache);
    for (const transport of ['udp', 'tcp'] as const) {
      const what = `${cache ? 'cached' : 'full path'}, ${transport}`;
      t.equal((optTtl(respond(withAdditionals(1, [opt(0x8000)]), transport)) ?? 0) & 0x8000, 0x8000, `${what}: DO=1 echoed`);
      t.equal((optTtl(respond(withAdditionals(2, [opt(0)]), transport)) ?? 1) & 0x8000, 0, `${what}: DO=0 stays 0`);
      t.equal((optTtl(respond(withAdditionals(3, [opt(0x8000)]), transport)) ?? 0) & 0x8000, 0x8000, `${what}: again`);
    }
    const badvers = respond(withAdditionals(4, [opt(0x00018000)]));
    t.equal(optTtl(badvers), 0x01008000, `${cache ? 'cached' : 'full path'}: BADVERS (extended rcode 1) with DO echoed`);
  }
});

// RFC 6891 §7: a request carrying an OPT gets an OPT in its response. NOTIMP (opcodes NOTIFY,
// UPDATE, DSO, reserved ones) and FORMERR for a well-formed message with the wrong number of
// questions came back without one, which EDNS-probing clients read as "no EDNS here".
t.test('EDNS: NOTIMP and FORMERR answers to a query with a valid OPT carry an OPT', async (t) => {
  const respond = plainResponder();
  const opt: DnsRecord = { name: '', type: RR_TYPE.OPT, class: 1232, ttl: 0x8000, data: { kind: 'raw', bytes: Buffer.alloc(0) } };
  const message = (opcode: number, questions: number): Buffer =>
    encodeMessage({
      header: { ...EMPTY_HEADER, id: 0x0b0b, opcode },
      questions: Array.from({ length: questions }, () => ({ name: SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN })),
      answers: [],
      authorities: [],
      additionals: [opt],
    });
  for (const [what, raw, rcode] of [
    ['NOTIFY', message(4, 1), RCODE.NOTIMP],
    ['UPDATE', message(5, 1), RCODE.NOTIMP],
    ['opcode 15', message(15, 1), RCODE.NOTIMP],
    ['QUERY without a question', message(0, 0), RCODE.FORMERR],
    ['QUERY with two questions', message(0, 2), RCODE.FORMERR],
  ] as const) {
    const reply = respond(raw);
    const m = reply ? decodeMessage(reply) : undefined;
    t.equal(m?.header.rcode, rcode, `${what}: rcode ${rcode}`);
    const replyOpt = m?.additionals.find((r) => r.type === RR_TYPE.OPT);
    t.ok(replyOpt, `${what}: an OPT in the answer`);
    t.equal((replyOpt?.ttl ?? 0) & 0x8000, 0x8000, `${what}: with DO copied`);
  }
  const inAnswers = encodeMessage({
    header: { ...EMPTY_HEADER, id: 0x0b0c },
    questions: [{ name: SRV_NAME, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [opt],
    authorities: [],
    additionals: [],
  });
  const misplaced = respond(inAnswers);
  t.equal(misplaced && decodeMessage(misplaced).header.rcode, RCODE.FORMERR, 'an OPT in the answer section alone: FORMERR');
});

// RFC 5452 §9.1: an answer is accepted only for the question asked. The forwarder checked the ID
// (and now QR) but passed on an upstream answer about any other name: whoever can get one
// datagram to the forwarder's port with the right ID chooses what the client caches.
t.test('forwarding: an upstream answer about another question is not passed on', async (t) => {
  const upstream = dgram.createSocket('udp4');
  upstream.on('message', (q, from) => {
    const question = decodeMessage(q).questions[0]!;
    const forged = encodeMessage({
      header: { ...EMPTY_HEADER, id: q.readUInt16BE(0), qr: true, rd: true, ra: true },
      questions: [{ ...question, name: question.name.startsWith('other') ? 'bank.example.net' : question.name }],
      answers: [
        { name: 'bank.example.net', type: RR_TYPE.A, class: RR_CLASS.IN, ttl: 86400, data: { kind: 'a', address: '203.0.113.66' } },
      ],
      authorities: [],
      additionals: [],
    });
    upstream.send(forged, from.port, from.address);
  });
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => upstream.close());
  const { log, lines } = captureLog();
  const config = {
    ...DEFAULTS.dns,
    zones: [{ domain: ZONE, ttlSeconds: 60, hosts: [] }],
    forwarding: { enabled: true, upstream: [`127.0.0.1:${upstream.address().port}`], allowNetworks: ['127.0.0.0/8'] },
  };
  const h = await startDnsServer(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, ['127.0.0.1:0']);
  t.teardown(() => h.close());
  const port = h.addresses[0]!.port;
  const ask1 = (name: string, id: number) =>
    ask(port, queryFor(id, [{ name, type: RR_TYPE.A, class: RR_CLASS.IN }]), '127.0.0.7').then((r) => (r ? decodeMessage(r) : undefined));
  const honest = await ask1('bank.example.net', 1);
  t.equal(honest?.answers.length, 1, 'an answer to the question asked is passed on');
  const forged = await ask1('other.example.org', 2);
  t.equal(forged?.header.rcode, RCODE.SERVFAIL, 'an answer about another name: SERVFAIL');
  t.equal(forged?.answers.length, 0, 'nothing of it reaches the client');
  t.ok(
    lines.some((l) => /another question/.test(String(l.obj.reason))),
    'logged with the reason',
  );
});
