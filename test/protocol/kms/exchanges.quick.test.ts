// Every RequestActivation call captured in test/fixtures/exchanges (C and Python references, v4/v5/v6):
// the host decodes the request exactly, the client check accepts the captured response, and our
// own response to the captured request passes the same check (PROTOCOL.md §4–§6).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createDecipheriv } from 'node:crypto';
import {
  KMS_V5_KEY,
  V6_CIPHER,
  cbcDecryptInPlace,
  decodeKmsRequest,
  encodeKmsResponse,
  v4Mac,
  verifyKmsResponse,
} from '../../../src/protocol/kms';
import { bytes } from '../../bytes';
import {
  exchangeFiles,
  expectedResponseFields,
  readFixture,
  replay,
  requestFieldsOf,
  responseBaseOf,
  responseFieldsOf,
  sentOf,
  withoutUtc,
  xor,
} from './fixtures';

const files = exchangeFiles();

t.test('the fixture corpus is there', async (t) => {
  t.ok(files.length >= 60, `${files.length} capture files`);
});

let calls = 0;
let served = 0;
for (const file of files) {
  const capture = readFixture(`exchanges/${file}`);
  t.test(file, async (t) => {
    for (const [i, call] of (capture.decoded.calls as any[]).entries()) {
      calls++;
      const label = `call ${i}`;
      const message = bytes(call.kms_request_hex);
      t.equal(message.length, call.request.bytes, `${label}: request length`);
      const req = decodeKmsRequest(message, { verifyV4Mac: true });
      t.same(requestFieldsOf(req.base), withoutUtc(call.request.fields), `${label}: request fields`);
      t.equal(req.version, Number(call.request.fields.version[0]), `${label}: version`);
      if (req.version === 4) {
        t.equal(req.dreq, undefined);
      } else {
        t.equal(req.dreq?.toString('hex'), call.request.decrypted_iv, `${label}: Dreq`);
        t.equal(req.iv?.toString('hex'), call.request.iv, `${label}: IV`);
      }
      if (!call.kms_response_hex) {
        t.not(call.hresult, '0x00000000', `${label}: a refusal has no KMS response`);
        continue;
      }
      served++;
      const sent = sentOf(req, message);
      const captured = bytes(call.kms_response_hex);
      const verified = verifyKmsResponse(captured, sent);
      t.same(responseFieldsOf(verified.base), expectedResponseFields(call.response.fields), `${label}: captured response fields`);
      t.equal(verified.version, req.version);
      if (req.version === 6) t.equal(verified.hwid?.toString('hex'), call.response.hwid.toLowerCase(), `${label}: HwId`);
      else t.equal(verified.hwid, undefined);
      t.equal(2 * (verified.base.epid.length + 1), call.response.fields.epid_size_bytes, `${label}: PIDSize`);

      // Our response to the captured request, with fresh randomness, passes the client check.
      const base = responseBaseOf(call.response.fields);
      const hwid = randomBytes(8);
      const ours = encodeKmsResponse(req, base, { hwid, randomBytes });
      t.equal(ours.length, captured.length, `${label}: our response has the captured length`);
      const back = verifyKmsResponse(ours, sent);
      t.same(responseFieldsOf(back.base), expectedResponseFields(call.response.fields), `${label}: our response echoes the fields`);
      if (req.version === 6) t.same(back.hwid, hwid, `${label}: our HwId`);

      // With the capture's own random values the response is byte-identical to the reference host's.
      const r = req.version === 4 ? Buffer.alloc(0) : xor(bytes(call.response.random_xored_ivs), req.dreq!);
      const s = req.version === 6 ? bytes(call.response.iv) : Buffer.alloc(0);
      const capturedHwid = req.version === 6 ? bytes(call.response.hwid) : Buffer.alloc(8);
      const same = encodeKmsResponse(req, base, { hwid: capturedHwid, randomBytes: replay(r, s) });
      t.equal(same.toString('hex'), call.kms_response_hex, `${label}: identical to the capture given its random values`);
    }
  });
}

t.test('every call was exercised', async (t) => {
  t.ok(calls >= 70, `${calls} calls`);
  t.ok(served >= 60, `${served} served calls`);
});

t.test('exchange_plaintexts of crypto.json decode and verify the same way', async (t) => {
  const vectors = readFixture('crypto.json');
  t.equal(vectors.exchange_plaintexts.length, 5);
  for (const x of vectors.exchange_plaintexts) {
    const message = bytes(x.kms_request);
    const req = decodeKmsRequest(message, { verifyV4Mac: true });
    t.same(requestFieldsOf(req.base), withoutUtc(x.request.fields), `${x.exchange}: request fields`);
    if (req.version !== 4) t.equal(req.dreq?.toString('hex'), x.request.decrypted_iv, `${x.exchange}: Dreq`);
    const verified = verifyKmsResponse(bytes(x.kms_response), sentOf(req, message));
    t.same(responseFieldsOf(verified.base), expectedResponseFields(x.response.fields), `${x.exchange}: response fields`);
    // The recorded plaintexts, from the zero-IV view of each message (§6.2–§6.4).
    for (const [dir, wire, p] of [
      ['request', x.kms_request, x.request],
      ['response', x.kms_response, x.response],
    ] as const) {
      if (req.version === 4) {
        t.equal(p.plaintext + p.mac, wire, `${x.exchange}: v4 ${dir} = plaintext ‖ MAC`);
        t.equal(v4Mac(bytes(p.plaintext)).toString('hex'), p.mac, `${x.exchange}: v4 ${dir} MAC`);
      } else {
        t.equal(
          zeroIvDecrypt(req.version, bytes(wire).subarray(4)).toString('hex'),
          p.decrypted_iv + p.plaintext + p.padding,
          `${x.exchange}: ${dir} plaintext`,
        );
      }
    }
  }
});

function zeroIvDecrypt(version: 5 | 6, body: Buffer): Buffer {
  if (version === 5) return createDecipheriv('aes-128-cbc', KMS_V5_KEY, Buffer.alloc(16)).setAutoPadding(false).update(body);
  const buf = Buffer.from(body);
  cbcDecryptInPlace(V6_CIPHER, Buffer.alloc(16), buf, 0, buf.length);
  return buf;
}
