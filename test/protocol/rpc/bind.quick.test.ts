// bind / alter_context / bind_ack / alter_context_resp / bind_nak codecs (PROTOCOL.md §2.4, §2.6,
// §2.7) against the captures and the spec's hand-annotated examples.
import t from 'tap';
import {
  decodeBind,
  decodeBindAck,
  decodeBindNak,
  encodeBind,
  encodeBindAck,
  encodeBindNak,
  negotiateFragSize,
  type PresentationContextItem,
} from '../../../src/protocol/rpc/bind';
import { btfnSyntax, KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, NULL_SYNTAX, PTYPE } from '../../../src/protocol/rpc/constants';
import { isBtfn } from '../../../src/protocol/rpc/presentation-context';
import { hex } from '../../bytes';
import { EXCHANGES, pduBytes } from './exchanges';

function syntaxName(uuid: string): string {
  if (uuid === NDR32_SYNTAX.uuid) return 'NDR32';
  if (uuid === NDR64_SYNTAX.uuid) return 'NDR64';
  if (isBtfn({ uuid, version: 1 })) return 'BTFN';
  return uuid.replace(/-/g, '');
}

t.test('every captured bind and alter_context decodes, matches its annotation and re-encodes', async (t) => {
  let n = 0;
  for (const ex of EXCHANGES) {
    for (const p of ex.pdus.filter((p) => p.ptype === 'bind' || p.ptype === 'alter_context')) {
      const pdu = pduBytes(p);
      const bind = decodeBind(pdu);
      const offered = (p as unknown as { contexts_offered: { context_id: number; transfer_syntax: string }[] }).contexts_offered;
      t.same(
        bind.contexts.map((c) => ({ context_id: c.contextId, transfer_syntax: syntaxName(c.transferSyntaxes[0]!.uuid) })),
        offered,
        `${ex.name}: ${p.ptype} items`,
      );
      t.ok(bind.contexts.every((c) => c.transferSyntaxes.length === 1 && c.abstractSyntax.uuid === KMS_INTERFACE.uuid));
      // Re-encoding every decoded field reproduces the PDU: nothing was left over or misread.
      const again = encodeBind({ ptype: bind.header.ptype, callId: bind.header.callId, flags: bind.header.flags, ...bind });
      t.equal(again.toString('hex'), p.hex, `${ex.name}: ${p.ptype} round trip`);
      n++;
    }
  }
  t.equal(n, 97, 'binds and alter_contexts in the captures');
});

t.test('every captured bind_ack and alter_context_resp decodes and re-encodes (padding aside)', async (t) => {
  let n = 0;
  for (const ex of EXCHANGES) {
    for (const p of ex.pdus.filter((p) => p.ptype === 'bind_ack' || p.ptype === 'alter_context_resp')) {
      const pdu = pduBytes(p);
      const ack = decodeBindAck(pdu);
      t.same(
        ack.results.map((r, i) => ({ context_id: p.context_results![i]!.context_id, result: r.result, reason: r.reason })),
        p.context_results!.map(({ context_id, result, reason }) => ({ context_id, result, reason })),
        `${ex.name}: ${p.ptype} results`,
      );
      if (p.ptype === 'alter_context_resp') t.equal(ack.secondaryAddress, '', 'empty sec_addr');
      else t.match(ack.secondaryAddress, /^[0-9]{1,5}$/, 'sec_addr is a port');
      const again = encodeBindAck({ ptype: ack.header.ptype, callId: ack.header.callId, flags: ack.header.flags, ...ack });
      // Padding sits between sec_addr and n_results; the C reference leaves junk there (§2.6).
      const padStart = 26 + pdu.readUInt16LE(24);
      const padEnd = padStart + ((4 - (padStart % 4)) % 4);
      const expected = Buffer.from(pdu);
      expected.fill(0, padStart, padEnd);
      t.equal(again.toString('hex'), expected.toString('hex'), `${ex.name}: ${p.ptype} round trip`);
      n++;
    }
  }
  t.equal(n, 97, 'bind_acks and alter_context_resps in the captures');
});

const ZERO_SYNTAX = '00000000000000000000000000000000 00000000';

t.test('bind_ack: the example of §2.6 (port 1688, NDR32 rejected, NDR64 accepted, BTFN acked)', async (t) => {
  const expected = hex(`
    05 00 0c 13            # rpc_vers 5.0, PTYPE 12 bind_ack, flags 0x13 echoed
    10 00 00 00            # drep little-endian
    6c 00 00 00            # frag_length 108, auth_length 0
    02 00 00 00            # call_id 2
    d0 16 d0 16            # max_xmit_frag, max_recv_frag 5840 echoed
    78 56 34 12            # assoc_group_id 0x12345678
    05 00 31 36 38 38 00   # sec_addr_length 5, "1688\\0"
    00                     # 1 padding byte → n_results at offset 32
    03 00 00 00            # n_results 3 + reserved
    02 00 02 00 ${ZERO_SYNTAX}  # ctx 0: provider_rejection, transfer syntaxes not supported
    00 00 00 00 33057171babe37498319b5dbef9ccc36 01 00 00 00   # ctx 1: acceptance, NDR64 v1
    03 00 03 00 ${ZERO_SYNTAX}  # ctx 2: negotiate_ack, features 0x0003
  `);
  const pdu = encodeBindAck({
    ptype: PTYPE.BIND_ACK,
    callId: 2,
    flags: 0x13,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 0x12345678,
    secondaryAddress: '1688',
    results: [
      { result: 2, reason: 2, transferSyntax: NULL_SYNTAX },
      { result: 0, reason: 0, transferSyntax: NDR64_SYNTAX },
      { result: 3, reason: 3, transferSyntax: NULL_SYNTAX },
    ],
  });
  t.equal(pdu.toString('hex'), expected);
  t.equal(pdu.length, 108, 'C3: A + 76 with A = 32');
  const back = decodeBindAck(Buffer.from(expected, 'hex'));
  t.equal(back.secondaryAddress, '1688');
  t.equal(back.assocGroupId, 0x12345678);
});

t.test('bind_ack for a 1-digit port has no padding and is 104 bytes with 3 items (C3)', async (t) => {
  const pdu = encodeBindAck({
    ptype: PTYPE.BIND_ACK,
    callId: 7,
    flags: 0x03,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 1,
    secondaryAddress: '7',
    results: [0, 1, 2].map(() => ({ result: 2, reason: 1, transferSyntax: NULL_SYNTAX })),
  });
  t.equal(pdu.length, 104);
  t.equal(
    pdu.subarray(24, 32).toString('hex'),
    hex(`
    02 00 37 00   # L=2 "7\\0", no padding
    03 00 00 00   # n_results at offset 28
  `),
  );
});

t.test('alter_context_resp of C6: 56 bytes, empty sec_addr, 2 pad bytes, NDR32 accepted', async (t) => {
  const expected = hex(`
    05 00 0f 03 10 00 00 00   # PTYPE 15, flags 0x03 (not the alter_context's 0x13)
    38 00 00 00 02 00 00 00   # frag_length 56, auth 0, call_id 2
    d0 16 d0 16               # frag sizes
    6b d7 cd 82               # the bind_ack's assoc_group_id
    00 00                     # sec_addr_length 0
    00 00                     # padding to offset 28 (the C reference sends leftovers here)
    01 00 00 00               # n_results 1
    00 00 00 00 045d888aeb1cc9119fe808002b104860 02 00 00 00  # acceptance, NDR32 v2
  `);
  const pdu = encodeBindAck({
    ptype: PTYPE.ALTER_CONTEXT_RESP,
    callId: 2,
    flags: 0x03,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 0x82cdd76b,
    secondaryAddress: '',
    results: [{ result: 0, reason: 0, transferSyntax: NDR32_SYNTAX }],
  });
  t.equal(pdu.toString('hex'), expected);
});

t.test('bind_nak of C39: reason 4, version list 01 05 00, zero padded to 24 bytes', async (t) => {
  const expected = hex(`
    05 00 0d 03 10 00 00 00   # PTYPE 13 bind_nak, flags 0x03
    18 00 00 00 09 00 00 00   # frag_length 24, call_id 9
    04 00                     # provider_reject_reason 4: protocol_version_not_supported
    01 05 00                  # one supported version: 5.0
    00 00 00                  # padding
  `);
  t.equal(encodeBindNak(9, 4).toString('hex'), expected);
  const back = decodeBindNak(Buffer.from(expected, 'hex'));
  t.equal(back.reason, 4);
  t.same(back.versions, [{ major: 5, minor: 0 }]);
  t.equal(back.header.ptype, PTYPE.BIND_NAK);
});

t.test('a bind whose items do not fit in frag_length is KMS_ERR_BIND_MALFORMED (§2.4)', async (t) => {
  const good = pduBytes(EXCHANGES.find((ex) => ex.name === 'vlmcs-vlmcsd-win10-v6-ndr64-btfn.json')!.pdus[0]!);
  t.equal(good.length, 160);
  // Claims 4 items but carries 3.
  const moreItems = Buffer.from(good);
  moreItems[24] = 4;
  t.throws(() => decodeBind(moreItems), { code: 'KMS_ERR_BIND_MALFORMED' });
  // The last item claims 2 transfer syntaxes but carries 1.
  const moreSyntaxes = Buffer.from(good);
  moreSyntaxes[28 + 44 + 44 + 2] = 2;
  t.throws(() => decodeBind(moreSyntaxes), { code: 'KMS_ERR_BIND_MALFORMED' });
  // Cut inside the fixed part.
  t.throws(() => decodeBind(good.subarray(0, 26)), { code: 'KMS_ERR_BIND_MALFORMED' });
});

t.test('a bind with two transfer syntaxes in one item decodes both, in order', async (t) => {
  const items: PresentationContextItem[] = [
    { contextId: 5, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [btfnSyntax(3), NDR32_SYNTAX] },
  ];
  const pdu = encodeBind({
    ptype: PTYPE.BIND,
    callId: 1,
    flags: 3,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 0,
    contexts: items,
  });
  t.equal(pdu.length, 28 + 24 + 40);
  t.equal(
    pdu.subarray(28, 52).toString('hex'),
    hex(`
      05 00 02 00                        # p_cont_id 5, n_transfer_syn 2
      7521c8514e845047b0d8ec255555bc06   # KMS interface
      01 00 00 00                        # version 1.0
    `),
  );
  t.same(decodeBind(pdu).contexts, items);
});

t.test('bind_ack frag sizes: echoed, or lowered to the host limit but never below 1432 (§2.6)', async (t) => {
  t.equal(negotiateFragSize(5840, 0xffff), 5840, 'echoed under a large limit');
  t.equal(negotiateFragSize(5840, 4096), 4096, 'lowered to the limit');
  t.equal(negotiateFragSize(5840, 512), 1432, 'never below 1432');
  t.equal(negotiateFragSize(1000, 4096), 1000, 'a value below 1432 is echoed unchanged');
  t.equal(negotiateFragSize(1000, 512), 1000, 'and never raised');
  t.equal(negotiateFragSize(2000, 4096), 2000, 'never raised');
});
