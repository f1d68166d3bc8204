// A client's FIN (PROTOCOL.md §2.11: peer close → close). The listener is half-open, so a client
// that sends its request and its FIN together still gets the answer the reply gate (the store's
// group commit) holds back, and only then is the connection closed; a client that leaves between
// calls is closed at once.
import t, { type Test } from 'tap';
import net from 'node:net';
import { encodeRequestStub } from '../../src/protocol/ndr/stub';
import { encodeBind } from '../../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, OPNUM_REQUEST_ACTIVATION, PTYPE } from '../../src/protocol/rpc/constants';
import { encodeRequestPdu } from '../../src/protocol/rpc/request';
import { KmsServer } from '../../src/server/kms-server';
import type { ReplyGate } from '../../src/server/reply-gate';
import { SILENT_LOG } from '../../src/server/types';
import { until, within } from '../wait';
import { testServerSettings } from './settings';

const BIND = encodeBind({
  ptype: PTYPE.BIND,
  callId: 2,
  flags: 0x03,
  maxXmitFrag: 5840,
  maxRecvFrag: 5840,
  assocGroupId: 0,
  contexts: [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }],
});

const REQUEST = (callId: number): Buffer =>
  encodeRequestPdu({ callId, contextId: 0, opnum: OPNUM_REQUEST_ACTIVATION, stub: encodeRequestStub(Buffer.alloc(100, 1), 'ndr32') });

const SETTINGS = testServerSettings();

/** A gate that holds everything until released, like a group commit that has not committed yet. */
class HeldGate implements ReplyGate {
  readonly held: (() => void)[] = [];
  private holding = true;
  run(send: () => void): void {
    if (this.holding) this.held.push(send);
    else send();
  }
  release(): void {
    this.holding = false;
    for (const send of this.held.splice(0)) send();
  }
}

async function startServer(t: Test, gate: ReplyGate, settings = SETTINGS): Promise<{ server: KmsServer; port: number }> {
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings,
    handler: () => ({ response: Buffer.alloc(40, 7), hresult: 0, outcome: {} as never }),
    log: SILENT_LOG,
    gate,
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  return { server, port: bound!.port };
}

interface Peer {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  /** The PTYPE and call_id of every PDU received so far. */
  pdus(): { ptype: number; callId: number }[];
}

function connect(port: number): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    const pdus = (): { ptype: number; callId: number }[] => {
      const bytes = Buffer.concat(chunks);
      const out: { ptype: number; callId: number }[] = [];
      for (let at = 0; at + 16 <= bytes.length; at += bytes.readUInt16LE(at + 8)) {
        out.push({ ptype: bytes[at + 2]!, callId: bytes.readUInt32LE(at + 12) });
      }
      return out;
    };
    socket.once('connect', () => resolve({ socket, closed, pdus }));
    socket.once('error', reject);
  });
}

const onData = (peer: Peer) => ({ on: [{ emitter: peer.socket, events: ['data'] }] });
/** The server's counters and the gate change without an event a test can see: re-checked every few ms. */
const SOON = { everyMs: 5 };

t.test('a request sent with the FIN is answered once its reply is released, then the connection closes', async (t) => {
  const gate = new HeldGate();
  const { server, port } = await startServer(t, gate);
  const peer = await connect(port);
  peer.socket.write(BIND);
  await until(() => peer.pdus().length === 1 || undefined, 'the bind_ack (not held: nothing of this connection waits)', onData(peer));
  peer.socket.end(REQUEST(7));
  // Held: the connection's outbox (the response, then the call's report) and then the close the FIN asked for.
  await until(() => gate.held.length === 2 || undefined, 'the response and the close waiting at the gate', SOON);
  t.equal(server.stats().open, 1, 'still open while its reply is held');
  gate.release();
  await within(peer.closed, 'the close after the held response');
  t.same(
    peer.pdus(),
    [
      { ptype: PTYPE.BIND_ACK, callId: 2 },
      { ptype: PTYPE.RESPONSE, callId: 7 },
    ],
    'bind_ack, then the response to the request that came with the FIN',
  );
  await until(() => server.stats().open === 0 || undefined, 'the connection leaving the table', SOON);
});

t.test('a client that closes between calls is closed at once and leaves the table', async (t) => {
  const gate = new HeldGate();
  gate.release();
  const { server, port } = await startServer(t, gate);
  const peer = await connect(port);
  peer.socket.write(BIND);
  await until(() => peer.pdus().length === 1 || undefined, 'the bind_ack', onData(peer));
  peer.socket.write(REQUEST(3));
  await until(() => peer.pdus().length === 2 || undefined, 'the response', onData(peer));
  t.equal(server.stats().open, 1);
  peer.socket.end();
  await within(peer.closed, 'the close after the client FIN');
  await until(() => server.stats().open === 0 || undefined, 'the connection leaving the table', SOON);
  t.equal(server.stats().accepted, 1);
});
