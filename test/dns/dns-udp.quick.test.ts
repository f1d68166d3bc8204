// dns-udp.ts on its own: dns2's UDPServer with handle() overridden, a stub responder behind it.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import DNS from 'dns2';
import type { DnsClient } from '../../src/dns/dns-responder';
import { DnsUdpServer, type DnsUdpOptions } from '../../src/dns/dns-udp';
import { createRateLimiter } from '../../src/dns/rate-limiter';
import { until } from '../wait';

interface Harness {
  readonly server: DnsUdpServer;
  readonly port: number;
  readonly seen: DnsClient[];
  readonly limits: string[];
  readonly counters: DnsUdpOptions['counters'];
}

/** Answers every datagram with its own bytes reversed after the 2-byte ID, so a reply names its query. */
async function serve(t: Test, type: 'udp4' | 'udp6', host: string, burst = 0, slip = 0): Promise<Harness> {
  const seen: DnsClient[] = [];
  const limits: string[] = [];
  const counters = { udpDropped: 0, rateLimited: 0, slipped: 0 };
  const server = new DnsUdpServer(type, {
    limiter: createRateLimiter({ responsesPerSecond: burst === 0 ? 0 : 1, burst: Math.max(1, burst) }),
    slip,
    respond: (data, client) => {
      seen.push(client);
      return Buffer.concat([data.subarray(0, 2), Buffer.from(data.subarray(2)).reverse()]);
    },
    onReply: () => undefined,
    onLimit: (code, _client, group) => limits.push(`${code} ${group}`),
    counters,
  });
  await server.listen(0, host);
  let open = true;
  server.once('close', () => (open = false));
  t.teardown(() => (open ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined));
  return { server, port: server.address().port, seen, limits, counters };
}

/**
 * Sends all queries at once from one socket and collects replies until `done` holds, re-checked on
 * each reply and every few ms (it may also look at the server's counters, which have no event).
 * After 3 s it gives up and returns what came, so the assertions show how much did.
 */
async function burst(port: number, host: string, queries: Buffer[], done: (got: Buffer[]) => boolean): Promise<Buffer[]> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  try {
    await new Promise<void>((r) => s.bind(0, host, () => r()));
    for (const q of queries) s.send(q, port, host);
    const options = { on: [{ emitter: s, events: ['message'] }], everyMs: 5, ms: 3000 };
    await until(() => done(got), 'the replies awaited', options).catch(() => undefined);
    return got;
  } finally {
    s.close();
  }
}

t.test("the UDP server is dns2's UDPServer, a dgram socket", async (t) => {
  const { server } = await serve(t, 'udp4', '127.0.0.1');
  t.ok(server instanceof DNS.UDPServer);
  t.ok(server instanceof dgram.Socket);
});

t.test('a burst of queries read in a few turns is answered whole: every query once, each reply its own', async (t) => {
  const { port, seen } = await serve(t, 'udp4', '127.0.0.1');
  const queries = Array.from({ length: 200 }, (_, i) => Buffer.from([i >> 8, i & 0xff, 1, 2, 3, i & 0xff]));
  const replies = await burst(port, '127.0.0.1', queries, (got) => got.length === queries.length);
  t.equal(replies.length, 200, 'all answered');
  const byId = new Map(replies.map((r) => [r.readUInt16BE(0), r.toString('hex')]));
  t.equal(byId.size, 200, 'each ID once');
  t.ok(
    queries.every(
      (q) => byId.get(q.readUInt16BE(0)) === Buffer.concat([q.subarray(0, 2), Buffer.from(q.subarray(2)).reverse()]).toString('hex'),
    ),
    'each reply is the answer to its own query',
  );
  t.equal(seen.length, 200);
  t.same(new Set(seen.map((c) => `${c.address} ${c.transport}`)), new Set(['127.0.0.1 udp']));
});

t.test('an IPv4 client of a dual-stack socket reaches the responder and the limiter as IPv4', async (t) => {
  const { port, seen, limits, counters } = await serve(t, 'udp6', '::', 2);
  // Done when the server has seen all three: two answered, one counted as limited.
  const queries = [Buffer.from([0, 1, 9]), Buffer.from([0, 2, 9]), Buffer.from([0, 3, 9])];
  const replies = await burst(port, '127.0.0.1', queries, (got) => got.length === 2 && counters.rateLimited === 1);
  t.equal(replies.length, 2, 'the burst of 2 is answered, the third dropped');
  t.same(
    seen.map((c) => c.address),
    ['127.0.0.1', '127.0.0.1'],
  );
  t.equal(counters.rateLimited, 1);
  t.same(limits, ['KMS_ERR_DNS_RATE_LIMITED 127.0.0.1']);
});

t.test('replies still queued when the socket closes are dropped quietly', async (t) => {
  const { server, seen } = await serve(t, 'udp4', '127.0.0.1');
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  server.handle(Buffer.from([0, 7, 1]), { address: '127.0.0.1', port: 9, family: 'IPv4', size: 3 });
  server.close();
  await closed;
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(seen.length, 1, 'answered by the responder, then not sent: no throw from the closed socket');
});
