// Red-team findings on the appliance as a DNS client: RFC 2136 registration against a site DNS
// server that is broken, misconfigured or hostile, and `dns check` against a resolver that lies.
// Each test is an attack that once worked (or a line of attack that held, kept so it cannot
// break). Fake servers on 127.0.0.1, port 0; bounded waits; no timing assertions.
import t, { type Test } from 'tap';
import { createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import type net from 'node:net';
import { PassThrough } from 'node:stream';
import { DEFAULTS } from '../../src/config/defaults';
import { startRegistrar } from '../../src/dns/registrar';
import { command as dnsCheckCommand } from '../../src/cli/commands/dns-check';
import { HRESULT } from '../../src/errors';
import { checkDiscovery, createSystemResolver, type ProbeResult } from '../../src/dns/dns-check';
import { RCODE, RR_TYPE } from '../../src/protocol/dns/message';
import { until } from '../wait';
import { fakeDnsServer, type Behave } from './fake-dns-server';
import { captureLog } from './capture-log';

const ZONE = 'branch.test';

const opcodeOf = (q: Buffer): number => (q[2]! >> 3) & 0xf;

/** The header and zone section of `q` sent back as a response with `rcode` and nothing else (unsigned). */
function bareAnswer(q: Buffer, rcode: number): Buffer {
  const qdEnd = questionEnd(q);
  const a = Buffer.from(q.subarray(0, qdEnd));
  a[2] = 0x80 | (q[2]! & 0x78);
  a[3] = rcode & 0xf;
  a.writeUInt16BE(0, 6);
  a.writeUInt16BE(0, 8);
  a.writeUInt16BE(0, 10);
  return a;
}

/** Where the first question of `q` ends (names in queries are never compressed). */
function questionEnd(q: Buffer): number {
  let at = 12;
  while (q[at]! !== 0) at += q[at]! + 1;
  return at + 5;
}

const wireName = (name: string): Buffer =>
  Buffer.concat([
    ...name
      .split('.')
      .filter((l) => l !== '')
      .map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l, 'latin1')]), Buffer.from(l, 'latin1')])),
    Buffer.from([0]),
  ]);

const SECRET = Buffer.alloc(32, 3);

/** A NOERROR answer to the signed update `q`, signed as the server holding SECRET would (RFC 8945 §4.3.1). */
function signedAnswer(q: Buffer, rcode: number = RCODE.NOERROR): Buffer {
  const requestMac = q.subarray(q.length - 6 - 32, q.length - 6);
  const body = bareAnswer(q, rcode);
  const now = Math.floor(Date.now() / 1000);
  const time = Buffer.alloc(8); // time signed (48 bits), fudge
  time.writeUInt32BE(now, 2);
  time.writeUInt16BE(300, 6); // fudge
  const key = wireName('kms-key');
  const alg = wireName('hmac-sha256');
  const classTtl = Buffer.from([0, 255, 0, 0, 0, 0]);
  const errorOther = Buffer.alloc(4);
  const mac = createHmac('sha256', SECRET)
    .update(Buffer.from([0, 32]))
    .update(requestMac)
    .update(body)
    .update(Buffer.concat([key, classTtl, alg, time, errorOther]))
    .digest();
  const tail = Buffer.alloc(6);
  tail.writeUInt16BE(q.readUInt16BE(0), 0);
  const rdata = Buffer.concat([alg, time, Buffer.from([0, 32]), mac, tail]);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(RR_TYPE.TSIG, 0);
  head.writeUInt16BE(255, 2);
  head.writeUInt16BE(rdata.length, 8);
  const out = Buffer.concat([body, key, head, rdata]);
  out.writeUInt16BE(1, 10);
  return out;
}

/** An unsigned answer carrying a TSIG RR whose error field is `tsigError` and whose MAC is empty (RFC 8945 §5.3.2). */
function tsigErrorAnswer(q: Buffer, rcode: number, tsigError: number, other = Buffer.alloc(0)): Buffer {
  const head = bareAnswer(q, rcode);
  head.writeUInt16BE(1, 10);
  const alg = wireName('hmac-sha256');
  const rdata = Buffer.alloc(alg.length + 16 + other.length);
  alg.copy(rdata, 0);
  let at = alg.length;
  rdata.writeUInt32BE(Math.floor(Date.now() / 1000), at + 2);
  rdata.writeUInt16BE(300, at + 6);
  rdata.writeUInt16BE(0, at + 8); // MAC size 0
  at += 10;
  rdata.writeUInt16BE(q.readUInt16BE(0), at);
  rdata.writeUInt16BE(tsigError, at + 2);
  rdata.writeUInt16BE(other.length, at + 4);
  other.copy(rdata, at + 6);
  const rr = Buffer.alloc(10);
  rr.writeUInt16BE(RR_TYPE.TSIG, 0);
  rr.writeUInt16BE(255, 2);
  rr.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([head, wireName('kms-key'), rr, rdata]);
}

function registrarAgainst(
  t: Test,
  server: string,
  options: { addresses?: () => string[]; addressPollMs?: number; timeoutMs?: number; retryMs?: number } = {},
) {
  const { log, lines } = captureLog();
  const reg = startRegistrar(
    {
      ...DEFAULTS.dns.registration,
      enabled: true,
      server,
      domains: [{ domain: ZONE, priority: 0, weight: 0 }],
      addresses: options.addresses ? [] : ['192.0.2.10'],
      removeOnShutdown: false,
      tsig: { keyName: 'kms-key', algorithm: 'hmac-sha256', secretBase64: SECRET.toString('base64'), secretFile: '' },
    },
    { kmsPort: 1688, hostName: 'kms01', addresses: options.addresses ?? (() => []), log },
    { addressPollMs: options.addressPollMs ?? 0, timeoutMs: options.timeoutMs ?? 150, retryMs: options.retryMs ?? 60_000 },
  );
  t.teardown(() => reg.stop());
  return { reg, lines };
}

// ------------------------------------------------------------------------------ registration

// The address poller queued a new registration round at every poll that saw addresses other than
// those of the last round *started*: while the DNS server did not answer (each round waits its
// timeouts), a machine whose addresses changed queued one round per poll, hundreds over a few
// minutes, and once they ran they ran back to back, ignoring the retry backoff, hammering the
// server that had just come back.
t.test('registrar: address changes while the server is silent queue one round, not one per poll', async (t) => {
  let answering = false;
  const server = await fakeDnsServer(t, (q) => (answering ? bareAnswer(q, RCODE.REFUSED) : null));
  let flips = 0;
  let moving = true;
  const addresses = (): string[] => [moving ? `192.0.2.${(flips++ % 2) + 1}` : '192.0.2.99'];
  const { reg } = registrarAgainst(t, server.address, { addresses, addressPollMs: 5, timeoutMs: 150 });
  await until(() => server.updates >= 3, 'three silent rounds', { everyMs: 20, ms: 10_000 });
  moving = false;
  answering = true;
  const before = server.updates;
  await reg.registerNow();
  const after = server.updates - before;
  t.ok(after <= 3, `updates sent once the server answered and the addresses settled: ${after}`);
});

// RFC 2136 rcodes other than the usual few were reported as "the DNS server answered YXRRSET":
// no words for the admin, nothing to change. Our updates carry no prerequisites, so a
// prerequisite failure says the server does not process updates as RFC 2136 says, and NXDOMAIN
// says the zone is not there.
t.test('registrar: every refusal of the update is told in words, with what to check', async (t) => {
  const cases: [string, number, RegExp][] = [
    ['YXRRSET', RCODE.YXRRSET, /prerequisite.*dns\.registration\.server/],
    ['NXRRSET', RCODE.NXRRSET, /prerequisite.*dns\.registration\.server/],
    ['YXDOMAIN', RCODE.YXDOMAIN, /prerequisite.*dns\.registration\.server/],
    ['NXDOMAIN', RCODE.NXDOMAIN, /zone branch\.test.*dns\.registration\.domains/],
    ['rcode 12', 12, /rcode 12.*its own log/],
    ['REFUSED', RCODE.REFUSED, /update policy.*kms-key/],
    ['NOTZONE', RCODE.NOTZONE, /dns\.registration\.hostName/],
    ['FORMERR', RCODE.FORMERR, /could not parse/],
    // Unsigned NOTAUTH: either the key is unknown there or the server is not the zone's primary.
    ['unsigned NOTAUTH', RCODE.NOTAUTH, /TSIG key "kms-key".*primary/],
  ];
  for (const [label, rcode, words] of cases) {
    const server = await fakeDnsServer(t, (q) => (opcodeOf(q) === 5 ? bareAnswer(q, rcode) : bareAnswer(q, RCODE.NOERROR)));
    const { reg, lines } = registrarAgainst(t, server.address);
    const [result] = await reg.ready;
    t.equal(result?.ok, false, `${label}: not published`);
    t.match(result?.reason, words, `${label}: ${result?.reason}`);
    t.ok(
      lines.some((l) => l.level === 'warn' && l.obj.event === 12293 && words.test(l.msg ?? '')),
      `${label}: logged as event 12293 with the reason`,
    );
    t.match(reg.status().lastError, words, `${label}: /healthz and /metrics read the same reason`);
    await reg.stop();
  }
});

// Held: answers that must never count as a published record, each named for what it is.
t.test('registrar: unsigned or badly signed answers to a signed update are never success', async (t) => {
  const cases: [string, Behave, string, RegExp][] = [
    ['unsigned NOERROR', (q) => bareAnswer(q, RCODE.NOERROR), 'KMS_ERR_DNS_TSIG_BAD', /without a TSIG signature/],
    ['TSIG error BADSIG', (q) => tsigErrorAnswer(q, RCODE.NOTAUTH, 16), 'KMS_ERR_DNS_TSIG_BAD', /secret of key "kms-key"/],
    ['TSIG error BADKEY', (q) => tsigErrorAnswer(q, RCODE.NOTAUTH, RCODE.BADKEY), 'KMS_ERR_DNS_TSIG_BAD', /does not know the TSIG key/],
    ['TSIG error BADTIME', (q) => tsigErrorAnswer(q, RCODE.NOTAUTH, RCODE.BADTIME), 'KMS_ERR_DNS_TSIG_BAD', /clocks.*NTP/],
    [
      'a NOERROR whose MAC is garbage',
      (q) => {
        const a = tsigErrorAnswer(q, RCODE.NOERROR, 0);
        // A 32-byte MAC of zeros in place of the empty one.
        const macSizeAt = a.length - 6 - 2;
        const withMac = Buffer.concat([a.subarray(0, macSizeAt), Buffer.from([0, 32]), Buffer.alloc(32), a.subarray(macSizeAt + 2)]);
        const rdlenAt = a.length - (wireName('hmac-sha256').length + 16) - 2;
        withMac.writeUInt16BE(withMac.readUInt16BE(rdlenAt) + 32, rdlenAt);
        return withMac;
      },
      'KMS_ERR_DNS_TSIG_BAD',
      /does not verify/,
    ],
    [
      'garbage bytes',
      (q) => Buffer.concat([bareAnswer(q, 0).subarray(0, 12), Buffer.alloc(40, 0xff)]),
      'KMS_ERR_DNS_UPDATE_FAILED',
      /parse/,
    ],
    [
      'TC over UDP, then a TCP server that never answers',
      (q, transport) => {
        if (transport === 'tcp') return null;
        const a = bareAnswer(q, RCODE.NOERROR);
        a[2]! |= 0x02;
        return a;
      },
      'KMS_ERR_DNS_SERVER_UNREACHABLE',
      /no answer over TCP/,
    ],
  ];
  for (const [label, behave, code, words] of cases) {
    const server = await fakeDnsServer(t, (q, transport) => (opcodeOf(q) === 5 ? behave(q, transport) : bareAnswer(q, RCODE.NOERROR)));
    const { reg } = registrarAgainst(t, server.address);
    const [result] = await reg.ready;
    t.equal(result?.ok, false, `${label}: not published`);
    t.equal(result?.code, code, `${label}: ${result?.code}`);
    t.match(result?.reason, words, `${label}: ${result?.reason}`);
    t.equal(reg.status().lastSuccessMs, null, `${label}: status never says it succeeded`);
    t.ok((reg.status().retryDelayMs ?? 0) > 0, `${label}: a retry is scheduled`);
    await reg.stop();
  }
});

// Held: the update's UDP socket is connected to the server, so a datagram with our message ID
// sent from another port (an off-path spoofer who guessed it) never reaches the registrar; the
// server's own answer, sent a moment later, is the one reported.
t.test("registrar: a spoofed answer from another port is not taken for the server's", async (t) => {
  const bind = async (): Promise<dgram.Socket> => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    t.teardown(() => s.close());
    return s;
  };
  const spoofer = await bind();
  const server = await bind(); // UDP only: nothing listens on its port over TCP
  let spoofed = 0;
  server.on('message', (q, from) => {
    if (opcodeOf(q) !== 5) return void server.send(bareAnswer(q, RCODE.NOERROR), from.port, from.address);
    // The spoof: the right ID, "truncated, ask again over TCP", from the wrong port.
    const fake = bareAnswer(q, RCODE.NOERROR);
    fake[2]! |= 0x02;
    spoofer.send(fake, from.port, from.address, () => {
      spoofed++;
      // Then the real server's answer, from the port the update went to.
      setTimeout(() => server.send(bareAnswer(q, RCODE.NOTZONE), from.port, from.address), 30);
    });
  });
  const { reg } = registrarAgainst(t, `127.0.0.1:${(server.address() as net.AddressInfo).port}`, { timeoutMs: 500 });
  const [result] = await reg.ready;
  t.equal(spoofed, 1, 'the spoof was sent');
  t.equal(result?.ok, false, 'not published');
  t.match(result?.reason, /not inside zone/, `the real server's answer (NOTZONE) is the one reported: ${result?.reason}`);
});

// ------------------------------------------------------------------------------ dns check

/** The name and type asked in `q`, the name as sent (case kept). */
function questionOf(q: Buffer): { name: string; type: number } {
  const labels: string[] = [];
  let at = 12;
  while (q[at]! !== 0) {
    labels.push(q.subarray(at + 1, at + 1 + q[at]!).toString('latin1'));
    at += q[at]! + 1;
  }
  return { name: labels.join('.'), type: q.readUInt16BE(at + 1) };
}

function rr(name: string, type: number, rdata: Buffer, ttl = 60): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(1, 2);
  h.writeUInt32BE(ttl, 4);
  h.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([wireName(name), h, rdata]);
}

function srvData(priority: number, weight: number, port: number, target: string): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(priority, 0);
  b.writeUInt16BE(weight, 2);
  b.writeUInt16BE(port, 4);
  return Buffer.concat([b, wireName(target)]);
}

/** An authoritative answer to `q` with `records` (TC and no records over UDP past 512 bytes). */
function answerWith(q: Buffer, transport: 'udp' | 'tcp', records: Buffer[]): Buffer {
  const head = bareAnswer(q, RCODE.NOERROR);
  head[2]! |= 0x04; // AA
  head.writeUInt16BE(records.length, 6);
  const full = Buffer.concat([head, ...records]);
  if (transport === 'tcp' || full.length <= 512) return full;
  head[2]! |= 0x02;
  head.writeUInt16BE(0, 6);
  return head;
}

/** A resolver that answers SRV for _vlmcs._tcp.<domain> with `srv` and every A query with 127.0.0.1. */
async function lyingResolver(t: Test, srv: (asked: string) => Buffer[]): Promise<string> {
  const server = await fakeDnsServer(t, (q, transport) => {
    const { name, type } = questionOf(q);
    if (type === RR_TYPE.SRV) return answerWith(q, transport, srv(name));
    if (type === RR_TYPE.A) return answerWith(q, transport, [rr(name, RR_TYPE.A, Buffer.from([127, 0, 0, 1]))]);
    return answerWith(q, transport, []);
  });
  return server.address;
}

async function runCheck(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const code = await dnsCheckCommand.run(args, { stdout, stderr, env: {} });
  return { code, out, err };
}

const D = 'x.test';
const S = `_vlmcs._tcp.${D}`;

// A record whose target is "." says the service is decidedly not available in the domain (RFC
// 2782). The check asked DNS for the addresses of the root, probed whatever a resolver gave
// back, and told the admin "no TCP connection to  port 1688" with an empty host name.
t.test('dns check: an SRV target of "." is reported as "no service here", not probed', async (t) => {
  const addr = await lyingResolver(t, () => [rr(S, RR_TYPE.SRV, srvData(0, 0, 1688, '.'))]);
  const probed: string[] = [];
  const probe = async (host: string, port: number): Promise<ProbeResult> => {
    probed.push(`${host}:${port}`);
    return { ok: true, epid: 'x', count: 50 };
  };
  const resolver = createSystemResolver({ server: { host: '127.0.0.1', port: Number(addr.split(':')[1]) }, timeoutMs: 1000 });
  const r = await checkDiscovery({ domain: D }, { resolver, probe });
  t.same(probed, [], 'nothing probed for the root');
  t.equal(r.ok, false, 'no client activates through that record');
  t.equal(r.hresult, HRESULT.NO_KMS_HOST, 'the client shows 0xC004F074');
  t.match(r.attempts[0]?.explain, /"\."/, `the attempt names the target "." (${r.attempts[0]?.explain})`);
  t.match(r.attempts[0]?.explain, /RFC 2782.*not available/, 'and says what it means');
  const backup = await lyingResolver(t, () => [
    rr(S, RR_TYPE.SRV, srvData(0, 0, 9, 'kms.x.test')),
    rr(S, RR_TYPE.SRV, srvData(1, 0, 1688, '.')),
  ]);
  const table = await runCheck(['--domain', D, '--server', backup, '--timeout', '1']);
  t.match(table.out, /so "\." \(meant as backup\)/, 'the warning about backups names the root as "."');
  t.match(table.out, /priority 1 {2}weight 0 {2}port 1688 {2}\.\n/, 'the listing too');
});

// Port 0 is no port a host can listen on: the check connected to it, and told the admin that the
// host was down or that a firewall dropped the connection.
t.test('dns check: an SRV record naming port 0 is called broken, not probed', async (t) => {
  const addr = await lyingResolver(t, () => [rr(S, RR_TYPE.SRV, srvData(65535, 65535, 0, 'a.x.test'))]);
  const out = await runCheck(['--domain', D, '--server', addr, '--timeout', '2', '--json']);
  const report = JSON.parse(out.out) as { attempts: { explain: string; tries: unknown[]; hresult: number }[]; hresult: number };
  t.equal(out.code, 1, 'exit 1');
  t.equal(report.hresult, HRESULT.NO_KMS_HOST, '0xC004F074 overall');
  t.same(report.attempts[0]?.tries, [], 'not probed');
  t.match(report.attempts[0]?.explain, /port 0/, String(report.attempts[0]?.explain));
  t.notMatch(report.attempts[0]?.explain, /firewall|host is down/, 'not blamed on the network');
});

// A zone (wrong or hostile) listing a thousand records made `dns check` print every one and one
// port warning per record: 2,400 lines and 130 kB on the admin's terminal.
t.test('dns check: a thousand records make a report of bounded length that still says how many', async (t) => {
  const addr = await lyingResolver(t, () =>
    Array.from({ length: 1200 }, (_, i) => rr(S, RR_TYPE.SRV, srvData(i % 3, 0, 2000 + i, `k${i}.x.test`))),
  );
  const table = await runCheck(['--domain', D, '--server', addr, '--timeout', '2', '--port', '1688']);
  const lines = table.out.split('\n');
  t.ok(lines.length <= 120, `lines printed: ${lines.length}`);
  t.match(table.out, /1200 records/, 'the count is given');
  t.match(table.out, /1200 records name another port than 1688/, 'one warning for the ports, with the count');
  const json = JSON.parse((await runCheck(['--domain', D, '--server', addr, '--timeout', '2', '--port', '1688', '--json'])).out);
  t.equal(json.records.length, 1200, 'the JSON report still holds every record');
  t.ok(json.warnings.length <= 5, `warnings: ${json.warnings.length}`);
});

// Held: names with terminal escapes reach the terminal inert (c-ares escapes them, inert() too).
t.test('dns check: a target with terminal escapes and bidi controls is printed inert', async (t) => {
  const addr = await lyingResolver(t, () => [rr(S, RR_TYPE.SRV, srvData(0, 0, 9, 'a\x1b]0;pwn\x07\x9b2J\u202e.x.test'))]);
  for (const format of ['table', 'json', 'csv']) {
    const r = await runCheck(['--domain', D, '--server', addr, '--timeout', '2', '--format', format]);
    t.notMatch(r.out, /[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e]/, `${format}: no control reaches the terminal`);
    t.match(r.out, /pwn/, `${format}: the name is still shown`);
  }
});

/** The dns check command's JSON report against `addr`. */
async function jsonReport(addr: string, extra: string[] = []) {
  const r = await runCheck(['--domain', D, '--server', addr, '--timeout', '1', '--json', ...extra]);
  return {
    code: r.code,
    report: JSON.parse(r.out) as {
      ok: boolean;
      code?: string;
      hresult?: number;
      explain: string;
      warnings: string[];
      records: { target: string; port: number }[];
      attempts: { record: { target: string }; explain: string }[];
    },
  };
}

// node's resolver (c-ares) took SRV records owned by any name as the answer: a resolver (or a
// spoofer) answering the query for _vlmcs._tcp.x.test with a record of _vlmcs._tcp.evil.test
// had `dns check` probe evil.test and report it as the host clients of x.test would use.
t.test('dns check: SRV records for another name than asked are not the answer, and are pointed out', async (t) => {
  const foreign = rr('_vlmcs._tcp.evil.test', RR_TYPE.SRV, srvData(0, 0, 9, 'evil.test'));
  const only = await jsonReport(await lyingResolver(t, () => [foreign]));
  t.equal(only.code, 1, 'exit 1');
  t.same(only.report.records, [], 'no record taken');
  t.equal(only.report.code, 'KMS_ERR_DNS_NO_RECORDS', `no SRV records for the name asked (${only.report.explain})`);
  t.match(only.report.explain, /another name/, 'the explanation says what came instead');
  const mixed = await jsonReport(await lyingResolver(t, () => [foreign, rr(S, RR_TYPE.SRV, srvData(0, 0, 9, 'kms.x.test'))]));
  t.same(
    mixed.report.records.map((r) => r.target),
    ['kms.x.test'],
    'only the record of the name asked',
  );
  t.match(mixed.report.warnings.join('\n'), /1 SRV record for another name .*ignored/, 'a warning names the ignored record');
});

// A CNAME loop in the answer was reported as "exists but holds no SRV records; publish one":
// the admin would publish an SRV record next to the loop instead of fixing it.
t.test('dns check: a CNAME loop is named as such', async (t) => {
  const addr = await lyingResolver(t, (asked) => [
    rr(asked, RR_TYPE.CNAME, wireName('b.x.test')),
    rr('b.x.test', RR_TYPE.CNAME, wireName('c.x.test')),
    rr('c.x.test', RR_TYPE.CNAME, wireName(asked)),
  ]);
  const { report } = await jsonReport(addr);
  t.equal(report.ok, false, 'no host');
  t.equal(report.hresult, HRESULT.DNS_NO_RECORDS, 'a client finds no records (0x8007251D)');
  t.match(report.explain, /CNAME loop/, report.explain);
});

// Held: DNS names are case-insensitive (and resolvers using 0x20 mix the case of the question):
// an answer whose question and records come back in another case is the answer.
t.test('dns check: an answer in another letter case is accepted', async (t) => {
  const swap = (s: string): string => [...s].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');
  const server = await fakeDnsServer(t, (q, transport) => {
    const { name, type } = questionOf(q);
    const shouted = Buffer.from(q);
    shouted.write(swap(q.subarray(12, questionEnd(q) - 4).toString('latin1')), 12, 'latin1');
    if (type === RR_TYPE.SRV) return answerWith(shouted, transport, [rr(swap(name), RR_TYPE.SRV, srvData(0, 0, 9, 'KMS.X.TEST'))]);
    if (type === RR_TYPE.A) return answerWith(shouted, transport, [rr(swap(name), RR_TYPE.A, Buffer.from([127, 0, 0, 1]))]);
    return answerWith(shouted, transport, []);
  });
  const { report } = await jsonReport(server.address);
  t.equal(report.records.length, 1, 'the record is found');
  t.match(report.attempts[0]?.explain, /no TCP connection/, `and probed (${report.attempts[0]?.explain})`);
});

// An answer to another question (with our message ID) is no answer: said so, with the code a
// client shows when its DNS server fails it.
t.test('dns check: an answer to another question, or SERVFAIL, is a DNS server failing the client', async (t) => {
  const other = await fakeDnsServer(t, (q, transport) => {
    const swapped = Buffer.concat([q.subarray(0, 12), wireName('_vlmcs._tcp.evil.test'), q.subarray(questionEnd(q) - 4, questionEnd(q))]);
    return answerWith(swapped, transport, [rr('_vlmcs._tcp.evil.test', RR_TYPE.SRV, srvData(0, 0, 9, 'evil.test'))]);
  });
  const a = await jsonReport(other.address);
  t.equal(a.report.code, 'KMS_ERR_DNS_SERVER_UNREACHABLE', a.report.explain);
  t.equal(a.report.hresult, HRESULT.DNS_NAME_NOT_FOUND, 'the client shows 0x8007232B');
  t.match(a.report.explain, /another question/, 'the explanation says what came');
  const failing = await fakeDnsServer(t, (q) => bareAnswer(q, RCODE.SERVFAIL));
  const b = await jsonReport(failing.address);
  t.equal(b.report.code, 'KMS_ERR_DNS_SERVER_UNREACHABLE');
  t.match(b.report.explain, /SERVFAIL/, b.report.explain);
});

// Held: a resolver that answers the SRV query and then stays silent for every address lookup
// bounds the check: each of the (at most 16) records is given up on and explained.
t.test('dns check: a resolver silent after the SRV answer still gives a report, record by record', async (t) => {
  const server = await fakeDnsServer(t, (q, transport) => {
    const { type } = questionOf(q);
    if (type !== RR_TYPE.SRV) return null;
    return answerWith(
      q,
      transport,
      Array.from({ length: 2 }, (_, i) => rr(S, RR_TYPE.SRV, srvData(0, 0, 9, `k${i}.x.test`))),
    );
  });
  const resolver = createSystemResolver({ server: { host: '127.0.0.1', port: server.port }, timeoutMs: 100 });
  const probed: string[] = [];
  const r = await checkDiscovery(
    { domain: D },
    {
      resolver,
      probe: async (host) => {
        probed.push(host);
        return { ok: true, epid: 'x', count: 1 };
      },
    },
  );
  t.equal(r.attempts.length, 2, 'each record tried');
  t.same(probed, [], 'nothing probed: no address came');
  t.ok(
    r.attempts.every((a) => /could not be resolved/.test(a.explain)),
    r.attempts.map((a) => a.explain).join(' | '),
  );
  t.equal(r.hresult, HRESULT.NO_KMS_HOST, '0xC004F074 overall');
});

// A resolver that answered the SRV query and then timed out on every address lookup held
// `dns check` for minutes: c-ares waited about four times --timeout per lookup (20 s at the
// default 5 s), times 16 records, before any report. The check now stops trying further
// records once its budget (12 × --timeout) is spent, and says how many it left. A stub clock
// stands in for the minutes.
t.test('dns check: a slow resolver cannot hold the check past its budget; the records left are counted', async (t) => {
  let clock = 0;
  const looked: string[] = [];
  const r = await checkDiscovery(
    { domain: D, budgetMs: 60_000, now: () => clock },
    {
      resolver: {
        description: 'stub',
        srv: async () => ({
          ok: true,
          value: Array.from({ length: 16 }, (_, i) => ({ priority: i, weight: 0, port: 9, target: `k${i}.x.test` })),
        }),
        addresses: async (host) => {
          looked.push(host);
          clock += 20_000; // each lookup times out after 20 s
          return { ok: false, kind: 'unreachable', detail: 'ETIMEOUT' };
        },
      },
      probe: async () => ({ ok: true, epid: 'x', count: 1 }),
    },
  );
  t.equal(looked.length, 3, `lookups made before the budget ran out: ${looked.length}`);
  t.equal(r.attempts.length, 3, 'one attempt per record tried');
  t.match(r.warnings.join('\n'), /stopped after 60 s: 13 more records in client order not checked/, r.warnings.join(' | '));
  t.equal(r.hresult, HRESULT.NO_KMS_HOST);
  t.match(r.explain, /ran out of time/, r.explain);
});

// Two SRV targets that are aliases of each other were reported as "has no A or AAAA record",
// sending the admin to add addresses next to the loop.
t.test('dns check: SRV targets that are aliases of each other are named as a CNAME loop', async (t) => {
  const server = await fakeDnsServer(t, (q, transport) => {
    const { name, type } = questionOf(q);
    if (type === RR_TYPE.SRV)
      return answerWith(q, transport, [rr(S, RR_TYPE.SRV, srvData(0, 0, 9, 'a.x.test')), rr(S, RR_TYPE.SRV, srvData(1, 0, 9, 'b.x.test'))]);
    const other = name.startsWith('a') ? 'b.x.test' : 'a.x.test';
    return answerWith(q, transport, [rr(name, RR_TYPE.CNAME, wireName(other)), rr(other, RR_TYPE.CNAME, wireName(name))]);
  });
  const { report } = await jsonReport(server.address);
  t.equal(report.attempts.length, 2, 'both records tried');
  t.ok(
    report.attempts.every((a) => /CNAME loop/.test(a.explain)),
    report.attempts.map((a) => a.explain).join(' | '),
  );
  t.equal(report.hresult, HRESULT.NO_KMS_HOST, '0xC004F074 overall');
});

// Held: rounds against a server that never answers, one after another (retries, refreshes,
// address changes), leave no socket behind: each exchange closes its socket when it gives up.
t.test('registrar: many silent rounds leave no sockets behind', async (t) => {
  const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPSocketWrap').length;
  const server = await fakeDnsServer(t, (q, transport) => {
    if (transport === 'tcp') return null; // accepts, never answers
    const tc = bareAnswer(q, RCODE.NOERROR);
    tc[2]! |= 0x02; // "ask again over TCP"
    return opcodeOf(q) === 5 ? tc : null;
  });
  const baseline = sockets();
  const { reg } = registrarAgainst(t, server.address, { timeoutMs: 30, retryMs: 1 });
  for (let i = 0; i < 10; i++) await reg.registerNow();
  t.ok(server.updates >= 10, `updates sent: ${server.updates}`);
  await reg.stop();
  const after = await until(() => (sockets() <= baseline ? sockets() + 1 : 0), 'the sockets of every round closed', {
    everyMs: 20,
    ms: 5000,
  });
  t.ok(after - 1 <= baseline, `sockets back to ${after - 1} (${baseline} before)`);
});

// A BADTIME answer carries the server's clock (RFC 8945 §5.2.3); the admin was only told the
// clocks were "more than 5 minutes apart", not which one is wrong nor by how much.
t.test("registrar: BADTIME says how far the DNS server's clock is from ours", async (t) => {
  const serverNow = Math.floor(Date.now() / 1000) + 3600;
  const other = Buffer.alloc(6);
  other.writeUInt32BE(serverNow, 2);
  const server = await fakeDnsServer(t, (q) =>
    opcodeOf(q) === 5 ? tsigErrorAnswer(q, RCODE.NOTAUTH, RCODE.BADTIME, other) : bareAnswer(q, RCODE.NOERROR),
  );
  const { reg } = registrarAgainst(t, server.address);
  const [result] = await reg.ready;
  t.equal(result?.code, 'KMS_ERR_DNS_TSIG_BAD');
  t.match(result?.reason, new RegExp(`clock reads ${new Date(serverNow * 1000).toISOString().slice(0, 16)}`), String(result?.reason));
  t.match(result?.reason, /\b3[56]\d\d s ahead of ours/, 'the gap and its direction');
  // A server time of 2^48 - 1 seconds is past any date: the plain explanation, no crash of the round.
  const far = await fakeDnsServer(t, (q) =>
    opcodeOf(q) === 5 ? tsigErrorAnswer(q, RCODE.NOTAUTH, RCODE.BADTIME, Buffer.alloc(6, 0xff)) : bareAnswer(q, RCODE.NOERROR),
  );
  const [farResult] = await registrarAgainst(t, far.address).reg.ready;
  t.match(farResult?.reason, /clocks .* apart \(check NTP\)$/, String(farResult?.reason));
});

// RFC 8945 §5.4: an unsigned (or unverifiable) answer to a signed request may be spoofed; the
// client discards it and waits for a signed one until its timeout. The registrar took the first
// answer with the right ID: anyone who could guess it (or see the update go by) made every
// registration fail with an unsigned REFUSED, BADKEY or "no TSIG", sent ahead of the server's.
t.test("registrar: unsigned answers sent ahead of the server's signed one are discarded", async (t) => {
  const fakes: [string, (q: Buffer) => Buffer][] = [
    ['unsigned REFUSED', (q) => bareAnswer(q, RCODE.REFUSED)],
    ['unsigned NOERROR', (q) => bareAnswer(q, RCODE.NOERROR)],
    ['TSIG error BADKEY', (q) => tsigErrorAnswer(q, RCODE.NOTAUTH, RCODE.BADKEY)],
  ];
  for (const [label, fake] of fakes) {
    const bind = async (): Promise<dgram.Socket> => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      t.teardown(() => s.close());
      return s;
    };
    const server = await bind();
    server.on('message', (q, from) => {
      if (opcodeOf(q) !== 5) return void server.send(bareAnswer(q, RCODE.NOERROR), from.port, from.address);
      // The spoof wins the race (same address and port: an on-path attacker, or one who guessed the ID) ...
      server.send(fake(q), from.port, from.address, () => {
        // ... then the server's own signed answer.
        setTimeout(() => {
          try {
            server.send(signedAnswer(q), from.port, from.address);
          } catch {
            // the test is over (the registrar took the spoof): the socket is closed
          }
        }, 20);
      });
    });
    const { reg } = registrarAgainst(t, `127.0.0.1:${(server.address() as net.AddressInfo).port}`, { timeoutMs: 2000 });
    const [result] = await reg.ready;
    t.equal(result?.ok, true, `${label}: published (${result?.reason ?? 'ok'})`);
    t.equal(reg.status().lastError, null, `${label}: status clean`);
    await reg.stop();
  }
});

// Held: our test signer is right — the server's signed refusal is believed at once.
t.test('registrar: a signed refusal is reported as the server said it', async (t) => {
  const server = await fakeDnsServer(t, (q) => (opcodeOf(q) === 5 ? signedAnswer(q, RCODE.REFUSED) : bareAnswer(q, RCODE.NOERROR)));
  const { reg } = registrarAgainst(t, server.address, { timeoutMs: 5000 });
  const [result] = await reg.ready;
  t.equal(result?.code, 'KMS_ERR_DNS_UPDATE_FAILED');
  t.match(result?.reason, /update policy/, String(result?.reason));
});

// An answer to another question with our ID (a spoof, or a late answer to an earlier query) ended
// the lookup as a failing server, though the right answer came right after it.
t.test('dns check: an answer to another question is passed over while the right one comes', async (t) => {
  const server = dgram.createSocket('udp4');
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  server.on('message', (q, from) => {
    const { name, type } = questionOf(q);
    const right =
      type === RR_TYPE.SRV
        ? answerWith(q, 'udp', [rr(S, RR_TYPE.SRV, srvData(0, 0, 9, 'kms.x.test'))])
        : answerWith(q, 'udp', type === RR_TYPE.A ? [rr(name, RR_TYPE.A, Buffer.from([127, 0, 0, 1]))] : []);
    const wrongQ = Buffer.concat([q.subarray(0, 12), wireName('_vlmcs._tcp.evil.test'), q.subarray(questionEnd(q) - 4, questionEnd(q))]);
    const wrong = answerWith(wrongQ, 'udp', [rr('_vlmcs._tcp.evil.test', RR_TYPE.SRV, srvData(0, 0, 9, 'evil.test'))]);
    server.send(wrong, from.port, from.address, () =>
      setTimeout(() => {
        try {
          server.send(right, from.port, from.address);
        } catch {
          // the test is over
        }
      }, 20),
    );
  });
  const { report } = await jsonReport(`127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  t.same(
    report.records.map((r) => r.target),
    ['kms.x.test'],
    `the right answer is taken (${report.explain})`,
  );
});
