// The remembered first bind (first-bind-cache.ts): a bind seen before is answered from a patched
// copy, which must be byte for byte what the full path (decode, judge, encode) answers, for every
// policy, and must leave the session with the same contexts.
import t from 'tap';
import { decodeBind, encodeBind, encodeBindAck, negotiateFragSize } from '../../../src/protocol/rpc/bind';
import { btfnSyntax, KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, PTYPE } from '../../../src/protocol/rpc/constants';
import { judgePresentationContexts } from '../../../src/protocol/rpc/presentation-context';
import { encodeRequestPdu } from '../../../src/protocol/rpc/request';
import { FirstBindCache } from '../../../src/protocol/rpc/first-bind-cache';
import { RpcSession } from '../../../src/protocol/rpc/session';
import { encodeRequestStub } from '../../../src/protocol/ndr/stub';

const WINDOWS_OFFER = [
  { contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] },
  { contextId: 1, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR64_SYNTAX] },
  { contextId: 2, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [btfnSyntax(3)] },
];
const NDR32_OFFER = [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }];

const POLICIES = [
  { ndr64: true, btfn: true },
  { ndr64: false, btfn: true },
  { ndr64: true, btfn: false },
  { ndr64: false, btfn: false },
];
/** call_id, pfc_flags and frag sizes: the fields a remembered answer takes from each bind. */
const CALLS = [
  { callId: 2, flags: 0x13, maxXmitFrag: 5840, maxRecvFrag: 5840 },
  { callId: 77, flags: 0x03, maxXmitFrag: 65535, maxRecvFrag: 1024 },
  { callId: 0xfffffffe, flags: 0x07, maxXmitFrag: 2000, maxRecvFrag: 9000 },
];

t.test('a remembered first bind gets the bind_ack the full path encodes, and the same contexts', async (t) => {
  const firstBinds = new FirstBindCache();
  let group = 0x1000;
  for (const [name, offer] of [
    ['Windows offer', WINDOWS_OFFER],
    ['NDR32 only', NDR32_OFFER],
  ] as const) {
    for (const policy of POLICIES) {
      for (const call of CALLS) {
        const bind = encodeBind({ ptype: PTYPE.BIND, assocGroupId: 0, contexts: offer, ...call });
        const assocGroupId = group++;
        const options = { ...policy, maxStubBytes: 4096, maxPduBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => assocGroupId };
        const session = new RpcSession({ ...options, firstBinds }, () => ({ response: Buffer.from('0600', 'hex') }));
        // The first call of each offer and policy takes the full path, the others the remembered answer.
        const hit = firstBinds.lookup(bind, options) !== undefined;
        t.equal(hit, call !== CALLS[0], `${name}, ndr64=${policy.ndr64} btfn=${policy.btfn}, call ${call.callId}: remembered`);
        const result = session.handlePdu(bind);
        const judged = judgePresentationContexts(decodeBind(bind).contexts, policy);
        const expected = encodeBindAck({
          ptype: PTYPE.BIND_ACK,
          callId: call.callId,
          flags: call.flags,
          maxXmitFrag: negotiateFragSize(call.maxXmitFrag, 4096),
          maxRecvFrag: negotiateFragSize(call.maxRecvFrag, 4096),
          assocGroupId,
          secondaryAddress: '1688',
          results: judged.results,
        });
        const what = `${name}, ndr64=${policy.ndr64} btfn=${policy.btfn}, call ${call.callId}`;
        t.same(result.reply?.toString('hex'), expected.toString('hex'), `${what}: bind_ack`);
        t.equal(result.progress, judged.accepted.length > 0 ? true : undefined, `${what}: progress`);
        // Each accepted context serves a request; the others fault.
        for (const item of offer) {
          const accepted = judged.accepted.find((a) => a.contextId === item.contextId);
          const stub = encodeRequestStub(Buffer.alloc(8, 1), accepted?.syntax ?? 'ndr32');
          const reply = session.handlePdu(encodeRequestPdu({ callId: 5, contextId: item.contextId, opnum: 0, stub })).reply;
          t.equal(reply?.[2], accepted ? PTYPE.RESPONSE : PTYPE.FAULT, `${what}: context ${item.contextId}`);
        }
      }
    }
  }
});

t.test('a second bind on the same session is still refused after a remembered first bind', async (t) => {
  const bind = encodeBind({ ptype: PTYPE.BIND, assocGroupId: 0, contexts: NDR32_OFFER, ...CALLS[0]! });
  const firstBinds = new FirstBindCache();
  for (let i = 0; i < 2; i++) {
    const session = new RpcSession(
      { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1, firstBinds },
      () => ({ response: Buffer.alloc(2) }),
    );
    t.equal(session.handlePdu(bind).reply?.[2], PTYPE.BIND_ACK);
    t.equal(session.handlePdu(bind).reply?.[2], PTYPE.BIND_NAK, 'bind_nak for the second bind (§2.11)');
  }
});
