// Clients that misbehave over a real socket: each gets the reply the spec prescribes or a close,
// the problem is logged once with the peer and a code, and a good client is served meanwhile (C33).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { activate } from '../../src/client/kms-client';
import { encodeBind } from '../../src/protocol/rpc/bind';
import { encodeRequestPdu, decodeFaultPdu } from '../../src/protocol/rpc/request';
import { KMS_INTERFACE, NDR32_SYNTAX, PTYPE } from '../../src/protocol/rpc/constants';
import { RPC_FAULT } from '../../src/errors';
import { product, rawConnect, startHarness } from './appliance-harness';

const WIN = product('Windows 10/11 Enterprise');

const BIND_NDR32 = encodeBind({
  ptype: PTYPE.BIND,
  callId: 2,
  flags: 0x13,
  maxXmitFrag: 5840,
  maxRecvFrag: 5840,
  assocGroupId: 0,
  contexts: [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }],
});

async function goodClientServed(t: Test, host: string, port: number): Promise<void> {
  const [r] = await activate({ host, port, product: WIN, timeoutMs: 3000 });
  t.equal(r?.hresult, 0, 'a good client is still served');
}

t.test('garbage, lying frag_length and unknown PTYPE close that connection only', async (t) => {
  const h = await startHarness(t);
  const cases: [string, Buffer, string][] = [
    ['frag_length below 16', Buffer.from('05000b031000000008000000', 'hex'), 'KMS_ERR_PDU_FRAG_LENGTH'],
    ['frag_length above the limit', Buffer.from('05000b0310000000ffff0000', 'hex'), 'KMS_ERR_PDU_FRAG_LENGTH'],
    ['unknown PTYPE 42', Buffer.from('05002a031000000010000000' + '02000000', 'hex'), 'KMS_ERR_PDU_PTYPE_UNKNOWN'],
    ['shutdown PTYPE 17', Buffer.from('050011031000000010000000' + '02000000', 'hex'), 'KMS_ERR_PDU_PTYPE_CLOSE'],
    ['HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'KMS_ERR_PDU_FRAG_LENGTH'],
  ];
  for (const [what, bytes, code] of cases) {
    const peer = await rawConnect(h.host, h.port);
    peer.socket.write(bytes);
    await peer.closed;
    t.equal(peer.received().length, 0, `${what}: closed without a reply`);
    t.ok(h.logs.some((l) => l['code'] === code && typeof l['peer'] === 'string'), `${what}: logged as ${code} with the peer`);
    await goodClientServed(t, h.host, h.port);
  }
});

t.test('random bytes never crash the host', async (t) => {
  const h = await startHarness(t);
  for (let i = 0; i < 30; i++) {
    const peer = await rawConnect(h.host, h.port);
    const junk = randomBytes(1 + (i * 37) % 600);
    if (i % 2 === 0) junk[0] = 5; // past the version byte sometimes
    peer.socket.end(junk);
    await peer.closed;
  }
  await goodClientServed(t, h.host, h.port);
});

t.test('a request before bind and an unknown opnum get faults; the connection stays usable', async (t) => {
  const h = await startHarness(t);
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(encodeRequestPdu({ callId: 7, contextId: 0, opnum: 0, stub: Buffer.alloc(12) }));
  const first = await peer.waitFor(32);
  t.equal(first[2], PTYPE.FAULT);
  t.equal(decodeFaultPdu(first.subarray(0, 32)).status, RPC_FAULT.UNK_IF);
  t.equal(first.readUInt32LE(12), 7, 'call_id echoed');
  peer.socket.write(BIND_NDR32);
  const afterBind = await peer.waitFor(32 + 60);
  t.equal(afterBind[32 + 2], PTYPE.BIND_ACK);
  peer.socket.write(encodeRequestPdu({ callId: 8, contextId: 0, opnum: 1, stub: Buffer.alloc(12) }));
  const all = await peer.waitFor(32 + 60 + 32);
  const fault = all.subarray(32 + 60);
  t.equal(decodeFaultPdu(fault).status, RPC_FAULT.OP_RNG_ERROR);
  t.equal(peer.socket.destroyed, false, 'still open');
  peer.socket.destroy();
});

t.test('a PDU written one byte at a time, and two PDUs in one write, are answered (C1)', async (t) => {
  const h = await startHarness(t);
  const drip = await rawConnect(h.host, h.port);
  for (const byte of BIND_NDR32) {
    drip.socket.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  const ack = await drip.waitFor(60);
  t.equal(ack[2], PTYPE.BIND_ACK);
  t.equal(ack.readUInt16LE(8), 60);
  drip.socket.destroy();

  const two = await rawConnect(h.host, h.port);
  two.socket.write(Buffer.concat([BIND_NDR32, encodeRequestPdu({ callId: 3, contextId: 0, opnum: 5, stub: Buffer.alloc(8) })]));
  const both = await two.waitFor(60 + 32);
  t.equal(both[2], PTYPE.BIND_ACK);
  t.equal(both[60 + 2], PTYPE.FAULT);
  two.socket.destroy();
});

t.test('slow drip and idle clients are closed after the idle timeout, others unaffected (C33, C36)', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.idleTimeoutSeconds = 1;
  });
  const idle = await rawConnect(h.host, h.port);
  const drip = await rawConnect(h.host, h.port);
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < BIND_NDR32.length && !drip.socket.destroyed) drip.socket.write(BIND_NDR32.subarray(sent, ++sent));
  }, 100);
  await goodClientServed(t, h.host, h.port);
  const started = Date.now();
  await Promise.all([idle.closed, drip.closed]);
  clearInterval(timer);
  t.ok(Date.now() - started < 5000, 'both closed within a few seconds');
  t.ok(sent < BIND_NDR32.length, 'the drip never completed its PDU');
  t.equal(drip.received().length, 0);
  const dripLog = h.logs.find((l) => l['code'] === 'KMS_ERR_CONN_IDLE' && l['level'] === 'warn');
  t.ok(dripLog, 'the drip is logged as a warning with its peer');
  t.type(dripLog?.['peer'], 'string');
  t.ok(Number(dripLog?.['partialBytes']) > 0);
  t.notOk(h.logs.some((l) => l['code'] === 'KMS_ERR_CONN_IDLE' && l['level'] === 'warn' && l['partialBytes'] === undefined), 'a quiet idle connection is no warning');
  await goodClientServed(t, h.host, h.port);
});

t.test('a connection is not closed merely because a response was sent (C36)', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.idleTimeoutSeconds = 2;
  });
  const replies = await activate({ host: h.host, port: h.port, product: WIN, requests: 3 });
  t.same(replies.map((r) => r.hresult), [0, 0, 0]);
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(BIND_NDR32);
  await peer.waitFor(60);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(peer.socket.destroyed, false, 'open after the bind_ack');
  peer.socket.destroy();
});
