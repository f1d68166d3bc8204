// request / response / fault PDU codecs (PROTOCOL.md §2.8, §2.9) against the captures and the
// spec's layouts.
import t from 'tap';
import { decodeRequestStub, decodeResponseStub, type TransferSyntax } from '../../../src/protocol/ndr/stub';
import { PTYPE } from '../../../src/protocol/rpc/constants';
import {
  decodeFaultPdu,
  decodeRequest,
  decodeResponsePdu,
  encodeFault,
  encodeRequestPdu,
  encodeResponse,
} from '../../../src/protocol/rpc/request';
import { bytes, hex } from '../../bytes';
import { EXCHANGES, pduBytes } from './exchanges';

function syntaxOf(name: string): TransferSyntax {
  return name === 'NDR64' ? 'ndr64' : 'ndr32';
}

t.test('every captured request decodes to its KMS request and re-encodes', async (t) => {
  let n = 0;
  for (const ex of EXCHANGES) {
    const requests = ex.pdus.filter((p) => p.ptype === 'request');
    t.equal(requests.length, ex.decoded.calls.length, `${ex.name}: one request PDU per call`);
    requests.forEach((p, i) => {
      const call = ex.decoded.calls[i]!;
      const req = decodeRequest(pduBytes(p));
      t.equal(req.header.ptype, PTYPE.REQUEST);
      t.equal(req.header.flags & 0x03, 0x03, 'single fragment');
      t.equal(req.opnum, 0);
      t.equal(req.objectUuid, undefined);
      t.equal(decodeRequestStub(req.stub, syntaxOf(call.transfer_syntax)).toString('hex'), call.kms_request_hex, `${ex.name}: call ${i}`);
      const again = encodeRequestPdu({
        callId: req.header.callId,
        contextId: req.contextId,
        opnum: req.opnum,
        stub: req.stub,
        flags: req.header.flags,
        allocHint: req.allocHint,
      });
      t.equal(again.toString('hex'), p.hex, `${ex.name}: request ${i} round trip`);
      n++;
    });
  }
  t.equal(n, 74, 'requests in the captures');
});

t.test('every captured response decodes to its KMS response or HRESULT and re-encodes', async (t) => {
  let n = 0;
  for (const ex of EXCHANGES) {
    const responses = ex.pdus.filter((p) => p.ptype === 'response');
    responses.forEach((p, i) => {
      const call = ex.decoded.calls[i]!;
      const res = decodeResponsePdu(pduBytes(p));
      t.equal(res.header.flags, 0x03, 'C11: flags 0x03');
      t.equal(res.cancelCount, 0);
      t.equal(res.allocHint, res.stub.length, 'C11: alloc_hint = stub length');
      const stub = decodeResponseStub(res.stub, syntaxOf(call.transfer_syntax), res.allocHint);
      t.equal(stub.hresult, parseInt(call.hresult, 16), `${ex.name}: call ${i} HRESULT`);
      t.equal(stub.response?.toString('hex') ?? '', call.kms_response_hex, `${ex.name}: call ${i} response`);
      t.same(stub.warnings, []);
      t.equal(encodeResponse(res.header.callId, res.contextId, res.stub).toString('hex'), p.hex, `${ex.name}: response ${i} round trip`);
      n++;
    });
  }
  t.equal(n, 74, 'responses in the captures');
});

t.test('fault of C8: 32 bytes, flags 0x23, call_id and p_cont_id echoed, zeros at 22-23 and 28-31', async (t) => {
  const expected = hex(`
    05 00 03 23               # rpc 5.0, PTYPE 3 fault, FIRST|LAST|DID_NOT_EXECUTE
    10 00 00 00               # drep
    20 00 00 00               # frag_length 32, auth_length 0
    07 00 00 00               # call_id 7 (the request's; the C reference always sends 2)
    20 00 00 00               # alloc_hint 32
    02 00                     # p_cont_id 2 (the request's)
    00 00                     # cancel_count 0, reserved 0
    03 00 01 1c               # status 0x1C010003 nca_unk_if
    00 00 00 00               # reserved
  `);
  t.equal(encodeFault(7, 2, 0x1c010003).toString('hex'), expected);
  const back = decodeFaultPdu(Buffer.from(expected, 'hex'));
  t.match(back, { allocHint: 32, contextId: 2, cancelCount: 0, reserved: 0, status: 0x1c010003, reserved2: 0 });
  t.equal(back.header.callId, 7);
});

t.test('response header of §2.9/§3.4: alloc_hint, p_cont_id, cancel_count 0, reserved 0', async (t) => {
  const stub = bytes('00 00 00 00  00 00 00 00  42 f0 04 c0');
  t.equal(
    encodeResponse(2, 0, stub).toString('hex'),
    hex(`
      05 00 02 03 10 00 00 00 24 00 00 00 02 00 00 00   # response, flags 0x03, length 36, call 2
      0c 00 00 00 00 00 00 00                           # alloc_hint 12, p_cont_id 0, cancel 0, reserved 0
      00 00 00 00 00 00 00 00 42 f0 04 c0               # the refusal stub
    `),
  );
});

t.test('a request with PFC_OBJECT_UUID carries the UUID before the stub (§2.8)', async (t) => {
  const pdu = Buffer.from(
    hex(`
      05 00 00 83 10 00 00 00 2c 00 00 00 05 00 00 00   # request, flags FIRST|LAST|OBJECT_UUID, length 44
      04 00 00 00 01 00 00 00                           # alloc_hint 4, p_cont_id 1, opnum 0
      33221100554477668899aabbccddeeff                  # object UUID 00112233-4455-6677-8899-aabbccddeeff
      de ad be ef                                       # stub
    `),
    'hex',
  );
  const req = decodeRequest(pdu);
  t.equal(req.objectUuid, '00112233-4455-6677-8899-aabbccddeeff');
  t.equal(req.stub.toString('hex'), 'deadbeef');
  t.equal(req.contextId, 1);
  const again = encodeRequestPdu({ callId: 5, contextId: 1, opnum: 0, stub: req.stub, objectUuid: req.objectUuid! });
  t.equal(again.toString('hex'), pdu.toString('hex'));
});

t.test('a request too short for its fixed fields is KMS_ERR_RPC_REQUEST_TRUNCATED', async (t) => {
  const header = hex('05 00 00 03 10 00 00 00 14 00 00 00 02 00 00 00');
  t.throws(() => decodeRequest(Buffer.from(header + '00000000', 'hex')), { code: 'KMS_ERR_RPC_REQUEST_TRUNCATED' });
  const withUuidFlag = hex('05 00 00 83 10 00 00 00 1c 00 00 00 02 00 00 00') + '0000000000000000' + '0000';
  t.throws(() => decodeRequest(Buffer.from(withUuidFlag, 'hex')), { code: 'KMS_ERR_RPC_REQUEST_TRUNCATED' });
});
