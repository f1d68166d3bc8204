// Hostile DNS clients over loopback, each beside a good client (UDP and TCP from another
// address): the good client must be answered and memory must stay bounded. Every loop is bounded
// by a count and a time box; nothing asserts how fast anything was.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startDnsServer, type DnsServerHandle } from '../../src/dns/dns-server';
import { addressGroup } from '../../src/net/address-group';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE } from '../../src/protocol/dns/message';
import { seededRandom as prng } from '../prng';
import { settledWithin, until } from '../wait';
import { captureLog, type LogLine } from './capture-log';

const ZONE = 'branch.test';
const SRV_NAME = `_vlmcs._tcp.${ZONE}`;
const NO_RATE_LIMIT = { responsesPerSecond: 100000, burst: 1000000, slip: 0 };

function query(id: number, name = SRV_NAME): Buffer {
  return encodeMessage({
    header: { ...EMPTY_HEADER, id, rd: true },
    questions: [{ name, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}

function frame(m: Buffer): Buffer {
  return Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);
}

async function start(
  t: Test,
  over: Partial<AppConfig['dns']> = {},
  listen = ['127.0.0.1:0'],
): Promise<{ h: DnsServerHandle; lines: LogLine[]; port: number }> {
  const { log, lines } = captureLog();
  const config: AppConfig['dns'] = {
    ...DEFAULTS.dns,
    zones: [
      { domain: ZONE, ttlSeconds: 60, hosts: [{ target: `kms.${ZONE}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }] },
    ],
    rateLimit: NO_RATE_LIMIT,
    ...over,
    tcp: { ...DEFAULTS.dns.tcp, ...over.tcp },
  };
  const h = await startDnsServer(config, { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.10'], log }, listen);
  t.teardown(() => h.close());
  return { h, lines, port: h.addresses[0]!.port };
}

/** The good client: one SRV query, resolves with the answer's SRV count or -1 on silence. */
async function goodUdp(port: number, from = '127.0.0.2', host = '127.0.0.1', timeoutMs = 2000): Promise<number> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((r) => s.bind(0, from, () => r()));
    const answer = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(query(0x600d), port, host);
    const m = await settledWithin(answer, timeoutMs, undefined);
    if (!m) return -1;
    const r = decodeMessage(m);
    return r.header.id === 0x600d && r.header.rcode === 0 ? r.answers.length : -1;
  } finally {
    s.close();
  }
}

function goodTcp(port: number, from = '127.0.0.2', timeoutMs = 3000): Promise<number> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
  const answered = new Promise<number>((resolve) => {
    let got = Buffer.alloc(0);
    s.on('connect', () => s.write(frame(query(0x600d))));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        const r = decodeMessage(got.subarray(2, 2 + got.readUInt16BE(0)));
        resolve(r.header.id === 0x600d && r.header.rcode === 0 ? r.answers.length : -1);
      }
    });
    s.on('error', () => resolve(-1));
    s.on('close', () => resolve(-1));
  });
  return settledWithin(answered, timeoutMs, -1).finally(() => s.destroy());
}

/** True once `s` is closed, false if it is still open after `ms` (a bound for a hung test). */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.closed) return Promise.resolve(true);
  return settledWithin(new Promise<boolean>((resolve) => s.once('close', () => resolve(true))), ms, false);
}

/**
 * Whether `event` comes within `ms`: for "nothing more happens" checks, which have no event to
 * wait on, so the look is short and says so where it is used.
 */
function happensWithin(emitter: EventEmitter, event: string, ms: number): Promise<boolean> {
  let listener: (() => void) | undefined;
  const seen = new Promise<boolean>((resolve) => {
    listener = () => resolve(true);
    emitter.once(event, listener);
  });
  return settledWithin(seen, ms, false).finally(() => emitter.off(event, listener!));
}

/**
 * An upstream resolver that answers nothing while the test runs (the forwarder's queries wait on
 * it). At teardown it answers every query it holds (its own bytes flagged as a response), so the
 * forwarder's waits end with the test instead of keeping the process alive for their 2 s timeout.
 */
async function silentUpstream(t: Test): Promise<{ socket: dgram.Socket; address: string; readonly received: number }> {
  const socket = dgram.createSocket('udp4');
  const held: { query: Buffer; port: number }[] = [];
  socket.on('message', (query, from) => held.push({ query, port: from.port }));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  t.teardown(async () => {
    await Promise.all(
      held.map(({ query, port }) => {
        query[2]! |= 0x80; // QR: a response
        return new Promise((sent) => socket.send(query, port, '127.0.0.1', sent));
      }),
    );
    socket.close();
  });
  return {
    socket,
    address: `127.0.0.1:${socket.address().port}`,
    get received() {
      return held.length;
    },
  };
}

const heapMb = (): number => process.memoryUsage().heapUsed / 2 ** 20;
const logged = (lines: LogLine[], code: string): LogLine[] => lines.filter((l) => l.obj.code === code);

t.test('a client that pipelines queries and never reads is paused by backpressure; the good client is answered', async (t) => {
  const { h, lines, port } = await start(t, { tcp: { ...DEFAULTS.dns.tcp, idleTimeoutSeconds: 2 } });
  const rnd = prng(1);
  const before = heapMb();
  // 8 connections each writing as fast as the kernel takes it (respecting their own socket's
  // backpressure, so the test's memory stays small), until the test ends them or 40 MB is in.
  let written = 0;
  const progress = new EventEmitter();
  const attackers = Array.from({ length: 8 }, () => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.pause(); // never reads
    const batch = Buffer.concat(Array.from({ length: 256 }, () => frame(query(Math.floor(rnd() * 0x10000)))));
    const state = { s, blocked: false };
    const pushMore = (): void => {
      state.blocked = false;
      while (written < 40 * 2 ** 20 && !s.destroyed) {
        written += batch.length;
        if (!s.write(batch)) {
          state.blocked = true; // 'drain' comes only if the server reads
          break;
        }
      }
      if (!state.blocked) s.destroy();
      progress.emit('change');
    };
    s.on('connect', pushMore);
    s.on('drain', pushMore);
    s.on('close', () => progress.emit('change'));
    return state;
  });
  t.teardown(() => {
    for (const a of attackers) a.s.destroy();
  });
  await until(() => h.stats().tcpBackpressure >= 1, 'the server pausing a connection whose replies are unread', { everyMs: 5 });
  t.equal(await goodUdp(port), 1, 'good UDP client answered during the flood');
  t.equal(await goodTcp(port), 1, 'good TCP client answered during the flood');
  // The flood at its height: every attacker stuck on its full socket (or done), the server holding
  // what it read; the heap is measured now, while the attackers still hold their connections.
  await until(() => attackers.every((a) => a.blocked || a.s.destroyed), 'every attacker stuck on an unread socket', {
    on: [{ emitter: progress, events: ['change'] }],
  });
  const grown = heapMb() - before;
  const rssMb = process.memoryUsage().rss / 2 ** 20;
  t.comment(
    `attackers got ${(written / 2 ** 20).toFixed(1)} MB into their sockets (kernel buffers included); ` +
      `heap grew ${grown.toFixed(1)} MB; rss ${rssMb.toFixed(0)} MB`,
  );
  t.ok(h.stats().tcpBackpressure >= 1, 'the server stopped reading while replies were unread');
  t.ok(grown < 100, `heap growth stays bounded (${grown.toFixed(1)} MB)`);
  for (const a of attackers) a.s.destroy();
  t.equal(await goodTcp(port), 1, 'good TCP client answered after the flood');
  const s = h.stats();
  t.ok((s.responsesByRcode.NOERROR ?? 0) > 0, 'NOERROR replies counted');
  t.ok(logged(lines, 'KMS_ERR_DNS_UNREAD_REPLIES').length <= 1 + 1, 'unread replies logged at most once per address');
});

t.test('a 0xFFFF length prefix dripped a byte at a time is closed by the idle deadline, not kept alive', async (t) => {
  // The idle deadline is the behaviour under test, so the test lasts as long as it: 0.5 s (not
  // less, so a busy machine's stall cannot close the good client's connection before its query),
  // with a byte dripped every 0.1 s: five drips a period, each of which would restart a naive timer.
  const { h, lines, port } = await start(t, { tcp: { ...DEFAULTS.dns.tcp, idleTimeoutSeconds: 0.5 } });
  const drips = Array.from({ length: 6 }, () => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    s.on('connect', () => {
      s.write(Buffer.from([0xff, 0xff]));
      timer = setInterval(() => s.write(Buffer.from([0x41])), 100);
    });
    // Eight idle periods: a bound for a drip that keeps the connection alive, not a timing target.
    return closedWithin(s, 4000).finally(() => {
      clearInterval(timer);
      s.destroy();
    });
  });
  t.equal(await goodTcp(port), 1, 'good TCP client answered while the drips run');
  t.equal(await goodUdp(port), 1, 'good UDP client answered while the drips run');
  const closed = await Promise.all(drips);
  t.same(
    closed,
    closed.map(() => true),
    'every drip connection was closed by the server within the time box',
  );
  t.equal(logged(lines, 'KMS_ERR_DNS_TCP_TIMEOUT').length, 1, 'logged once for the address');
  t.ok(h.stats().tcpClosedDrip >= 6, 'counted');
});

t.test('connections per address are capped; at the total cap the biggest holder loses its oldest idle one', async (t) => {
  const { h, lines, port } = await start(t, { tcp: { ...DEFAULTS.dns.tcp, maxConnectionsPerAddress: 4, maxConnections: 10 } });
  const open = (from: string): Promise<net.Socket> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
      s.on('error', () => undefined);
      s.on('connect', () => resolve(s));
    });
  const mine: net.Socket[] = [];
  for (let i = 0; i < 8; i++) mine.push(await open('127.0.0.1'));
  t.teardown(() => {
    for (const s of mine) s.destroy();
  });
  // The server's own count of the four it holds, beside the four closes, shows the split without
  // waiting to see whether one more closes.
  const closes = new EventEmitter();
  for (const s of mine) s.once('close', () => closes.emit('close'));
  await until(
    () => mine.filter((s) => s.closed).length >= 4 && h.stats().tcpOpen === 4,
    'four connections closed by the server and four held',
    { on: [{ emitter: closes, events: ['close'] }], everyMs: 5 },
  );
  t.equal(mine.filter((s) => s.closed).length, 4, 'four of eight from one address were refused');
  t.equal(logged(lines, 'KMS_ERR_DNS_CONNECTION_LIMIT').length, 1, 'logged once for that address');
  t.equal(h.stats().tcpConnectionsRefused, 4);
  // Fill the total: 3 more addresses holding idle connections.
  const others: net.Socket[] = [];
  for (const from of ['127.0.0.3', '127.0.0.4']) for (let i = 0; i < 3; i++) others.push(await open(from));
  t.teardown(() => {
    for (const s of others) s.destroy();
  });
  // A connect completes in the kernel before the server accepts it: wait for the server's count.
  await until(() => h.stats().tcpOpen === 10, 'the server holding all ten connections', { everyMs: 5 });
  t.equal(h.stats().tcpOpen, 10, 'the total cap is reached');
  t.equal(await goodTcp(port), 1, 'a good client still gets in and is answered');
  t.ok(h.stats().tcpConnectionsEvicted >= 1, 'by closing an idle connection of the biggest holder');
  await until(() => mine.filter((s) => !s.closed).length < 4, "the eviction reaching the biggest holder's socket", {
    on: [{ emitter: closes, events: ['close'] }],
  });
  const stillOpen = mine.filter((s) => !s.closed).length;
  t.ok(stillOpen < 4, `the biggest holder (127.0.0.1) lost one (${stillOpen} left)`);
});

t.test('the per-client rate limit applies to TCP: queries are slowed, none lost', async (t) => {
  // 400 a second after a burst of 10: the 30 held back are released in about 75 ms.
  const { h, lines, port } = await start(t, { rateLimit: { responsesPerSecond: 400, burst: 10, slip: 0 } });
  const N = 40;
  const s = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => s.destroy());
  let n = 0;
  const all = new Promise<void>((resolve) => {
    let got = Buffer.alloc(0);
    s.on('connect', () => s.write(Buffer.concat(Array.from({ length: N }, (_, i) => frame(query(i))))));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      while (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        got = got.subarray(2 + got.readUInt16BE(0));
        if (++n === N) resolve();
      }
    });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
  await settledWithin(all, 4000, undefined);
  t.equal(n, N, 'every pipelined query answered');
  t.ok(h.stats().rateLimited > 0, 'the limiter held some back');
  t.equal(logged(lines, 'KMS_ERR_DNS_RATE_LIMITED').length, 1, 'logged once for the address');
  t.equal(await goodTcp(port), 1, 'another address is not slowed');
});

t.test('queries waiting on a slow upstream are bounded per connection', async (t) => {
  const upstream = await silentUpstream(t);
  const { port } = await start(t, {
    forwarding: { enabled: true, upstream: [upstream.address], allowNetworks: ['127.0.0.0/8'] },
    tcp: { ...DEFAULTS.dns.tcp, maxPendingQueries: 3 },
  });
  // Not from 127.0.0.1: the upstream's own address is never forwarded for (no loops).
  const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  s.on('connect', () => s.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => frame(query(i, `name${i}.example.com`))))));
  await until(() => upstream.received >= 3, 'three queries forwarded', { on: [{ emitter: upstream.socket, events: ['message'] }] });
  t.equal(await goodTcp(port, '127.0.0.2'), 1, 'a good client is answered meanwhile');
  // "No fourth" has no event to wait on: a short look, far inside the upstream's 2 s timeout (only
  // after that would a slot free up and a fourth be forwarded honestly).
  t.notOk(await happensWithin(upstream.socket, 'message', 200), 'no fourth query forwarded');
  t.equal(upstream.received, 3, 'only maxPendingQueries were forwarded while the upstream is silent');
});

t.test('IPv6 clients share one budget per /64; IPv4-mapped addresses count as IPv4', async (t) => {
  t.equal(addressGroup('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(addressGroup('2001:db8:1:2:ffff:ffff:ffff:fffe'), '2001:db8:1:2::/64');
  t.not(addressGroup('2001:db8:1:3::1'), addressGroup('2001:db8:1:2::1'));
  t.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  // Over UDP on ::1 the limiter uses that group: the burst is all one /64 gets. Eight queries from
  // eight sockets (eight ports, one /64); each is either answered or dropped by the limiter, and
  // the server's counters say which, so the wait ends when all eight are accounted for.
  const { h, port } = await start(t, { rateLimit: { responsesPerSecond: 0.1, burst: 5, slip: 0 } }, ['[::1]:0']);
  const answers = new EventEmitter();
  let answered = 0;
  const sockets = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const s = dgram.createSocket('udp6');
      s.on('message', (m) => {
        const r = decodeMessage(m);
        if (r.header.id === 0x600d && r.header.rcode === 0 && r.answers.length === 1) answered++;
        answers.emit('answer');
      });
      await new Promise<void>((r) => s.bind(0, '::1', () => r()));
      return s;
    }),
  );
  t.teardown(() => {
    for (const s of sockets) s.close();
  });
  for (const s of sockets) s.send(query(0x600d), port, '::1');
  const replied = (): number => Object.values(h.stats().responsesByRcode).reduce((a, b) => a + b, 0);
  await until(() => replied() + h.stats().rateLimited >= 8 && answered >= replied(), 'all eight queries answered or dropped', {
    on: [{ emitter: answers, events: ['answer'] }],
    everyMs: 5,
  });
  t.equal(answered, 5, 'the burst, then silence');
  t.equal(replied(), 5, 'no other reply was sent');
  t.ok(h.stats().rateLimited >= 3);
});

t.test('forwarded queries waiting on a silent upstream are bounded in all, over UDP too', async (t) => {
  const upstream = await silentUpstream(t);
  const { port } = await start(t, {
    forwarding: { enabled: true, upstream: [upstream.address], allowNetworks: ['127.0.0.0/8'] },
  });
  const s = dgram.createSocket('udp4');
  let servfail = 0;
  s.on('message', (m) => {
    if ((m[3]! & 0xf) === 2) servfail++;
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.7', () => r()));
  t.teardown(() => s.close());
  // Each query is either forwarded (the upstream sees it) or answered SERVFAIL (we see it); until
  // the upstream's 2 s timeout, nothing else can happen to it, so the two counts account for all.
  const accountedFor = (n: number): Promise<unknown> =>
    until(() => upstream.received + servfail >= n, `${n} queries forwarded or answered SERVFAIL`, {
      on: [
        { emitter: upstream.socket, events: ['message'] },
        { emitter: s, events: ['message'] },
      ],
    });
  // In bursts of 50, each sent once the one before is accounted for: a socket's receive buffer
  // holds a few hundred datagrams, not 400 at once.
  for (let i = 0; i < 400; i++) {
    s.send(query(i, `n${i}.example.com`), port, '127.0.0.1');
    if (i % 50 === 49) await accountedFor(i + 1);
  }
  t.ok(upstream.received <= 256, `at most 256 wait upstream at once (${upstream.received})`);
  t.ok(servfail >= 400 - 256, `the rest are answered SERVFAIL at once (${servfail})`);
  t.equal(await goodUdp(port), 1, 'the zone is still answered');
});
