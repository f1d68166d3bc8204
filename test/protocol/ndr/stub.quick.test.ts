// NDR32/NDR64 stubs of RequestActivation (PROTOCOL.md §3.1–§3.4): spec examples and bad stubs.
import t from 'tap';
import {
  decodeRequestStub,
  decodeResponseStub,
  encodeRefusalStub,
  encodeRequestStub,
  encodeSuccessStub,
  successStubLength,
  writeSuccessStub,
} from '../../../src/protocol/ndr/stub';
import { finishPdu } from '../../../src/protocol/rpc/header';
import { encodeResponse, writeResponseHead } from '../../../src/protocol/rpc/request';
import { Writer } from '../../../src/protocol/writer';
import { bytes, hex } from '../../bytes';
import { EXCHANGES } from '../rpc/exchanges';

// A real v6 KMS request and response (260 bytes each) from a capture.
const v6 = EXCHANGES.find((ex) => ex.name === 'vlmcs-vlmcsd-win10-v6-three-requests-one-connection.json')!.decoded.calls[0]!;
const KMS_REQUEST = Buffer.from(v6.kms_request_hex, 'hex');
const KMS_RESPONSE = Buffer.from(v6.kms_response_hex, 'hex');

t.test('request stub of §3.1, NDR32 and NDR64, both ways', async (t) => {
  t.equal(KMS_REQUEST.length, 260);
  t.equal(KMS_REQUEST.subarray(0, 4).toString('hex'), '00000600', 'KMS version 6.0 first');
  const ndr32 =
    hex(`
    04 01 00 00   # requestSize 260
    04 01 00 00   # conformance 260
  `) + v6.kms_request_hex;
  const ndr64 =
    hex(`
    04 01 00 00 00 00 00 00   # requestSize 260 + 4 pad bytes
    04 01 00 00 00 00 00 00   # conformance u64 260
  `) + v6.kms_request_hex;
  t.equal(encodeRequestStub(KMS_REQUEST, 'ndr32').toString('hex'), ndr32);
  t.equal(encodeRequestStub(KMS_REQUEST, 'ndr64').toString('hex'), ndr64);
  t.equal(decodeRequestStub(Buffer.from(ndr32, 'hex'), 'ndr32').toString('hex'), v6.kms_request_hex);
  t.equal(decodeRequestStub(Buffer.from(ndr64, 'hex'), 'ndr64').toString('hex'), v6.kms_request_hex);
});

t.test('request stub: trailing bytes after requestSize are ignored, whatever their value (§3.1)', async (t) => {
  const stub = bytes('03 00 00 00  03 00 00 00  aa bb cc  ff ff ff ff  # 4 trailing bytes');
  t.equal(decodeRequestStub(stub, 'ndr32').toString('hex'), 'aabbcc');
  // NDR64 pad bytes are sent as zero but not checked.
  const ndr64 = bytes('02 00 00 00 ee ee ee ee  02 00 00 00 00 00 00 00  11 22  00 00');
  t.equal(decodeRequestStub(ndr64, 'ndr64').toString('hex'), '1122');
});

t.test('malformed request stubs are KMS_ERR_RPC_STUB_MALFORMED (§3.1, C37)', async (t) => {
  const cases: [string, string, 'ndr32' | 'ndr64'][] = [
    ['NDR32 requestSize ≠ conformance', '04 01 00 00  00 01 00 00' + v6.kms_request_hex, 'ndr32'],
    ['NDR32 shorter than requestSize', '04 01 00 00  04 01 00 00' + v6.kms_request_hex.slice(0, 518), 'ndr32'],
    ['NDR32 header cut', '04 01 00 00  04 01', 'ndr32'],
    ['empty stub', '', 'ndr32'],
    ['NDR64 requestSize ≠ conformance', '04 01 00 00 00 00 00 00  05 01 00 00 00 00 00 00' + v6.kms_request_hex, 'ndr64'],
    ['NDR64 conformance above 2^32', '04 01 00 00 00 00 00 00  04 01 00 00 01 00 00 00' + v6.kms_request_hex, 'ndr64'],
    ['NDR64 shorter than requestSize', '04 01 00 00 00 00 00 00  04 01 00 00 00 00 00 00' + v6.kms_request_hex.slice(2), 'ndr64'],
    ['an NDR32 stub read as NDR64', '04 01 00 00  04 01 00 00' + v6.kms_request_hex, 'ndr64'],
  ];
  for (const [name, text, syntax] of cases) {
    t.throws(() => decodeRequestStub(bytes(text), syntax), { code: 'KMS_ERR_RPC_STUB_MALFORMED' }, name);
  }
});

t.test('success stub of §3.2: NDR64 example with n = 260, alloc_hint 288', async (t) => {
  const expected =
    hex(`
    04 01 00 00 00 00 00 00   # responseSize 260 + 4 zero pad bytes
    00 00 02 00 00 00 00 00   # referent id u64 0x20000
    04 01 00 00 00 00 00 00   # conformance u64 260
  `) +
    v6.kms_response_hex +
    hex('00 00 00 00  # HRESULT 0 (n ≡ 0 mod 4: no pad)');
  const stub = encodeSuccessStub(KMS_RESPONSE, 'ndr64');
  t.equal(stub.toString('hex'), expected);
  t.equal(stub.length, 288);
  const back = decodeResponseStub(stub, 'ndr64', 288);
  t.equal(back.hresult, 0);
  t.equal(back.response?.toString('hex'), v6.kms_response_hex);
  t.same(back.warnings, []);
});

t.test('success stub, NDR32, n ≡ 2 mod 4: the 2 pad bytes come before the HRESULT (§3.2, C12)', async (t) => {
  const response = Buffer.alloc(158, 0xab); // a v4 response: 60 + PIDSize 98 (a 48-character ePID)
  const expected =
    hex(`
    9e 00 00 00   # responseSize 158
    00 00 02 00   # referent id 0x00020000
    9e 00 00 00   # conformance 158
  `) +
    'ab'.repeat(158) +
    hex(`
    00 00         # pad to 4
    00 00 00 00   # HRESULT 0
  `);
  const stub = encodeSuccessStub(response, 'ndr32');
  t.equal(stub.toString('hex'), expected);
  t.equal(stub.length, 16 + 158 + 2);
  const back = decodeResponseStub(stub, 'ndr32', 176);
  t.equal(back.response?.length, 158);
  t.same(back.warnings, []);
});

t.test('refusal stubs of §3.4: 12 bytes NDR32, 20 bytes NDR64 (C13)', async (t) => {
  const ndr32 = hex(`
    00 00 00 00   # responseSize 0
    00 00 00 00   # null referent: nothing follows but the return value
    42 f0 04 c0   # HRESULT 0xC004F042
  `);
  const ndr64 = hex(`
    00 00 00 00 00 00 00 00   # responseSize 0 + 4 pad bytes
    00 00 00 00 00 00 00 00   # null referent u64
    42 f0 04 c0               # HRESULT
  `);
  t.equal(encodeRefusalStub(0xc004f042, 'ndr32').toString('hex'), ndr32);
  t.equal(encodeRefusalStub(0xc004f042, 'ndr64').toString('hex'), ndr64);
  for (const [stub, syntax] of [
    [ndr32, 'ndr32'],
    [ndr64, 'ndr64'],
  ] as const) {
    const back = decodeResponseStub(Buffer.from(stub, 'hex'), syntax);
    t.equal(back.hresult, 0xc004f042);
    t.equal(back.response, undefined);
  }
});

t.test('client-side response stub checks of §3.3', async (t) => {
  const good = encodeSuccessStub(Buffer.from('0102', 'hex'), 'ndr32');
  t.equal(good.toString('hex'), hex('02000000 00000200 02000000 0102 0000 00000000'));
  // responseSize ≠ conformance
  t.throws(() => decodeResponseStub(bytes('02000000 00000200 03000000 010203 00 00000000'), 'ndr32'), {
    code: 'KMS_ERR_CLIENT_PROTOCOL',
  });
  // bytes beyond the stub
  t.throws(() => decodeResponseStub(Buffer.concat([good, Buffer.alloc(4)]), 'ndr32'), { code: 'KMS_ERR_CLIENT_PROTOCOL' });
  // fewer than n response bytes
  t.throws(() => decodeResponseStub(good.subarray(0, 13), 'ndr32'), { code: 'KMS_ERR_CLIENT_PROTOCOL' });
  // nonzero pad and a wrong alloc_hint are warnings only
  const dirtyPad = bytes('02000000 00000200 02000000 0102 ffff 00000000');
  const back = decodeResponseStub(dirtyPad, 'ndr32', 99);
  t.equal(back.response?.toString('hex'), '0102');
  t.equal(back.warnings.length, 2);
  // A nonzero return value after a response is reported as such.
  t.equal(decodeResponseStub(bytes('02000000 00000200 02000000 0102 0000 0d000780'), 'ndr32').hresult, 0x8007000d);
});

t.test('a success stub written behind a response head is the response of the stub made on its own', async (t) => {
  for (const syntax of ['ndr32', 'ndr64'] as const) {
    for (let n = 0; n <= 20; n++) {
      const response = Buffer.from(Array.from({ length: n }, (_, i) => 0x40 + i));
      const stub = encodeSuccessStub(response, syntax);
      t.equal(successStubLength(n, syntax), stub.length, `${syntax}, ${n} bytes: the length announced`);
      const w = new Writer(8);
      const at = writeResponseHead(w, 7, 1, stub.length);
      writeSuccessStub(w, response, syntax);
      t.same(finishPdu(w, at), encodeResponse(7, 1, stub), `${syntax}, ${n} bytes: the same PDU`);
    }
  }
});
