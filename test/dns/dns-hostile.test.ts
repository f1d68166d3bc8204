// Hostile DNS clients over loopback, each beside a good client (UDP and TCP from another
// address): the good client must be answered and memory must stay bounded. Every loop is bounded
// by a count and a time box; nothing asserts how fast anything was.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startDnsServer, type DnsServerHandle } from '../../src/dns/dns-server';
import type { DnsLog } from '../../src/dns/dns-responder';
import { addressGroup } from '../../src/net/address-group';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE } from '../../src/protocol/dns/message';
import { seededRandom as prng } from '../prng';

interface LogLine {
  level: string;
  obj: Record<string, unknown>;
}

function captureLog(): { log: DnsLog; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object) => lines.push({ level, obj: obj as Record<string, unknown> });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

const ZONE = 'branch.test';
const SRV_NAME = `_vlmcs._tcp.${ZONE}`;
const NO_RATE_LIMIT = { responsesPerSecond: 100000, burst: 1000000 };

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
function goodUdp(port: number, from = '127.0.0.2', host = '127.0.0.1', timeoutMs = 2000): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(-1);
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      const r = decodeMessage(m);
      resolve(r.header.id === 0x600d && r.header.rcode === 0 ? r.answers.length : -1);
    });
    s.bind(0, from, () => s.send(query(0x600d), port, host));
  });
}

function goodTcp(port: number, from = '127.0.0.2', timeoutMs = 3000): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let got = Buffer.alloc(0);
    const done = (n: number): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(n);
    };
    const timer = setTimeout(() => done(-1), timeoutMs);
    s.on('connect', () => s.write(frame(query(0x600d))));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        const r = decodeMessage(got.subarray(2, 2 + got.readUInt16BE(0)));
        done(r.header.id === 0x600d && r.header.rcode === 0 ? r.answers.length : -1);
      }
    });
    s.on('error', () => done(-1));
  });
}

const heapMb = (): number => process.memoryUsage().heapUsed / 2 ** 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const logged = (lines: LogLine[], code: string): LogLine[] => lines.filter((l) => l.obj.code === code);

t.test('a client that pipelines queries and never reads is paused by backpressure; the good client is answered', async (t) => {
  const { h, lines, port } = await start(t, { tcp: { ...DEFAULTS.dns.tcp, idleTimeoutSeconds: 2 } });
  const rnd = prng(1);
  const before = heapMb();
  // 8 connections each writing as fast as the kernel takes it (respecting their own socket's
  // backpressure, so the test's memory stays small), for at most 2 s or 40 MB.
  let written = 0;
  const deadline = Date.now() + 2000;
  const attackers = Array.from({ length: 8 }, () => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.pause(); // never reads
    const batch = Buffer.concat(Array.from({ length: 256 }, () => frame(query(Math.floor(rnd() * 0x10000)))));
    return new Promise<void>((resolve) => {
      const pushMore = (): void => {
        while (Date.now() < deadline && written < 40 * 2 ** 20 && !s.destroyed) {
          written += batch.length;
          if (!s.write(batch)) return; // 'drain' comes only if the server reads
        }
        s.destroy();
        resolve();
      };
      s.on('connect', pushMore);
      s.on('drain', pushMore);
      s.on('close', () => resolve());
      setTimeout(() => {
        s.destroy();
        resolve();
      }, 2500);
    });
  });
  await sleep(300);
  t.equal(await goodUdp(port), 1, 'good UDP client answered during the flood');
  t.equal(await goodTcp(port), 1, 'good TCP client answered during the flood');
  await Promise.all(attackers);
  const grown = heapMb() - before;
  t.comment(
    `attackers got ${(written / 2 ** 20).toFixed(1)} MB into their sockets (kernel buffers included); heap grew ${grown.toFixed(1)} MB; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`,
  );
  t.ok(h.stats().tcpBackpressure >= 1, 'the server stopped reading while replies were unread');
  t.ok(grown < 100, `heap growth stays bounded (${grown.toFixed(1)} MB)`);
  t.equal(await goodTcp(port), 1, 'good TCP client answered after the flood');
  const s = h.stats();
  t.ok((s.responsesByRcode.NOERROR ?? 0) > 0, 'NOERROR replies counted');
  t.ok(logged(lines, 'KMS_ERR_DNS_UNREAD_REPLIES').length <= 1 + 1, 'unread replies logged at most once per address');
});

t.test('a 0xFFFF length prefix dripped a byte at a time is closed by the idle deadline, not kept alive', async (t) => {
  const { h, lines, port } = await start(t, { tcp: { ...DEFAULTS.dns.tcp, idleTimeoutSeconds: 1 } });
  const drips = Array.from({ length: 6 }, () => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    s.on('connect', () => {
      s.write(Buffer.from([0xff, 0xff]));
      timer = setInterval(() => s.write(Buffer.from([0x41])), 150);
    });
    return new Promise<boolean>((resolve) => {
      const box = setTimeout(() => {
        clearInterval(timer);
        s.destroy();
        resolve(false);
      }, 4000);
      s.on('close', () => {
        clearInterval(timer);
        clearTimeout(box);
        resolve(true);
      });
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
  const closedSoon = (s: net.Socket, ms = 1000): Promise<boolean> =>
    new Promise((resolve) => {
      if (s.destroyed || s.closed) return resolve(true);
      const box = setTimeout(() => resolve(false), ms);
      s.on('close', () => {
        clearTimeout(box);
        resolve(true);
      });
    });
  const mine: net.Socket[] = [];
  for (let i = 0; i < 8; i++) mine.push(await open('127.0.0.1'));
  t.teardown(() => {
    for (const s of mine) s.destroy();
  });
  const closed = await Promise.all(mine.map((s) => closedSoon(s, 500)));
  t.equal(closed.filter(Boolean).length, 4, 'four of eight from one address were refused');
  t.equal(logged(lines, 'KMS_ERR_DNS_CONNECTION_LIMIT').length, 1, 'logged once for that address');
  t.equal(h.stats().tcpConnectionsRefused, 4);
  // Fill the total: 3 more addresses holding idle connections.
  const others: net.Socket[] = [];
  for (const from of ['127.0.0.3', '127.0.0.4']) for (let i = 0; i < 3; i++) others.push(await open(from));
  t.teardown(() => {
    for (const s of others) s.destroy();
  });
  await sleep(100);
  t.equal(h.stats().tcpOpen, 10, 'the total cap is reached');
  t.equal(await goodTcp(port), 1, 'a good client still gets in and is answered');
  t.ok(h.stats().tcpConnectionsEvicted >= 1, 'by closing an idle connection of the biggest holder');
  const stillOpen = mine.filter((s) => !s.destroyed && !s.closed).length;
  t.ok(stillOpen < 4, `the biggest holder (127.0.0.1) lost one (${stillOpen} left)`);
});

t.test('the per-client rate limit applies to TCP: queries are slowed, none lost', async (t) => {
  const { h, lines, port } = await start(t, { rateLimit: { responsesPerSecond: 100, burst: 10 } });
  const N = 40;
  const answered = await new Promise<number>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    let n = 0;
    const box = setTimeout(() => {
      s.destroy();
      resolve(n);
    }, 4000);
    s.on('connect', () => s.write(Buffer.concat(Array.from({ length: N }, (_, i) => frame(query(i))))));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      while (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        got = got.subarray(2 + got.readUInt16BE(0));
        if (++n === N) {
          clearTimeout(box);
          s.destroy();
          resolve(n);
        }
      }
    });
    s.on('error', () => resolve(n));
  });
  t.equal(answered, N, 'every pipelined query answered');
  t.ok(h.stats().rateLimited > 0, 'the limiter held some back');
  t.equal(logged(lines, 'KMS_ERR_DNS_RATE_LIMITED').length, 1, 'logged once for the address');
  t.equal(await goodTcp(port), 1, 'another address is not slowed');
});

t.test('queries waiting on a slow upstream are bounded per connection', async (t) => {
  const upstream = dgram.createSocket('udp4');
  let received = 0;
  upstream.on('message', () => received++); // a black hole
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => upstream.close());
  const { port } = await start(t, {
    forwarding: { enabled: true, upstream: [`127.0.0.1:${upstream.address().port}`], allowNetworks: ['127.0.0.0/8'] },
    tcp: { ...DEFAULTS.dns.tcp, maxPendingQueries: 3 },
  });
  // Not from 127.0.0.1: the upstream's own address is never forwarded for (no loops).
  const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  s.on('connect', () => s.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => frame(query(i, `name${i}.example.com`))))));
  await sleep(800);
  t.equal(received, 3, 'only maxPendingQueries were forwarded while the upstream is silent');
  t.equal(await goodTcp(port, '127.0.0.2'), 1, 'a good client is answered meanwhile');
});

t.test('IPv6 clients share one budget per /64; IPv4-mapped addresses count as IPv4', async (t) => {
  t.equal(addressGroup('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(addressGroup('2001:db8:1:2:ffff:ffff:ffff:fffe'), '2001:db8:1:2::/64');
  t.not(addressGroup('2001:db8:1:3::1'), addressGroup('2001:db8:1:2::1'));
  t.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  // Over UDP on ::1 the limiter uses that group: the burst is all one /64 gets.
  const { h, port } = await start(t, { rateLimit: { responsesPerSecond: 0.1, burst: 5 } }, ['[::1]:0']);
  let answered = 0;
  for (let i = 0; i < 8; i++) if ((await goodUdp(port, '::1', '::1', 300)) === 1) answered++;
  t.equal(answered, 5, 'the burst, then silence');
  t.ok(h.stats().rateLimited >= 3);
});

t.test('forwarded queries waiting on a silent upstream are bounded in all, over UDP too', async (t) => {
  const upstream = dgram.createSocket('udp4');
  let received = 0;
  upstream.on('message', () => received++); // a black hole
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => upstream.close());
  const { port } = await start(t, {
    forwarding: { enabled: true, upstream: [`127.0.0.1:${upstream.address().port}`], allowNetworks: ['127.0.0.0/8'] },
  });
  const s = dgram.createSocket('udp4');
  let servfail = 0;
  s.on('message', (m) => {
    if ((m[3]! & 0xf) === 2) servfail++;
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.7', () => r()));
  t.teardown(() => s.close());
  // In bursts of 50: a socket's receive buffer holds a few hundred datagrams, not 400 at once.
  for (let i = 0; i < 400; i++) {
    s.send(query(i, `n${i}.example.com`), port, '127.0.0.1');
    if (i % 50 === 49) await sleep(30);
  }
  await sleep(500);
  t.ok(received <= 256, `at most 256 wait upstream at once (${received})`);
  t.ok(servfail >= 400 - 256, `the rest are answered SERVFAIL at once (${servfail})`);
  t.equal(await goodUdp(port), 1, 'the zone is still answered');
});
