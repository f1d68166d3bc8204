// The per-connection state machine (PROTOCOL.md §2.1–§2.3, §2.8–§2.11): malformed input case by
// case, each with its error code and reply type, and the fragment rules (C7–C9, C37–C39).
import t, { type Test } from 'tap';
import { KmsError } from '../../../src/errors';
import { decodeBindAck, decodeBindNak, encodeBind, type PresentationContextItem } from '../../../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, PTYPE, PTYPE_NAME } from '../../../src/protocol/rpc/constants';
import { decodeFaultPdu, decodeResponsePdu, encodeRequestPdu } from '../../../src/protocol/rpc/request';
import { RpcSession, type KmsCall, type SessionResult } from '../../../src/protocol/rpc/session';
import { bytes, hex } from '../../bytes';
import { FOREIGN_INTERFACE_UUID, SPARE_GUID } from '../../ids';
import { EXCHANGES, pduBytes } from './exchanges';

const capture = EXCHANGES.find((ex) => ex.name === 'vlmcs-vlmcsd-win10-v6-three-requests-one-connection.json')!;
const clientPdus = capture.pdus.filter((p) => p.dir === 'c2s').map(pduBytes);
const BIND3 = clientPdus[0]!; // ctx 0 NDR32, ctx 1 NDR64, ctx 2 BTFN; call_id 2, flags 0x13
const ALTER = clientPdus[1]!; // ctx 0 NDR32 alone
const REQ32 = clientPdus[2]!; // ctx 0, call_id 2, NDR32 stub of a 260-byte v6 request
const REQ64 = clientPdus[3]!; // ctx 1, call_id 3, NDR64 stub
const KMS_REQUEST = capture.decoded.calls[0]!.kms_request_hex;
const KMS_REQUEST_2 = capture.decoded.calls[1]!.kms_request_hex;

const KMS_RESPONSE = Buffer.from('00000600cafe', 'hex');
const FAULT = { UNK_IF: 0x1c010003, OP_RNG: 0x1c010002, PROTO: 0x1c01000b };

function newSession(opts: { ndr64?: boolean; btfn?: boolean; maxStubBytes?: number } = {}) {
  const calls: { message: string; call: KmsCall }[] = [];
  let groups = 0;
  const session = new RpcSession(
    {
      ndr64: opts.ndr64 ?? true,
      btfn: opts.btfn ?? true,
      maxStubBytes: opts.maxStubBytes ?? 4096,
      secondaryAddress: '1688',
      newAssocGroupId: () => 0x11223344 + groups++,
    },
    (message, call) => {
      calls.push({ message: message.toString('hex'), call });
      return { response: KMS_RESPONSE };
    },
  );
  return { session, calls, groups: () => groups };
}

function set(pdu: Buffer, edits: Record<number, number>): Buffer {
  const out = Buffer.from(pdu);
  for (const [at, v] of Object.entries(edits)) out[Number(at)] = v;
  return out;
}

function ptypeOf(r: SessionResult): string | undefined {
  return r.reply ? PTYPE_NAME.get(r.reply[2]!) : undefined;
}

/** Asserts a fault reply with `status` and `code`, echoing `callId` and `contextId` (§2.9). */
function expectFault(t: Test, r: SessionResult, status: number, code: string, callId: number, contextId: number): void {
  t.equal(ptypeOf(r), 'fault', 'reply is a fault');
  t.equal(r.close, false, 'connection stays open');
  t.equal(r.error?.code, code);
  const f = decodeFaultPdu(r.reply!);
  t.equal(f.status, status, `status 0x${status.toString(16)}`);
  t.equal(f.header.callId, callId, 'call_id echoed');
  t.equal(f.contextId, contextId, 'p_cont_id echoed');
  t.equal(f.header.flags, 0x23);
  t.equal(r.reply!.length, 32);
}

function expectNak(t: Test, r: SessionResult, reason: number, code: string): void {
  t.equal(ptypeOf(r), 'bind_nak', 'reply is a bind_nak');
  t.equal(r.close, false);
  t.equal(r.error?.code, code);
  t.equal(decodeBindNak(r.reply!).reason, reason, `reason ${reason}`);
}

function expectResponse(t: Test, r: SessionResult, callId: number, contextId: number): void {
  t.equal(ptypeOf(r), 'response', 'reply is a response');
  t.equal(r.close, false);
  t.equal(r.error, undefined);
  const res = decodeResponsePdu(r.reply!);
  t.equal(res.header.callId, callId);
  t.equal(res.contextId, contextId);
}

/** A C3 bind, then the alter_context, as a current Windows client does. */
function bound(opts: Parameters<typeof newSession>[0] = {}) {
  const s = newSession(opts);
  s.session.handlePdu(BIND3);
  s.session.handlePdu(ALTER);
  return s;
}

function bindWith(contexts: PresentationContextItem[], callId = 2): Buffer {
  return encodeBind({ ptype: PTYPE.BIND, callId, flags: 0x03, maxXmitFrag: 5840, maxRecvFrag: 5840, assocGroupId: 0, contexts });
}

/** A request PDU built from REQ32 with another stub, context, opnum, flags or call_id. */
function request(f: { stub?: Buffer; contextId?: number; opnum?: number; flags?: number; callId?: number } = {}): Buffer {
  const stub = f.stub ?? REQ32.subarray(24);
  return encodeRequestPdu({ callId: f.callId ?? 2, contextId: f.contextId ?? 0, opnum: f.opnum ?? 0, stub, flags: f.flags ?? 0x03 });
}

// ---- the normal sequence ----

t.test('C3/C6/C10: bind, alter_context, three requests; the connection stays open', async (t) => {
  const { session, calls, groups } = newSession();
  const ack = session.handlePdu(BIND3);
  t.equal(ptypeOf(ack), 'bind_ack');
  const a = decodeBindAck(ack.reply!);
  t.equal(a.header.flags, 0x13, 'flags echoed');
  t.equal(a.secondaryAddress, '1688');
  t.equal(ack.reply!.length, 108);
  const alt = session.handlePdu(ALTER);
  t.equal(ptypeOf(alt), 'alter_context_resp');
  t.equal(decodeBindAck(alt.reply!).assocGroupId, a.assocGroupId, 'same association group');
  t.equal(groups(), 1, 'one association group per connection');
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
  expectResponse(t, session.handlePdu(REQ64), 3, 1);
  expectResponse(t, session.handlePdu(set(REQ64, { 12: 4 })), 4, 1);
  t.same(
    calls.map((c) => c.call.syntax),
    ['ndr32', 'ndr64', 'ndr64'],
  );
  t.equal(calls[0]!.message, KMS_REQUEST);
  t.equal(calls[1]!.message, KMS_REQUEST_2);
});

t.test('C5: bind_ack echoes flags without CONC_MPX and the call_id', async (t) => {
  const { session } = newSession();
  const r = session.handlePdu(set(BIND3, { 3: 0x03, 12: 0x2a }));
  const a = decodeBindAck(r.reply!);
  t.equal(a.header.flags, 0x03);
  t.equal(a.header.callId, 0x2a);
  t.equal(a.maxXmitFrag, 5840);
  t.equal(a.maxRecvFrag, 5840);
  const limited = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1, maxPduBytes: 4096 },
    () => ({ hresult: 0 }),
  );
  const b = decodeBindAck(limited.handlePdu(BIND3).reply!);
  t.same([b.maxXmitFrag, b.maxRecvFrag], [4096, 4096], 'lowered to kms.maxPduBytes');
});

t.test('an alter_context before any bind is treated like a bind (§2.11, U7)', async (t) => {
  const { session, calls, groups } = newSession();
  const r = session.handlePdu(ALTER);
  t.equal(ptypeOf(r), 'alter_context_resp');
  t.equal(decodeBindAck(r.reply!).assocGroupId, 0x11223344);
  t.equal(groups(), 1);
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
  t.equal(calls.length, 1);
});

// ---- header rules (§2.1, C39) ----

t.test('truncated or inconsistent PDUs close the connection without a reply', async (t) => {
  const { session } = newSession();
  for (const [name, pdu, code] of [
    ['10 bytes', BIND3.subarray(0, 10), 'KMS_ERR_PDU_TRUNCATED'],
    ['shorter than frag_length', BIND3.subarray(0, 100), 'KMS_ERR_PDU_TRUNCATED'],
    ['longer than frag_length', Buffer.concat([BIND3, Buffer.alloc(4)]), 'KMS_ERR_PDU_TRUNCATED'],
    ['frag_length below 16', set(BIND3.subarray(0, 16), { 8: 15, 9: 0 }), 'KMS_ERR_PDU_FRAG_LENGTH'],
  ] as const) {
    const r = session.handlePdu(pdu);
    t.equal(r.reply, undefined, name);
    t.equal(r.close, true, name);
    t.equal(r.error?.code, code, name);
  }
});

t.test('PTYPE handling of §2.2: unknown and host-only types close, 16/17 close, 18/19 are ignored', async (t) => {
  const header = (ptype: number) => bytes(`05 00 ${ptype.toString(16).padStart(2, '0')} 03 10 00 00 00 10 00 00 00 05 00 00 00`);
  for (const ptype of [1, 2, 3, 4, 12, 13, 15, 20, 255]) {
    const r = newSession().session.handlePdu(header(ptype));
    t.same([r.reply, r.close, r.error?.code], [undefined, true, 'KMS_ERR_PDU_PTYPE_UNKNOWN'], `PTYPE ${ptype}`);
  }
  for (const ptype of [16, 17]) {
    const r = newSession().session.handlePdu(header(ptype));
    t.same([r.reply, r.close, r.error?.code], [undefined, true, 'KMS_ERR_PDU_PTYPE_CLOSE'], `PTYPE ${ptype}`);
  }
  const { session } = bound();
  for (const ptype of [18, 19]) {
    const r = session.handlePdu(header(ptype));
    t.same([r.reply, r.close, r.error], [undefined, false, undefined], `PTYPE ${ptype} ignored`);
  }
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
  const badVersion = set(header(18), { 1: 1 });
  t.same([session.handlePdu(badVersion).close, session.handlePdu(badVersion).error?.code], [true, 'KMS_ERR_PDU_RPC_VERSION']);
});

t.test('C39: bind with rpc_vers_minor 1 → bind_nak reason 4 with version list 01 05 00', async (t) => {
  const { session } = newSession();
  const r = session.handlePdu(set(BIND3, { 1: 1 }));
  t.equal(
    r.reply?.toString('hex'),
    hex(`
      05 00 0d 03 10 00 00 00 18 00 00 00 02 00 00 00   # bind_nak, flags 0x03, 24 bytes, call_id 2
      04 00                                             # reason 4: protocol_version_not_supported
      01 05 00                                          # versions supported: 5.0
      00 00 00                                          # padding
    `),
  );
  expectNak(t, r, 4, 'KMS_ERR_PDU_RPC_VERSION');
  t.equal(ptypeOf(session.handlePdu(BIND3)), 'bind_ack', 'still OPEN: a correct bind is then accepted');
});

t.test('bind/alter_context header problems: version 4, drep 0, auth 8 (§2.1)', async (t) => {
  expectNak(t, newSession().session.handlePdu(set(BIND3, { 0: 4 })), 4, 'KMS_ERR_PDU_RPC_VERSION');
  expectNak(t, newSession().session.handlePdu(set(ALTER, { 1: 1 })), 4, 'KMS_ERR_PDU_RPC_VERSION');
  expectNak(t, newSession().session.handlePdu(set(BIND3, { 4: 0x00 })), 0, 'KMS_ERR_PDU_DREP'); // big-endian
  expectNak(t, newSession().session.handlePdu(set(BIND3, { 4: 0x11 })), 0, 'KMS_ERR_PDU_DREP'); // EBCDIC
  expectNak(t, newSession().session.handlePdu(set(BIND3, { 10: 8 })), 8, 'KMS_ERR_PDU_AUTH');
});

t.test('request header problems get fault nca_proto_error (§2.1, C39)', async (t) => {
  const { session, calls } = bound();
  expectFault(t, session.handlePdu(set(REQ32, { 1: 1 })), FAULT.PROTO, 'KMS_ERR_RPC_BAD_HEADER', 2, 0);
  expectFault(t, session.handlePdu(set(REQ64, { 10: 16 })), FAULT.PROTO, 'KMS_ERR_RPC_BAD_HEADER', 3, 1);
  expectFault(t, session.handlePdu(set(REQ32, { 4: 0x00 })), FAULT.PROTO, 'KMS_ERR_PDU_DREP', 2, 0);
  t.equal(calls.length, 0, 'never served');
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
});

t.test('a request too short for its fixed fields gets fault nca_proto_error', async (t) => {
  const { session } = bound();
  const short = bytes('05 00 00 03 10 00 00 00 14 00 00 00 09 00 00 00  00 00 00 00');
  expectFault(t, session.handlePdu(short), FAULT.PROTO, 'KMS_ERR_RPC_REQUEST_TRUNCATED', 9, 0);
});

// ---- bind bodies ----

t.test('a bind whose items do not fit gets bind_nak 0 and the connection stays OPEN (§2.4)', async (t) => {
  const { session, groups } = newSession();
  expectNak(t, session.handlePdu(set(BIND3, { 24: 4 })), 0, 'KMS_ERR_BIND_MALFORMED');
  expectNak(t, session.handlePdu(set(ALTER, { [28 + 2]: 2 })), 0, 'KMS_ERR_BIND_MALFORMED');
  t.equal(groups(), 0, 'no association yet');
  expectFault(t, session.handlePdu(REQ32), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 0);
  t.equal(ptypeOf(session.handlePdu(BIND3)), 'bind_ack');
});

t.test('a second bind gets bind_nak 0; the association and its contexts remain (§2.11)', async (t) => {
  const { session, groups } = bound();
  expectNak(t, session.handlePdu(BIND3), 0, 'KMS_ERR_BIND_SECOND');
  t.equal(groups(), 1);
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
  expectResponse(t, session.handlePdu(REQ64), 3, 1);
});

t.test('interface version 2.0 is rejected with (2,1) and its context is unknown', async (t) => {
  const { session, calls } = newSession();
  const r = session.handlePdu(
    bindWith([{ contextId: 0, abstractSyntax: { ...KMS_INTERFACE, major: 2 }, transferSyntaxes: [NDR32_SYNTAX] }]),
  );
  t.same(
    decodeBindAck(r.reply!).results.map((x) => [x.result, x.reason]),
    [[2, 1]],
  );
  expectFault(t, session.handlePdu(REQ32), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 0);
  t.equal(calls.length, 0);
});

t.test('n_transfer_syn > 1: the first supported syntax is accepted and served', async (t) => {
  const { session, calls } = newSession();
  const r = session.handlePdu(
    bindWith([{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [{ uuid: SPARE_GUID, version: 1 }, NDR32_SYNTAX] }]),
  );
  t.same(
    decodeBindAck(r.reply!).results.map((x) => [x.result, x.reason, x.transferSyntax.uuid]),
    [[0, 0, NDR32_SYNTAX.uuid]],
  );
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
  t.equal(calls[0]?.call.syntax, 'ndr32');
});

// ---- §2.8 request checks (C7, C8) ----

t.test('C8: a request before any bind gets fault 0x1C010003, byte for byte', async (t) => {
  const { session, calls } = newSession();
  const r = session.handlePdu(set(REQ32, { 12: 7 }));
  t.equal(
    r.reply?.toString('hex'),
    hex(`
      05 00 03 23 10 00 00 00 20 00 00 00 07 00 00 00   # fault, flags 0x23, 32 bytes, call_id 7
      20 00 00 00 00 00 00 00                           # alloc_hint 32, p_cont_id 0, cancel 0, reserved 0
      03 00 01 1c 00 00 00 00                           # status nca_unk_if, reserved
    `),
  );
  expectFault(t, r, FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 7, 0);
  t.equal(calls.length, 0);
});

t.test('C8: requests on the rejected NDR32 item, the BTFN item, or a never-offered id fault', async (t) => {
  const { session, calls } = newSession();
  session.handlePdu(BIND3); // no alter_context: ctx 0 stays rejected
  expectFault(t, session.handlePdu(REQ32), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 0);
  expectFault(t, session.handlePdu(request({ contextId: 2 })), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 2);
  expectFault(t, session.handlePdu(request({ contextId: 9 })), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 9);
  t.equal(calls.length, 0, 'never served');
  expectResponse(t, session.handlePdu(REQ64), 3, 1);
});

t.test('C7: a request on a foreign interface context faults; KMS/NDR32 next to it is served', async (t) => {
  const { session, calls } = newSession();
  const foreign = { uuid: FOREIGN_INTERFACE_UUID, major: 1, minor: 0 };
  const r = session.handlePdu(
    bindWith([
      { contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] },
      { contextId: 1, abstractSyntax: foreign, transferSyntaxes: [NDR64_SYNTAX] },
      { contextId: 2, abstractSyntax: foreign, transferSyntaxes: [NDR32_SYNTAX] },
    ]),
  );
  t.same(
    decodeBindAck(r.reply!).results.map((x) => [x.result, x.reason]),
    [
      [0, 0],
      [2, 1],
      [2, 1],
    ],
  );
  expectFault(t, session.handlePdu(REQ64), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 3, 1);
  expectFault(t, session.handlePdu(request({ contextId: 2 })), FAULT.UNK_IF, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 2, 2);
  t.equal(calls.length, 0);
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
});

t.test('opnum 1 gets fault 0x1C010002 (§2.8)', async (t) => {
  const { session, calls } = bound();
  expectFault(t, session.handlePdu(request({ opnum: 1 })), FAULT.OP_RNG, 'KMS_ERR_RPC_OPNUM', 2, 0);
  t.equal(calls.length, 0);
});

t.test('C37: NDR32 stub with requestSize ≠ conformance, or short, faults; then a good request is served', async (t) => {
  const { session, calls } = bound();
  const stub = REQ32.subarray(24);
  const mismatch = Buffer.from(stub);
  mismatch.writeUInt32LE(259, 4);
  expectFault(t, session.handlePdu(request({ stub: mismatch })), FAULT.PROTO, 'KMS_ERR_RPC_STUB_MALFORMED', 2, 0);
  expectFault(t, session.handlePdu(request({ stub: stub.subarray(0, 100), callId: 3 })), FAULT.PROTO, 'KMS_ERR_RPC_STUB_MALFORMED', 3, 0);
  t.equal(calls.length, 0);
  expectResponse(t, session.handlePdu(set(REQ32, { 12: 4 })), 4, 0);
  t.equal(calls[0]?.message, KMS_REQUEST);
});

t.test('trailing stub bytes are not handed to the handler (§3.1)', async (t) => {
  const { session, calls } = bound();
  const stub = Buffer.concat([REQ32.subarray(24), Buffer.from('ffffffff', 'hex')]);
  expectResponse(t, session.handlePdu(request({ stub })), 2, 0);
  t.equal(calls[0]?.message, KMS_REQUEST);
});

// ---- replies ----

t.test('success and refusal replies carry the §3.2/§3.4 stubs in the call syntax', async (t) => {
  const refusing = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1 },
    () => ({ hresult: 0xc004f042 }),
  );
  refusing.handlePdu(BIND3);
  refusing.handlePdu(ALTER);
  t.equal(
    refusing.handlePdu(REQ32).reply?.toString('hex'),
    hex(`
      05 00 02 03 10 00 00 00 24 00 00 00 02 00 00 00   # response, 36 bytes, call_id 2
      0c 00 00 00 00 00 00 00                           # alloc_hint 12, ctx 0
      00 00 00 00 00 00 00 00 42 f0 04 c0               # NDR32 refusal stub
    `),
  );
  t.equal(
    refusing.handlePdu(REQ64).reply?.toString('hex'),
    hex(`
      05 00 02 03 10 00 00 00 2c 00 00 00 03 00 00 00   # response, 44 bytes, call_id 3
      14 00 00 00 01 00 00 00                           # alloc_hint 20, ctx 1
      00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 42 f0 04 c0   # NDR64 refusal stub
    `),
  );
  const { session } = bound();
  t.equal(
    session.handlePdu(REQ32).reply?.toString('hex'),
    hex(`
      05 00 02 03 10 00 00 00 30 00 00 00 02 00 00 00   # response, 48 bytes
      18 00 00 00 00 00 00 00                           # alloc_hint 24 = 16 + 6 + 2
      06 00 00 00 00 00 02 00 06 00 00 00               # responseSize 6, referent, conformance 6
      00 00 06 00 ca fe 00 00                           # the 6 response bytes, 2 pad bytes
      00 00 00 00                                       # HRESULT 0
    `),
  );
});

t.test('a refusal the handler throws as a KmsError travels as its HRESULT', async (t) => {
  const session = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1 },
    () => {
      throw new KmsError('KMS_ERR_KMS_VERSION');
    },
  );
  session.handlePdu(BIND3);
  session.handlePdu(ALTER);
  const r = session.handlePdu(REQ32);
  t.equal(r.error?.code, 'KMS_ERR_KMS_VERSION');
  t.equal(r.reply?.subarray(24).toString('hex'), hex('00000000 00000000 0d000780'));
});

// ---- fragments (§2.10, C9, C38) ----

function fragments(stub: Buffer, cuts: number[], callId = 2, contextId = 0): Buffer[] {
  const bounds = [0, ...cuts, stub.length];
  return bounds.slice(0, -1).map((from, i) => {
    const flags = (i === 0 ? 0x01 : 0) | (i === bounds.length - 2 ? 0x02 : 0);
    return encodeRequestPdu({ callId, contextId, opnum: 0, stub: stub.subarray(from, bounds[i + 1]), flags, allocHint: stub.length });
  });
}

t.test('C9: a request in three fragments is answered once, after the last', async (t) => {
  const { session, calls } = bound();
  const [first, middle, last] = fragments(REQ32.subarray(24), [100, 200]);
  t.same(session.handlePdu(first!), { close: false }, 'no reply to the first fragment');
  t.same(session.handlePdu(middle!), { close: false }, 'nor to the middle one');
  const r = session.handlePdu(last!);
  expectResponse(t, r, 2, 0);
  t.equal(r.reply!.toString('hex'), bound().session.handlePdu(REQ32).reply!.toString('hex'), 'same answer as unfragmented');
  t.same(
    calls.map((c) => c.message),
    [KMS_REQUEST],
  );
});

t.test('C38: a continuation with another call_id faults; the call is not served', async (t) => {
  const { session, calls } = bound();
  const [first, middle] = fragments(REQ32.subarray(24), [100, 200]);
  session.handlePdu(first!);
  expectFault(t, session.handlePdu(set(middle!, { 12: 9 })), FAULT.PROTO, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE', 9, 0);
  t.equal(calls.length, 0);
  expectResponse(t, session.handlePdu(set(REQ32, { 12: 5 })), 5, 0);
});

t.test('C38: a non-first fragment without a first faults', async (t) => {
  const { session, calls } = bound();
  const [, middle, last] = fragments(REQ32.subarray(24), [100, 200]);
  expectFault(t, session.handlePdu(middle!), FAULT.PROTO, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE', 2, 0);
  // The rest of that faulted call is dropped rather than answered a second time.
  t.same(session.handlePdu(last!), { close: false });
  t.equal(calls.length, 0);
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
});

t.test('C38: a new first fragment while a call is in progress faults', async (t) => {
  const { session, calls } = bound();
  const [first] = fragments(REQ32.subarray(24), [100, 200]);
  session.handlePdu(first!);
  expectFault(t, session.handlePdu(set(REQ32, { 12: 3 })), FAULT.PROTO, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE', 3, 0);
  t.equal(calls.length, 0);
});

t.test('C38: fragments beyond maxStubBytes fault; the remaining fragments get no reply', async (t) => {
  const { session, calls } = bound({ maxStubBytes: 200 });
  const [first, middle, last] = fragments(REQ32.subarray(24), [100, 220]); // 100 + 120 > 200
  t.same(session.handlePdu(first!), { close: false });
  expectFault(t, session.handlePdu(middle!), FAULT.PROTO, 'KMS_ERR_RPC_FRAGMENT_TOO_LARGE', 2, 0);
  t.same(session.handlePdu(last!), { close: false }, 'last fragment of the faulted call dropped');
  t.equal(calls.length, 0);
  // A first fragment alone above the limit faults too.
  const [big] = fragments(REQ32.subarray(24), [250]);
  expectFault(t, session.handlePdu(big!), FAULT.PROTO, 'KMS_ERR_RPC_FRAGMENT_TOO_LARGE', 2, 0);
});

t.test('handlePdu never throws for garbage (C33)', async (t) => {
  const { session } = bound();
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  for (let i = 0; i < 2000; i++) {
    const base = [BIND3, ALTER, REQ32, REQ64][i % 4]!;
    const pdu = Buffer.from(base);
    for (let k = 0; k < 3; k++) pdu[rand() % pdu.length] = rand() & 0xff;
    pdu.writeUInt16LE(pdu.length, 8); // keep framing whole so the body is exercised
    const r = session.handlePdu(pdu);
    if (r.reply)
      t.ok([PTYPE.BIND_ACK, PTYPE.BIND_NAK, PTYPE.ALTER_CONTEXT_RESP, PTYPE.RESPONSE, PTYPE.FAULT].includes(r.reply[2] as never));
  }
  t.equal(typeof session.handlePdu(Buffer.alloc(0)).close, 'boolean');
});

function alter(callId: number, contexts: PresentationContextItem[]): Buffer {
  return encodeBind({ ptype: PTYPE.ALTER_CONTEXT, callId, flags: 0x03, maxXmitFrag: 5840, maxRecvFrag: 5840, assocGroupId: 0, contexts });
}

t.test('progress: only a bind/alter_context that adds a context and a served request count (idle timer)', async (t) => {
  const { session } = newSession();
  t.equal(session.handlePdu(BIND3).progress, true, 'bind adding contexts');
  t.equal(session.handlePdu(ALTER).progress, true, 'alter_context adding ctx 0');
  t.equal(session.handlePdu(ALTER).progress, undefined, 're-offering the same context is no progress');
  t.equal(session.handlePdu(BIND3).progress, undefined, 'a refused second bind is none');
  t.equal(session.handlePdu(set(REQ32, { 2: PTYPE.CO_CANCEL })).progress, undefined, 'co_cancel is none');
  t.equal(session.handlePdu(set(REQ32, { 2: PTYPE.ORPHANED })).progress, undefined, 'orphaned is none');
  t.equal(session.handlePdu(set(REQ32, { 20: 9 })).progress, undefined, 'a faulted request is none');
  const served = session.handlePdu(REQ32);
  expectResponse(t, served, 2, 0);
  t.equal(served.progress, true, 'a served request is progress');
});

t.test('presentation contexts per connection are bounded: items past the limit get (2,3) and the connection closes', async (t) => {
  const session = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1, maxContexts: 4 },
    () => ({ response: KMS_RESPONSE }),
  );
  expectOk(t, session.handlePdu(BIND3)); // ctx 1 (NDR64)
  const r = session.handlePdu(
    alter(
      3,
      [10, 11, 12, 13].map((id) => ({ contextId: id, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] })),
    ),
  );
  t.equal(ptypeOf(r), 'alter_context_resp', 'the alter_context is still answered');
  const results = decodeBindAck(r.reply!).results;
  t.same(
    results.map((x) => [x.result, x.reason]),
    [
      [0, 0],
      [0, 0],
      [0, 0],
      [2, 3],
    ],
    'the fifth context is rejected with local_limit_exceeded',
  );
  t.equal(r.close, true, 'and the connection closes');
  t.equal(r.error?.code, 'KMS_ERR_RPC_CONTEXT_LIMIT');
});

t.test('an alter_context costs time for its own items only, however many came before (issue 10)', async (t) => {
  const { session } = newSession();
  session.handlePdu(BIND3);
  // 10,000 alter_contexts re-offering known or new ids stay within the default bound of 16.
  for (let i = 0; i < 10_000; i++) {
    const r = session.handlePdu(alter(i, [{ contextId: i % 8, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }]));
    if (r.close) {
      t.fail(`closed at ${i}`);
      break;
    }
  }
  expectResponse(t, session.handlePdu(REQ32), 2, 0);
});

function expectOk(t: Test, r: SessionResult): void {
  t.equal(r.close, false);
  t.equal(r.error, undefined);
}
