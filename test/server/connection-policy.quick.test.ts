// Who gets a connection slot (issue 10, "good clients first"): IPv6 clients are grouped by /64,
// the table finds whom to evict without scanning, a refused bind gets bind_nak reason 2 (§2.7),
// and the server's counters say what happened.
import t, { type Test } from 'tap';
import net from 'node:net';
import { addressGroup } from '../../src/net/address-group';
import { ConnectionTable, type Slot } from '../../src/server/connection-table';
import { KmsServer } from '../../src/server/kms-server';
import { SILENT_LOG, type KmsServerSettings, type ServerLog } from '../../src/server/types';
import { decodeBindNak } from '../../src/protocol/rpc/bind';
import { PTYPE } from '../../src/protocol/rpc/constants';
import { HRESULT } from '../../src/errors';
import { until } from '../wait';
import { kmsBindNdr32 } from './kms-bind';
import { testServerSettings } from './settings';
import { connectPeer } from './peer';

const BIND = kmsBindNdr32(5);

t.test('IPv6 addresses of one /64 are one client; IPv4 and mapped IPv4 addresses are their own', async (t) => {
  const a = addressGroup('2001:db8:1:2::5', 64);
  t.equal(addressGroup('2001:db8:1:2:ffff:ffff:ffff:ffff', 64), a, 'same /64');
  t.equal(addressGroup('2001:0db8:0001:0002:0000:0000:0000:0009', 64), a, 'written out in full');
  t.equal(addressGroup('2001:db8:1:2::5%eth0', 64), a, 'zone id ignored');
  t.not(addressGroup('2001:db8:1:3::5', 64), a, 'next /64');
  t.equal(addressGroup('2001:db8:1:3::5', 48), addressGroup('2001:db8:1:2::5', 48), 'a /48 when configured');
  t.not(addressGroup('2001:db8:1:2::5', 128), addressGroup('2001:db8:1:2::6', 128), '/128: every address alone');
  t.equal(addressGroup('::ffff:192.0.2.7', 64), '192.0.2.7', 'a mapped IPv4 client is that IPv4 address');
  t.equal(addressGroup('192.0.2.7', 64), '192.0.2.7');
  t.not(addressGroup('192.0.2.7', 64), addressGroup('192.0.2.8', 64));
  t.equal(addressGroup('::1', 64), addressGroup('::2', 64));
});

interface Fake extends Slot {
  name: string;
  lastProgressAt: number;
}

t.test('the table keeps each group in order of last progress and knows the largest group', async (t) => {
  const table = new ConnectionTable<Fake>();
  const mk = (name: string, group: string): Fake => ({ name, group, lastProgressAt: 0, openedAt: 0 });
  const a1 = mk('a1', 'A');
  const a2 = mk('a2', 'A');
  const a3 = mk('a3', 'A');
  const b1 = mk('b1', 'B');
  for (const c of [a1, b1, a2, a3]) table.add(c);
  t.equal(table.size, 4);
  t.equal(table.largestGroup(), 'A');
  t.equal(table.largestGroupSize, 3);
  t.equal(table.oldestOf('A')?.name, 'a1');
  table.touch(a1);
  t.equal(table.oldestOf('A')?.name, 'a2', 'progress moves a connection to the back');
  t.equal(table.oldest()?.name, 'a1', 'but not in the order connections were opened');
  t.equal(table.oldestOpenOf('A')?.name, 'a1', "nor in its group's");
  t.ok(table.remove(a1));
  t.equal(table.oldestOpenOf('A')?.name, 'a2', "a removed connection leaves its group's age order");
  table.add(a1);
  t.equal(table.oldestOpenOf('A')?.name, 'a2', 'and comes back as the newest');
  t.ok(table.remove(a2));
  t.notOk(table.remove(a2), 'removing twice is harmless');
  t.ok(table.remove(a3));
  t.equal(table.largestGroupSize, 1);
  t.ok(table.remove(a1));
  t.equal(table.oldest()?.name, 'b1', 'a removed connection leaves the age order');
  t.equal(table.largestGroup(), 'B');
  t.equal(table.sizeOf('A'), 0);
  t.ok(table.remove(b1));
  t.equal(table.size, 0);
  t.equal(table.largestGroup(), undefined);
});

async function startServer(t: Test, s: KmsServerSettings, log: ServerLog = SILENT_LOG): Promise<{ server: KmsServer; port: number }> {
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings: s,
    handler: () => ({ hresult: HRESULT.PRODUCT_NOT_SERVED, outcome: {} as never }),
    log,
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  return { server, port: bound!.port };
}

/** Re-checked whenever one of the sockets receives something. */
const onData = (...sockets: net.Socket[]) => ({ on: sockets.map((emitter) => ({ emitter, events: ['data'] })) });
/** The server's counters change without an event a test can see: re-checked every few ms. */
const SOON = { everyMs: 5 };

t.test('at the per-address limit a bind gets bind_nak reason 2 (§2.7) and is counted', async (t) => {
  const logs: object[] = [];
  const log = { ...SILENT_LOG, warn: (o: object) => void logs.push(o), debug: (o: object) => void logs.push(o) };
  const { server, port } = await startServer(t, testServerSettings({ maxConnectionsPerAddress: 2 }), log);
  const a = await connectPeer(port);
  const b = await connectPeer(port);
  a.socket.write(BIND);
  b.socket.write(BIND);
  await until(() => a.data().length >= 60 && b.data().length >= 60, 'both bind_acks', onData(a.socket, b.socket));
  const c = await connectPeer(port);
  c.socket.write(BIND);
  await c.closed;
  const nak = c.data();
  t.equal(nak[2], PTYPE.BIND_NAK, 'a bind_nak');
  t.equal(decodeBindNak(nak).reason, 2, 'reason 2, local_limit_exceeded');
  t.equal(nak.readUInt32LE(12), 5, 'call_id echoed');
  await until(() => server.stats().bindNaks === 1, 'the bind_nak counted', SOON);
  const stats = server.stats();
  t.equal(stats.open, 2);
  t.equal(stats.accepted, 2);
  t.equal(stats.refusedByReason['per-address'], 1);
  t.equal(stats.bindNaks, 1);
  t.ok(
    logs.some((l) => (l as { code?: string }).code === 'KMS_ERR_CONN_LIMIT'),
    'the refusal is logged',
  );
  t.ok(
    logs.some((l) => (l as { code?: string }).code === 'KMS_ERR_BIND_CONNECTION_LIMIT'),
    'and the bind_nak',
  );
  a.socket.destroy();
  b.socket.destroy();
});

t.test("when full, a newcomer from another address takes the slot of the largest group's longest-idle connection", async (t) => {
  const { server, port } = await startServer(t, testServerSettings({ maxConnections: 4 }));
  const hogs = [];
  for (let i = 0; i < 4; i++) hogs.push(await connectPeer(port, '127.0.2.1'));
  await until(() => server.stats().open === 4, 'four connections open', SOON);
  const fresh = await connectPeer(port, '127.0.2.2');
  fresh.socket.write(BIND);
  await until(() => fresh.data().length >= 60, "the newcomer's bind_ack", onData(fresh.socket));
  t.equal(fresh.data()[2], PTYPE.BIND_ACK, 'the newcomer is served');
  await hogs[0]!.closed;
  t.same(
    hogs.map((h) => h.socket.destroyed),
    [true, false, false, false],
    'the first (longest idle) connection of the largest group was closed, and only that one',
  );
  const stats = server.stats();
  t.equal(stats.refusedByReason.evicted, 1);
  t.equal(stats.open, 4);
  t.equal(stats.accepted, 5);
  for (const h of hogs) h.socket.destroy();
  fresh.socket.destroy();
});

t.test('the allowlist refusal is counted', async (t) => {
  const { server, port } = await startServer(t, testServerSettings({ clientNetworks: ['192.0.2.0/24'] }));
  const c = await connectPeer(port);
  await c.closed;
  t.equal(server.stats().refusedByReason.allowlist, 1);
  t.equal(server.stats().accepted, 0);
});
