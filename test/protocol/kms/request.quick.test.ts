// Host-side request decoding: version and length rules, the v4 MAC, v5/v6 padding and inner
// version (PROTOCOL.md §4.1, §4.2, §6.1, §6.2, §7.1 steps 2–3, C16, C22), and client round trips.
import t from 'tap';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  KMS_V5_KEY,
  V6_CIPHER,
  cbcDecrypt,
  cbcEncryptInPlace,
  decodeKmsRequest,
  encodeKmsRequest,
  type KmsRequestBase,
  type KmsVersion,
} from '../../../src/protocol/kms';
import { KmsError } from '../../../src/errors';
import { bytes } from '../../bytes';
import { CAPTURES, readFixture, requestFieldsOf, withoutUtc } from './fixtures';
import { NIL_GUID, WIN10_VOLUME_GROUP, WINDOWS_APP } from '../../ids';

const call = (v: 4 | 5 | 6): any => readFixture(`exchanges/${CAPTURES[v]}`).decoded.calls[0];
const captured = (v: 4 | 5 | 6): Buffer => bytes(call(v).kms_request_hex);
const on = { verifyV4Mac: true };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof KmsError ? e.code : `not a KmsError: ${String(e)}`;
  }
  return undefined;
}

/** An independent v5/v6 request builder: clear version ‖ IV ‖ CBC(K, IV, plaintext) without added padding. */
function forge(version: 5 | 6, iv: Buffer, plaintext240: Buffer, clear = Buffer.from([0, 0, version, 0])): Buffer {
  let c: Buffer;
  if (version === 5) {
    c = createCipheriv('aes-128-cbc', KMS_V5_KEY, iv).setAutoPadding(false).update(plaintext240);
  } else {
    c = Buffer.from(plaintext240);
    cbcEncryptInPlace(V6_CIPHER, iv, c, 0, c.length);
  }
  return Buffer.concat([clear, iv, c]);
}

function capturedPlaintext(v: 5 | 6): Buffer {
  return Buffer.concat([bytes(call(v).request.plaintext), bytes(call(v).request.padding)]);
}

t.test('the forger reproduces the captured v5 and v6 requests', async (t) => {
  for (const v of [5, 6] as const) {
    t.equal(forge(v, bytes(call(v).request.iv), capturedPlaintext(v)).toString('hex'), call(v).kms_request_hex);
  }
});

t.test('unknown versions are refused with KMS_ERR_KMS_VERSION (C22)', async (t) => {
  for (const [minor, major] of [
    [0, 7],
    [1, 6],
    [1, 4],
    [1, 5],
    [0, 3],
    [0, 0],
    [0, 0x106],
  ]) {
    const m = Buffer.from(captured(6));
    m.writeUInt16LE(minor!, 0);
    m.writeUInt16LE(major!, 2);
    t.equal(
      codeOf(() => decodeKmsRequest(m, on)),
      'KMS_ERR_KMS_VERSION',
      `${major}.${minor}`,
    );
  }
  // The version is judged before the length.
  t.equal(
    codeOf(() => decodeKmsRequest(bytes('00000700aabbcc'), on)),
    'KMS_ERR_KMS_VERSION',
  );
  t.equal(
    codeOf(() => decodeKmsRequest(bytes('000004'), on)),
    'KMS_ERR_KMS_LENGTH',
    'no room for a version',
  );
  t.equal(
    codeOf(() => decodeKmsRequest(Buffer.alloc(0), on)),
    'KMS_ERR_KMS_LENGTH',
  );
});

t.test('a message shorter than its version needs is refused with KMS_ERR_KMS_LENGTH (§4.1)', async (t) => {
  const cases: [4 | 5 | 6, number][] = [
    [4, 251],
    [4, 4],
    [5, 259],
    [5, 252],
    [6, 259],
    [6, 252],
    [6, 4],
  ];
  for (const [v, n] of cases) {
    t.equal(
      codeOf(() => decodeKmsRequest(captured(v).subarray(0, n), on)),
      'KMS_ERR_KMS_LENGTH',
      `v${v} with ${n} bytes`,
    );
  }
});

t.test('bytes beyond the version size are ignored (§4.1)', async (t) => {
  for (const v of [4, 5, 6] as const) {
    const m = Buffer.concat([captured(v), randomBytes(v === 4 ? 8 : 16)]);
    t.same(requestFieldsOf(decodeKmsRequest(m, on).base), withoutUtc(call(v).request.fields), `v${v}`);
  }
});

t.test('v4 MAC: checked when verifyV4Mac is on, ignored when off (§6.1, C16)', async (t) => {
  const badMac = Buffer.from(captured(4));
  badMac[251] = badMac[251]! ^ 0x01;
  t.equal(
    codeOf(() => decodeKmsRequest(badMac, on)),
    'KMS_ERR_KMS_MAC',
  );
  t.same(requestFieldsOf(decodeKmsRequest(badMac, { verifyV4Mac: false }).base), withoutUtc(call(4).request.fields));

  const altered = Buffer.from(captured(4));
  altered.writeUInt32LE(1, 80); // RequiredClientCount 25 → 1, MAC left as it was
  t.equal(
    codeOf(() => decodeKmsRequest(altered, on)),
    'KMS_ERR_KMS_MAC',
  );
  t.equal(decodeKmsRequest(altered, { verifyV4Mac: false }).base.requiredClientCount, 1);
});

t.test('v5/v6 padding other than 04 04 04 04 is refused with KMS_ERR_KMS_PADDING (§6.2, C22)', async (t) => {
  for (const v of [5, 6] as const) {
    for (const padding of ['05050505', '04040403', '03040404', '00000001', '01010101', '00000000']) {
      const p = capturedPlaintext(v);
      bytes(padding).copy(p, 236);
      const m = forge(v, randomBytes(16), p);
      t.equal(
        codeOf(() => decodeKmsRequest(m, on)),
        'KMS_ERR_KMS_PADDING',
        `v${v} padding ${padding}`,
      );
    }
    // A flipped ciphertext bit in the last block garbles the padding.
    const m = Buffer.from(captured(v));
    m[259] = m[259]! ^ 0x80;
    t.equal(
      codeOf(() => decodeKmsRequest(m, on)),
      'KMS_ERR_KMS_PADDING',
      `v${v} damaged last block`,
    );
  }
});

t.test('an inner version other than the clear one is refused with KMS_ERR_KMS_INNER_VERSION (§6.2)', async (t) => {
  for (const [clear, inner] of [
    [6, 5],
    [5, 6],
    [6, 4],
    [5, 4],
  ] as const) {
    const p = capturedPlaintext(clear);
    p.writeUInt16LE(inner, 2);
    t.equal(
      codeOf(() => decodeKmsRequest(forge(clear, randomBytes(16), p), on)),
      'KMS_ERR_KMS_INNER_VERSION',
      `clear ${clear}.0, inner ${inner}.0`,
    );
  }
  const p = capturedPlaintext(6);
  p.writeUInt16LE(1, 0); // inner 6.1
  t.equal(
    codeOf(() => decodeKmsRequest(forge(6, randomBytes(16), p), on)),
    'KMS_ERR_KMS_INNER_VERSION',
    'inner 6.1',
  );
  // Padding is judged before the inner version.
  const both = capturedPlaintext(6);
  both.writeUInt16LE(5, 2);
  both[239] = 5;
  t.equal(
    codeOf(() => decodeKmsRequest(forge(6, randomBytes(16), both), on)),
    'KMS_ERR_KMS_PADDING',
  );
  // A v5 plaintext sent as v6 (wrong key) does not decrypt.
  const asV6 = forge(5, randomBytes(16), capturedPlaintext(5));
  asV6.writeUInt16LE(6, 2);
  t.equal(
    codeOf(() => decodeKmsRequest(asV6, on)),
    'KMS_ERR_KMS_PADDING',
  );
});

t.test('WorkstationName: up to the first NUL, 64 units without one, bad UTF-16 → U+FFFD (§4.2)', async (t) => {
  const withName = (units: number[]): string => {
    const m = Buffer.from(captured(4));
    m.fill(0, 108, 236);
    units.forEach((u, i) => {
      m.writeUInt16LE(u, 108 + 2 * i);
    });
    return decodeKmsRequest(m, { verifyV4Mac: false }).base.workstationName;
  };
  const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
  t.equal(withName(ascii('PC-01')), 'PC-01');
  t.equal(withName([...ascii('ab'), 0, ...ascii('garbage')]), 'ab', 'stops at the first NUL');
  t.equal(withName(new Array(64).fill(0x41)), 'A'.repeat(64), 'all 64 units, no NUL');
  t.equal(withName([]), '');
  t.equal(withName([0x61, 0xd800, 0x62]), 'a\uFFFDb', 'lone high surrogate');
  t.equal(withName([0xdc00, 0x61]), '\uFFFDa', 'lone low surrogate');
  t.equal(withName([0xd83d, 0xde00]), '😀', 'a surrogate pair is kept');
  t.equal(withName([0x61, 0xd800]), 'a\uFFFD', 'high surrogate before the end');
  t.equal(withName([...ascii('Bür'), 0x00e9]), 'Büré');
});

const sampleBase = (version: KmsVersion): KmsRequestBase => ({
  majorVersion: version,
  minorVersion: 0,
  vmInfo: 1,
  licenseStatus: 5,
  bindingExpiration: 43200,
  applicationId: WINDOWS_APP,
  activationId: '2de67392-b7a7-462a-b1ca-108dd189f588',
  kmsCountedId: WIN10_VOLUME_GROUP,
  clientMachineId: '0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3',
  requiredClientCount: 25,
  requestTime: 134399535530000000n,
  previousClientMachineId: NIL_GUID,
  workstationName: 'wörkstation-😀.contoso.test',
});

t.test('encodeKmsRequest then decodeKmsRequest gives the base back (v4, v5, v6)', async (t) => {
  for (const v of [4, 5, 6] as const) {
    const base = sampleBase(v);
    const sent = encodeKmsRequest(v, base, randomBytes);
    t.equal(sent.message.length, v === 4 ? 252 : 260);
    t.equal(sent.message.readUInt16LE(2), v);
    const got = decodeKmsRequest(sent.message, on);
    t.same(got.base, base, `v${v} base`);
    t.equal(got.version, v);
    if (v === 4) continue;
    t.same(got.iv, sent.iv, `v${v} IV`);
    t.same(got.dreq, sent.dreq, `v${v} Dreq`);
    t.same(sent.message.subarray(4, 20), sent.iv, 'the IV is on the wire');
    // Independent view: standard CBC with the wire IV gives base ‖ 04 04 04 04 (§6.2).
    const c = sent.message.subarray(20);
    const plain =
      v === 5
        ? createDecipheriv('aes-128-cbc', KMS_V5_KEY, sent.iv!).setAutoPadding(false).update(c)
        : Buffer.concat([cbcDecrypt(V6_CIPHER, sent.iv!, c), bytes('04040404')]);
    t.equal(plain.subarray(236).toString('hex'), '04040404', `v${v} padding`);
    t.equal(plain.readUInt16LE(2), v, `v${v} inner version`);
    if (v === 5) {
      const ecb = createDecipheriv('aes-128-ecb', KMS_V5_KEY, null).setAutoPadding(false);
      t.same(ecb.update(sent.iv!), sent.dreq, 'v5 Dreq = D_K5(IV)');
    }
  }
  // Two requests with the same base differ (random IV).
  const a = encodeKmsRequest(6, sampleBase(6), randomBytes);
  const b = encodeKmsRequest(6, sampleBase(6), randomBytes);
  t.not(a.message.toString('hex'), b.message.toString('hex'));
});

t.test('encodeKmsRequest rejects programming errors with a plain Error', async (t) => {
  const plain = (fn: () => unknown): boolean => {
    try {
      fn();
    } catch (e) {
      return e instanceof Error && !(e instanceof KmsError);
    }
    return false;
  };
  t.ok(
    plain(() => encodeKmsRequest(6, sampleBase(5), randomBytes)),
    'base version differs',
  );
  t.ok(
    plain(() => encodeKmsRequest(4, { ...sampleBase(4), minorVersion: 1 }, randomBytes)),
    'minor version',
  );
  t.ok(
    plain(() => encodeKmsRequest(4, { ...sampleBase(4), workstationName: 'x'.repeat(65) }, randomBytes)),
    'name too long',
  );
  t.ok(
    plain(() => encodeKmsRequest(6, sampleBase(6), () => Buffer.alloc(8))),
    'short IV',
  );
  t.equal(
    decodeKmsRequest(encodeKmsRequest(4, { ...sampleBase(4), workstationName: 'y'.repeat(64) }, randomBytes).message, on).base
      .workstationName,
    'y'.repeat(64),
  );
});
