// The KMS listener reads every connection into one shared buffer (src/server/read-buffer.ts).
// What must hold: each chunk handed on is its own copy (a later read, on any connection, never
// changes bytes a caller kept), pause() stops delivery and resume() restarts it (the connection's
// backlog and deferred-PDU rules depend on it), the peer's FIN still ends the stream, and a socket
// the fields cannot be attached to is reported so the caller uses 'data' events.
import t, { type Test } from 'tap';
import net from 'node:net';
import { readIntoSharedBuffer } from '../../src/server/read-buffer';
import { nextEvent, until } from '../wait';
import { seededRandom } from '../prng';

interface Accepted {
  readonly socket: net.Socket;
  readonly chunks: Buffer[];
  readonly attached: boolean;
}

async function listen(t: Test): Promise<{ port: number; accepted: Accepted[] }> {
  const accepted: Accepted[] = [];
  const server = net.createServer((socket) => {
    const chunks: Buffer[] = [];
    const attached = readIntoSharedBuffer(socket, (chunk) => chunks.push(chunk));
    socket.on('error', () => {});
    accepted.push({ socket, chunks, attached });
  });
  server.listen(0, '127.0.0.1');
  await nextEvent(server, 'listening');
  t.teardown(() => {
    for (const a of accepted) a.socket.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, accepted };
}

async function connect(t: Test, port: number): Promise<net.Socket> {
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => {});
  await nextEvent(client, 'connect');
  t.teardown(() => client.destroy());
  return client;
}

const joined = (a: Accepted): Buffer => Buffer.concat(a.chunks);
/** Reads change plain arrays, which no event announces: re-checked on an interval. */
const POLL = { everyMs: 5 };

t.test("every read is the connection's own copy, whatever is read later", async (t) => {
  const { port, accepted } = await listen(t);
  const random = seededRandom(0x5eed);
  const clients = [await connect(t, port), await connect(t, port)];
  await until(() => accepted.length === 2, 'both connections accepted', POLL);
  t.ok(
    accepted.every((a) => a.attached),
    'this Node exposes the fields (else the listener falls back to data events)',
  );
  const sent: Buffer[][] = [[], []];
  // Alternating writes, each waited for, so every read lands in the shared buffer in turn.
  for (let round = 0; round < 40; round++) {
    const which = round % 2;
    const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 3000) }, () => Math.floor(random() * 256)));
    sent[which]!.push(bytes);
    const want = sent[which]!.reduce((n, b) => n + b.length, 0);
    clients[which]!.write(bytes);
    await until(() => joined(accepted[which]!).length >= want, `round ${round} read`, POLL);
  }
  for (const which of [0, 1]) {
    t.same(joined(accepted[which]!), Buffer.concat(sent[which]!), `connection ${which}: the bytes it sent, unchanged by later reads`);
  }
});

t.test('pause() stops delivery, resume() brings what came meanwhile', async (t) => {
  const { port, accepted } = await listen(t);
  const client = await connect(t, port);
  await until(() => accepted.length === 1, 'accepted', POLL);
  const a = accepted[0]!;
  client.write('first');
  await until(() => joined(a).toString() === 'first', 'first read', POLL);
  a.socket.pause();
  client.write('second');
  // A round trip on another connection lets the event loop turn several times meanwhile.
  const probe = await connect(t, port);
  await until(() => accepted.length === 2, 'probe accepted', POLL);
  probe.write('x');
  await until(() => accepted[1]!.chunks.length > 0, 'probe read', POLL);
  t.equal(joined(a).toString(), 'first', 'nothing delivered while paused');
  a.socket.resume();
  await until(() => joined(a).length >= 'firstsecond'.length, 'read after resume', POLL);
  t.equal(joined(a).toString(), 'firstsecond', 'what came while paused, after what came before');
});

t.test("the peer's FIN ends the stream", async (t) => {
  const { port, accepted } = await listen(t);
  const client = await connect(t, port);
  await until(() => accepted.length === 1, 'accepted', POLL);
  const ended = nextEvent(accepted[0]!.socket, 'end', "the server side's end event");
  client.end('last words');
  await ended;
  t.equal(joined(accepted[0]!).toString(), 'last words', 'data before the FIN delivered first');
});

t.test('a socket without a handle is reported, for the caller to use data events', async (t) => {
  const unconnected = new net.Socket();
  t.equal(
    readIntoSharedBuffer(unconnected, () => {}),
    false,
  );
  unconnected.destroy();
});
