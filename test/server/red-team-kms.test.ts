// Red-team findings against the KMS listener (TCP 1688): each test is an attack or a broken client
// that got a wrong answer before its fix. What a client sends may arrive in any split (§1.5), every
// fault ends its call (§2.9), and no limit may be sidestepped by the way a connection is closed.
import t, { type Test } from 'tap';
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { activate } from '../../src/client/kms-client';
import { KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, PTYPE } from '../../src/protocol/rpc/constants';
import { FragmentAssembler } from '../../src/protocol/rpc/fragment-assembler';
import { decodeFaultPdu, encodeRequestPdu } from '../../src/protocol/rpc/request';
import { HRESULT, RPC_FAULT } from '../../src/errors';
import { RpcSession } from '../../src/protocol/rpc/session';
import { EXCHANGES, pduBytes } from '../protocol/rpc/exchanges';
import { product, rawConnect, startHarness, type Harness } from './appliance-harness';
import { afterPoll, until, within } from '../wait';
import { kmsAlterContext, kmsBindNdr32 } from './kms-bind';

const WIN = product('Windows 10/11 Enterprise');

/** ctx 0 KMS/NDR32: answered with a 60-byte bind_ack on a 5-digit port. */
const BIND_NDR32 = kmsBindNdr32(2);

/** A captured Windows 10 v6 request on ctx 0 (NDR32): its stub, whatever the host then decides about its KMS body. */
const capture = EXCHANGES.find((ex) => ex.name === 'vlmcs-vlmcsd-win10-v6-three-requests-one-connection.json')!;
const REQ32_STUB = pduBytes(capture.pdus.filter((p) => p.dir === 'c2s')[2]!).subarray(24);

async function goodClientServed(t: Test, h: Harness): Promise<void> {
  const [r] = await activate({ host: h.host, port: h.port, product: WIN, timeoutMs: 3000 });
  t.equal(r?.hresult, 0, 'a good client is still served');
}

/** The PDUs of a reply stream, cut by frag_length. */
function pdusOf(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 10 <= stream.length; ) {
    const n = stream.readUInt16LE(at + 8);
    out.push(stream.subarray(at, at + n));
    at += n;
  }
  return out;
}

t.test('PDUs before a framing error are answered whether or not they arrive in the same read (§1.5, §1.6)', async (t) => {
  const h = await startHarness(t);
  const lying = Buffer.from('05000b0310000000ffff0000', 'hex'); // frag_length 65535
  for (const split of [false, true]) {
    const peer = await rawConnect(h.host, h.port);
    if (split) {
      peer.socket.write(BIND_NDR32);
      await peer.waitFor(60);
      peer.socket.write(lying);
    } else {
      peer.socket.write(Buffer.concat([BIND_NDR32, lying]));
    }
    await within(peer.closed, 'the host closing the connection');
    const replies = pdusOf(peer.received());
    t.equal(replies.length, 1, `${split ? 'two writes' : 'one write'}: one reply`);
    t.equal(replies[0]?.[2], PTYPE.BIND_ACK, `${split ? 'two writes' : 'one write'}: the bind is answered before the close`);
  }
  t.equal(h.logs.filter((l) => l['code'] === 'KMS_ERR_PDU_FRAG_LENGTH').length, 2, 'both framing errors logged with their code');
  const a = new FragmentAssembler(4096);
  t.same(a.push(Buffer.concat([BIND_NDR32, lying])), [BIND_NDR32], 'the assembler hands out the whole PDU before the lie');
  t.equal(a.failed?.code, 'KMS_ERR_PDU_FRAG_LENGTH', 'and says the stream is broken');
  t.throws(() => a.push(BIND_NDR32), { code: 'KMS_ERR_PDU_FRAG_LENGTH' }, 'for good');
  await goodClientServed(t, h);
});

t.test('a fault on a continuation fragment ends that call: the next request is served, not faulted (§2.9, §2.10)', async (t) => {
  const h = await startHarness(t);
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(BIND_NDR32);
  await peer.waitFor(60);
  const first = encodeRequestPdu({ callId: 5, contextId: 0, opnum: 0, stub: REQ32_STUB.subarray(0, 100), flags: 0x01 });
  const brokenLast = encodeRequestPdu({ callId: 5, contextId: 0, opnum: 0, stub: REQ32_STUB.subarray(100), flags: 0x02 });
  brokenLast.writeUInt16LE(8, 10); // auth_length 8: a header rule of §2.1
  const next = encodeRequestPdu({ callId: 6, contextId: 0, opnum: 0, stub: REQ32_STUB });
  peer.socket.write(first);
  peer.socket.write(brokenLast);
  const withFault = await peer.waitFor(60 + 32);
  const fault = pdusOf(withFault)[1]!;
  t.equal(fault[2], PTYPE.FAULT, 'the broken fragment is answered with a fault');
  t.equal(decodeFaultPdu(fault).status, RPC_FAULT.PROTO_ERROR);
  t.equal(fault.readUInt32LE(12), 5, 'for call 5');
  peer.socket.write(next);
  const all = await peer.waitFor(60 + 32 + 24 + 8);
  const reply = pdusOf(all)[2];
  t.equal(reply?.[2], PTYPE.RESPONSE, 'call 6, complete and on a known context, gets a response');
  t.equal(reply?.readUInt32LE(12), 6);
  t.notOk(
    h.logs.some((l) => l['code'] === 'KMS_ERR_RPC_FRAGMENT_SEQUENCE'),
    'no fragment-sequence fault for a call the host already ended',
  );
  peer.socket.destroy();
  await goodClientServed(t, h);
});

/** The heap in use after full collections: what a structure really holds, whatever was allocated on the way. */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

t.test('a fragmented request of many empty fragments holds no more than kms.maxStubBytes (§2.10)', async (t) => {
  const handled: string[] = [];
  const session = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1 },
    (message) => {
      handled.push(message.toString('hex'));
      return { hresult: HRESULT.INVALID_DATA };
    },
  );
  t.equal(session.handlePdu(BIND_NDR32).reply?.[2], PTYPE.BIND_ACK);
  t.same(session.handlePdu(encodeRequestPdu({ callId: 5, contextId: 0, opnum: 0, stub: REQ32_STUB.subarray(0, 100), flags: 0x01 })), {
    close: false,
  });
  // 24 bytes each on the wire and no progress: only the idle timeout would end them, 30 s of them.
  const empty = encodeRequestPdu({ callId: 5, contextId: 0, opnum: 0, stub: Buffer.alloc(0), flags: 0x00 });
  const before = heapAfterGc();
  for (let i = 0; i < 200_000; i++) session.handlePdu(empty);
  const grown = heapAfterGc() - before;
  t.ok(grown < 4_000_000, `200,000 empty fragments (4.8 MB sent) grew the heap by ${(grown / 1e6).toFixed(1)} MB`);
  const last = session.handlePdu(encodeRequestPdu({ callId: 5, contextId: 0, opnum: 0, stub: REQ32_STUB.subarray(100), flags: 0x02 }));
  t.equal(last.reply?.[2], PTYPE.RESPONSE, 'the call completes with its last fragment');
  t.equal(handled.length, 1, 'handled once');
  t.equal(handled[0], capture.decoded.calls[0]!.kms_request_hex, 'with the whole KMS request, in order');
});

t.test('valid RPC carrying garbage KMS: each a response with a refusal HRESULT, logged with a code; the host keeps serving', async (t) => {
  const h = await startHarness(t);
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(BIND_NDR32);
  await peer.waitFor(60);
  const real = Buffer.from(capture.decoded.calls[0]!.kms_request_hex, 'hex');
  const v6 = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(real);
    edit(b);
    return b;
  };
  const bodies: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from([6])],
    ['version 7.0', v6((b) => b.writeUInt16LE(7, 2))],
    ['version 3.0', v6((b) => b.writeUInt16LE(3, 2))],
    ['minor 1', v6((b) => b.writeUInt16LE(1, 0))],
    ['v6 cut by one byte', real.subarray(0, real.length - 1)],
    ['v6 plus 16 bytes', Buffer.concat([real, Buffer.alloc(16)])],
    ['v6 ciphertext flipped', v6((b) => (b[100]! ^= 0x40))],
    ['v6 last block flipped', v6((b) => (b[b.length - 1]! ^= 0x01))],
    ['v4-sized zeros', v6((b) => b.fill(0, 4)).subarray(0, 256)],
    ['all 0xff', Buffer.alloc(260, 0xff)],
  ];
  let expect = 60;
  for (const [i, [what, body]] of bodies.entries()) {
    const stub = Buffer.alloc(8 + body.length);
    stub.writeUInt32LE(body.length, 0);
    stub.writeUInt32LE(body.length, 4);
    body.copy(stub, 8);
    const logsBefore = h.outcomes.length;
    peer.socket.write(encodeRequestPdu({ callId: 10 + i, contextId: 0, opnum: 0, stub }));
    const all = await peer.waitFor(expect + 24 + 12);
    const reply = pdusOf(all.subarray(expect))[0]!;
    expect += reply.length;
    t.equal(reply[2], PTYPE.RESPONSE, `${what}: a response, not a fault or a close`);
    t.equal(reply.readUInt32LE(12), 10 + i, `${what}: call_id echoed`);
    const hresult = reply.readUInt32LE(24 + 8);
    t.not(hresult, 0, `${what}: refused with 0x${hresult.toString(16)}`);
    const outcome = h.outcomes[logsBefore];
    t.equal(outcome?.result, 'refused', `${what}: recorded as refused`);
    t.match(outcome?.code, /^KMS_ERR_KMS_/, `${what}: with a stable code (${outcome?.code})`);
    t.equal(outcome?.hresult, hresult, `${what}: the HRESULT sent is the one recorded`);
  }
  t.equal(peer.socket.destroyed, false, 'the connection is still open');
  peer.socket.destroy();
  await goodClientServed(t, h);
});

function alterCtx0(callId: number, syntax: typeof NDR32_SYNTAX): Buffer {
  return kmsAlterContext(callId, [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [syntax] }]);
}

t.test('flipping a context between NDR32 and NDR64 forever is no progress: closed at the idle timeout', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.idleTimeoutSeconds = 0.3; // below the schema minimum: the wait for it is the behaviour under test
  });
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(BIND_NDR32);
  await peer.waitFor(60);
  const started = Date.now();
  let alters = 0;
  // Each alter_context re-offers ctx 0 with the other syntax: accepted, the table changed, nothing added.
  while (!peer.socket.destroyed && Date.now() - started < 5000) {
    peer.socket.write(alterCtx0(10 + alters, alters % 2 === 0 ? NDR64_SYNTAX : NDR32_SYNTAX));
    alters++;
    await new Promise((r) => setTimeout(r, 30)); // ten alter_contexts per idle timeout
  }
  t.ok(peer.socket.destroyed, `closed by the host for want of progress (after ${alters} alter_contexts)`);
  t.ok(
    h.logs.some((l) => l['code'] === 'KMS_ERR_CONN_IDLE'),
    'as idle',
  );
  await goodClientServed(t, h);
});

/** TCP sockets open in this process (both ends of every loopback connection). */
function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

t.test('an evicted connection is closed outright: a peer ignoring the FIN cannot keep the host above kms.maxConnections', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.maxConnections = 8;
  });
  const before = tcpSockets();
  const clients: net.Socket[] = [];
  // allowHalfOpen: the attacker never answers the host's FIN, so a graceful close waits for nothing.
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: h.host, port: h.port, localAddress: '127.0.4.1', allowHalfOpen: true });
      clients.push(s);
      s.on('error', () => {});
      s.on('data', () => {});
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  const hostHeld = (): number => tcpSockets() - before - clients.filter((s) => !s.destroyed).length;
  const idle: net.Socket[] = [];
  for (let i = 0; i < 8; i++) idle.push(await open());
  // The eviction grace (README "Good clients first": idle for 1 s): the wait is the behaviour under test.
  await new Promise((r) => setTimeout(r, 1100));
  const newcomers: net.Socket[] = [];
  for (let i = 0; i < 8; i++) newcomers.push(await open());
  await until(() => idle.every((s) => s.readableEnded), 'the eight idle connections evicted for the newcomers', { everyMs: 10 });
  await afterPoll(); // handles being closed are gone after one turn of the loop
  t.ok(hostHeld() <= 8, `the host holds ${hostHeld()} client sockets with kms.maxConnections 8`);
  t.equal(newcomers.filter((s) => !s.readableEnded).length, 8, 'the newcomers hold the eight slots');
  t.ok(
    h.logs.some((l) => l['code'] === 'KMS_ERR_CONN_EVICTED'),
    'evictions logged',
  );
  for (const s of clients) s.destroy();
  await goodClientServed(t, h);
});

/** Heap and buffer memory in use after full collections. */
function memoryAfterGc(): number {
  heapAfterGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** A read as a socket delivers it: its own backing store of exactly its length. */
function read(bytes: Buffer): Buffer {
  const b = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(b);
  return b;
}

t.test('a PDU being received holds about its own bytes, however the reads that carried it were cut (kms.maxPduBytes)', async (t) => {
  const cancel = Buffer.from('050012031000000010000000' + '02000000', 'hex'); // co_cancel: no reply, no progress
  const pduStart = Buffer.from('050000031000000000100000' + '02000000', 'hex'); // a request of 4096 bytes, its first 16
  const n = 100;
  // One 64 KiB read: 4,095 co_cancels and the first 16 bytes of the next PDU.
  const big = read(Buffer.concat([...Array.from({ length: 4095 }, () => cancel), pduStart]));
  const afterBig: FragmentAssembler[] = [];
  let before = memoryAfterGc();
  let cut = 0;
  for (let i = 0; i < n; i++) {
    const a = new FragmentAssembler(4096);
    cut += a.push(read(big)).length;
    afterBig.push(a);
  }
  t.equal(cut, 4095 * n, 'every whole PDU handed out');
  const perBig = (memoryAfterGc() - before) / n;
  t.equal(afterBig[0]!.buffered, 16);
  t.ok(perBig < 8192, `16 bytes left by a 64 KiB read hold ${Math.round(perBig)} bytes`);
  afterBig.length = 0;
  // A drip: the same PDU start, then a byte per read, 4,000 reads.
  const dripped: FragmentAssembler[] = [];
  before = memoryAfterGc();
  for (let i = 0; i < n; i++) {
    const a = new FragmentAssembler(4096);
    a.push(read(pduStart));
    for (let j = 0; j < 4000; j++) a.push(read(Buffer.from([j & 0xff])));
    dripped.push(a);
  }
  const perDrip = (memoryAfterGc() - before) / n;
  t.equal(dripped[0]!.buffered, 4016);
  t.ok(perDrip < 8192, `4,016 bytes dripped in 4,001 reads hold ${Math.round(perDrip)} bytes`);
  const last = dripped[0]!.push(read(Buffer.alloc(80)));
  t.equal(last.length, 1, 'the PDU completes');
  t.equal(last[0]!.length, 4096);
  t.same([...last[0]!.subarray(16, 24)], [0, 1, 2, 3, 4, 5, 6, 7], 'with the dripped bytes in order');
});
