// Red-team findings on the appliance as a DNS client: RFC 2136 registration against a site DNS
// server that is broken, misconfigured or hostile, and `dns check` against a resolver that lies.
// Each test is an attack that once worked (or a line of attack that held, kept so it cannot
// break). Fake servers on 127.0.0.1, port 0; bounded waits; no timing assertions.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { DEFAULTS } from '../../src/config/defaults';
import { startRegistrar } from '../../src/dns/registrar';
import { RCODE, RR_TYPE } from '../../src/protocol/dns/message';
import { until } from '../wait';
import { captureLog } from './capture-log';

const ZONE = 'branch.test';

type Behave = (query: Buffer, transport: 'udp' | 'tcp') => Buffer | null;

/** A site DNS server on one loopback port, UDP and TCP, each message answered by `behave` (null: silence). */
async function fakeDnsServer(t: Test, behave: Behave): Promise<{ address: string; port: number; readonly updates: number }> {
  let updates = 0;
  const isUpdate = (q: Buffer): boolean => q.length >= 4 && ((q[2]! >> 3) & 0xf) === 5;
  const tcp = net.createServer((s) => {
    let got = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
      const q = got.subarray(2, 2 + got.readUInt16BE(0));
      if (isUpdate(q)) updates++;
      const a = behave(Buffer.from(q), 'tcp');
      if (a) s.end(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
    });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (q, from) => {
    if (isUpdate(q)) updates++;
    const a = behave(Buffer.from(q), 'udp');
    if (a) udp.send(a, from.port, from.address);
  });
  await new Promise<void>((r) => udp.bind(port, '127.0.0.1', () => r()));
  t.teardown(() => {
    udp.close();
    return new Promise<void>((r) => tcp.close(() => r()));
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    get updates() {
      return updates;
    },
  };
}

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

/** An unsigned answer carrying a TSIG RR whose error field is `tsigError` and whose MAC is empty (RFC 8945 §5.3.2). */
function tsigErrorAnswer(q: Buffer, rcode: number, tsigError: number): Buffer {
  const head = bareAnswer(q, rcode);
  head.writeUInt16BE(1, 10);
  const alg = wireName('hmac-sha256');
  const rdata = Buffer.alloc(alg.length + 16);
  alg.copy(rdata, 0);
  let at = alg.length;
  rdata.writeUInt32BE(Math.floor(Date.now() / 1000), at + 2);
  rdata.writeUInt16BE(300, at + 6);
  rdata.writeUInt16BE(0, at + 8); // MAC size 0
  at += 10;
  rdata.writeUInt16BE(q.readUInt16BE(0), at);
  rdata.writeUInt16BE(tsigError, at + 2);
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
      tsig: { keyName: 'kms-key', algorithm: 'hmac-sha256', secretBase64: Buffer.alloc(32, 3).toString('base64'), secretFile: '' },
    },
    { kmsPort: 1688, hostName: 'kms01', addresses: options.addresses ?? (() => []), log },
    { addressPollMs: options.addressPollMs ?? 0, timeoutMs: options.timeoutMs ?? 300, retryMs: options.retryMs ?? 60_000 },
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
