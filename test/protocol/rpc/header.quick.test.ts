// The 16-byte common header (PROTOCOL.md §2.1) and the PTYPE table (§2.2).
import t from 'tap';
import { isPtype, PTYPE, PTYPE_NAME } from '../../../src/protocol/rpc/constants';
import { decodeHeader, decodeWholePduHeader, finishPdu, writeHeader } from '../../../src/protocol/rpc/header';
import { Writer } from '../../../src/protocol/writer';
import { bytes, hex } from '../../bytes';
import { EXCHANGES, pduBytes } from './exchanges';

t.test('every captured PDU: header fields per §2.1, PTYPE name as annotated', async (t) => {
  for (const ex of EXCHANGES) {
    for (const p of ex.pdus) {
      const pdu = pduBytes(p);
      const h = decodeWholePduHeader(pdu);
      t.equal(PTYPE_NAME.get(h.ptype), p.ptype, `${ex.name}: ${p.ptype}`);
      t.same([h.rpcVersion, h.rpcVersionMinor, h.drep, h.authLength, h.fragLength], [5, 0, 0x10, 0, pdu.length]);
    }
  }
});

t.test('the reverse PTYPE lookup covers the forward table exactly', async (t) => {
  t.equal(PTYPE_NAME.size, Object.keys(PTYPE).length);
  t.equal(PTYPE_NAME.get(12), 'bind_ack');
  t.equal(PTYPE_NAME.get(15), 'alter_context_resp');
  t.ok(isPtype(19));
  t.notOk(isPtype(1));
});

t.test('header decode and encode, field by field', async (t) => {
  const expected = hex(`
    05 00        # rpc_vers 5, rpc_vers_minor 0
    0b           # PTYPE 11 bind
    13           # pfc_flags FIRST|LAST|CONC_MPX
    10 00 00 00  # packed_drep: little-endian, ASCII, IEEE
    1c 00        # frag_length 28
    00 00        # auth_length 0
    78 56 34 12  # call_id 0x12345678
  `);
  const w = new Writer(8);
  const at = writeHeader(w, PTYPE.BIND, 0x13, 0x12345678);
  w.zeros(12);
  const pdu = finishPdu(w, at);
  t.equal(pdu.subarray(0, 16).toString('hex'), expected);
  t.same(decodeHeader(pdu), {
    rpcVersion: 5,
    rpcVersionMinor: 0,
    ptype: 11,
    flags: 0x13,
    drep: 0x10,
    fragLength: 28,
    authLength: 0,
    callId: 0x12345678,
  });
});

t.test('decodeWholePduHeader refuses short, inconsistent and impossible lengths', async (t) => {
  const pdu = bytes('05 00 11 03 10 00 00 00 10 00 00 00 01 00 00 00');
  t.equal(decodeWholePduHeader(pdu).ptype, PTYPE.SHUTDOWN);
  t.throws(() => decodeHeader(pdu.subarray(0, 15)), { code: 'KMS_ERR_PDU_TRUNCATED' });
  t.throws(() => decodeWholePduHeader(Buffer.concat([pdu, Buffer.alloc(1)])), { code: 'KMS_ERR_PDU_TRUNCATED' });
  const tiny = Buffer.from(pdu);
  tiny[8] = 12;
  t.throws(() => decodeWholePduHeader(tiny), { code: 'KMS_ERR_PDU_FRAG_LENGTH' });
});
