// Response encoding and the verifying client's checks: every region of a response tampered with is
// caught with the right check id (PROTOCOL.md §6.1, §6.3, §6.4–§6.6, C14–C19, C21).
import t from 'tap';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  KMS_V5_KEY,
  KMS_V6_TIME_C1,
  V6_CIPHER,
  cbcDecryptInPlace,
  cbcEncryptInPlace,
  decodeKmsRequest,
  encodeKmsResponse,
  v6Hmac,
  v6HmacKey,
  verifyKmsResponse,
  type DecodedKmsRequest,
  type KmsResponseBase,
  type SentKmsRequest,
} from '../../../src/protocol/kms';
import { KmsError } from '../../../src/errors';
import { bytes } from '../../bytes';
import { CAPTURES, readFixture, sentOf } from './fixtures';
import { SPARE_V4_GUID } from '../../ids';

function captured(v: 4 | 5 | 6): { req: DecodedKmsRequest; sent: SentKmsRequest } {
  const message = bytes(readFixture(`exchanges/${CAPTURES[v]}`).decoded.calls[0].kms_request_hex);
  const req = decodeKmsRequest(message, { verifyV4Mac: true });
  return { req, sent: sentOf(req, message) };
}

const EPID = '03612-00206-556-123727-03-1033-17763.0000-2972018'; // §7.4 example, 49 characters
const HWID = bytes('8a41c3f00e5d7b29');
const material = { hwid: HWID, randomBytes };

function baseFor(req: DecodedKmsRequest, over: Partial<KmsResponseBase> = {}): KmsResponseBase {
  return {
    majorVersion: req.version,
    minorVersion: 0,
    epid: EPID,
    clientMachineId: req.base.clientMachineId,
    clientTime: req.base.requestTime,
    currentCount: 26,
    activationInterval: 120,
    renewalInterval: 10080,
    ...over,
  };
}

/** The check id a rejected response reports (or a description of what else happened). */
function checkOf(message: Buffer, sent: SentKmsRequest): string {
  try {
    verifyKmsResponse(message, sent);
  } catch (e) {
    if (e instanceof KmsError && e.code === 'KMS_ERR_KMS_RESPONSE_INVALID') return String(e.details['check']);
    return `unexpected ${String(e)}`;
  }
  return 'accepted';
}

// v6 plaintext (zero-IV view) offsets for PIDSize P, §6.4 table.
const v6At = (p: number) => ({
  ds: 0,
  base: 16,
  cmid: 24 + p,
  time: 40 + p,
  count: 48 + p,
  rxi: 60 + p,
  hash: 76 + p,
  hwid: 108 + p,
  xored: 116 + p,
  hmac: 132 + p,
  pad: 148 + p,
});

function openV6(message: Buffer): Buffer {
  const plain = Buffer.from(message.subarray(4));
  cbcDecryptInPlace(V6_CIPHER, Buffer.alloc(16), plain, 0, plain.length);
  return plain;
}

function sealV6(plain: Buffer, clear = bytes('00000600')): Buffer {
  const c = Buffer.from(plain);
  cbcEncryptInPlace(V6_CIPHER, Buffer.alloc(16), c, 0, c.length);
  return Buffer.concat([clear, c]);
}

/** Re-MACs a v6 plaintext after an edit, so only the edited field is wrong. */
function remac(plain: Buffer, p: number, clientTime: bigint): void {
  const at = v6At(p);
  v6Hmac(v6HmacKey(clientTime), plain, 0, at.hmac).copy(plain, at.hmac);
}

t.test('v6: the plaintext layout of our response matches §6.4 (P = 100: 256 bytes, 8 pad bytes)', async (t) => {
  const { req, sent } = captured(6);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  t.equal(msg.length, 260, 'C21: 4 + roundup16(148 + 100 + 1)');
  t.equal(msg.subarray(0, 4).toString('hex'), '00000600');
  const plain = openV6(msg);
  const at = v6At(100);
  t.equal(plain.readUInt32LE(at.base + 4), 100, 'PIDSize = 2 × (49 + 1)');
  t.equal(plain.toString('utf16le', at.base + 8, at.base + 8 + 98), EPID);
  t.same(plain.subarray(at.hwid, at.hwid + 8), HWID);
  t.same(plain.subarray(at.xored, at.xored + 16), req.dreq, 'XoredIVs = Dreq');
  t.equal(plain.subarray(at.pad).toString('hex'), '08'.repeat(8));
  t.same(verifyKmsResponse(msg, sent).hwid, HWID);
});

t.test('v6: a flipped bit anywhere in the ciphertext is caught', async (t) => {
  const { req, sent } = captured(6);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  t.equal(checkOf(msg, sent), 'accepted');
  for (let at = 4; at < msg.length; at += 7) {
    const bad = Buffer.from(msg);
    bad[at] = bad[at]! ^ 0x10;
    const check = checkOf(bad, sent);
    t.ok(check !== 'accepted' && !check.startsWith('unexpected'), `byte ${at}: ${check}`);
  }
});

t.test('v6: each plaintext region tampered with fails its own check (§6.6)', async (t) => {
  const { req, sent } = captured(6);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  const at = v6At(100);
  const time = req.base.requestTime;
  const tamper = (edit: (p: Buffer) => void, mac: boolean): Buffer => {
    const plain = openV6(msg);
    edit(plain);
    if (mac) remac(plain, 100, time);
    return sealV6(plain);
  };
  const flip = (off: number) => (p: Buffer) => {
    p[off] = p[off]! ^ 0x01;
  };
  t.equal(checkOf(tamper(flip(at.hmac + 5), false), sent), 'hmac', 'HMAC bit');
  t.equal(checkOf(tamper(flip(at.hash + 31), false), sent), 'hash', 'Hash bit');
  t.equal(checkOf(tamper(flip(at.rxi), false), sent), 'hash', 'RandomXoredIVs bit');
  t.equal(checkOf(tamper(flip(at.xored + 3), true), sent), 'xored-ivs', 'XoredIVs bit (re-MACed)');
  t.equal(checkOf(tamper(flip(at.hwid), false), sent), 'hmac', 'HwId is covered by the HMAC');
  t.equal(checkOf(tamper(flip(at.count), false), sent), 'hmac', 'CurrentCount is covered by the HMAC');
  t.equal(checkOf(tamper(flip(at.ds + 2), false), sent), 'hmac', 'Ds is covered by the HMAC');
  t.equal(checkOf(tamper(flip(at.cmid), true), sent), 'cmid', 'CMID echo');
  t.equal(
    checkOf(
      tamper((p) => p.writeBigUInt64LE(time + 1n, at.time), false),
      sent,
    ),
    'client-time',
    'ClientTime echo',
  );
  t.equal(
    checkOf(
      tamper((p) => p.write('x', at.base + 8, 'utf16le'), true),
      sent,
    ),
    'epid',
    'ePID shape',
  );
  t.equal(
    checkOf(
      tamper((p) => p.writeUInt16LE(0, at.base + 20), true),
      sent,
    ),
    'epid',
    'NUL inside the ePID',
  );
  t.equal(
    checkOf(
      tamper((p) => p.writeUInt32LE(101, at.base + 4), true),
      sent,
    ),
    'pid-size',
    'odd PIDSize',
  );
  t.equal(
    checkOf(
      tamper((p) => p.writeUInt32LE(130, at.base + 4), true),
      sent,
    ),
    'pid-size',
    'PIDSize above 128',
  );
  t.equal(
    checkOf(
      tamper((p) => p.writeUInt32LE(98, at.base + 4), true),
      sent,
    ),
    'epid',
    'PIDSize shorter than the ePID',
  );
  t.equal(
    checkOf(
      tamper((p) => p.writeUInt16LE(5, at.base + 2), true),
      sent,
    ),
    'version',
    'inner version 5.0',
  );
  t.equal(
    checkOf(
      tamper((p) => (p[p.length - 1] = 0), false),
      sent,
    ),
    'padding',
    'padding',
  );
  t.equal(checkOf(Buffer.concat([bytes('00000500'), msg.subarray(4)]), sent), 'version', 'clear version 5.0');
});

t.test('v6: the HMAC key follows the echoed time, with the ±C1 tolerance of §6.5', async (t) => {
  const { req, sent } = captured(6);
  const time = req.base.requestTime;
  const at = v6At(100);
  const withKey = (key: Buffer): Buffer => {
    const plain = openV6(encodeKmsResponse(req, baseFor(req), material));
    v6Hmac(key, plain, 0, at.hmac).copy(plain, at.hmac);
    return sealV6(plain);
  };
  t.equal(checkOf(withKey(v6HmacKey(time, 1)), sent), 'accepted', 'tolerance +1');
  t.equal(checkOf(withKey(v6HmacKey(time, -1)), sent), 'accepted', 'tolerance −1');
  t.equal(checkOf(withKey(v6HmacKey(time + 3n * KMS_V6_TIME_C1)), sent), 'hmac', 'another time slot');
  t.equal(checkOf(withKey(randomBytes(16)), sent), 'hmac', 'a random key');
});

t.test('v6: a response IV equal to the request IV is refused (§6.6 item 8)', async (t) => {
  const { req, sent } = captured(6);
  const plain = openV6(encodeKmsResponse(req, baseFor(req), material));
  req.dreq!.copy(plain, 0); // Ds = Dreq makes the first cipher block E(Dreq) = the request IV
  remac(plain, 100, req.base.requestTime);
  const msg = sealV6(plain);
  t.same(msg.subarray(4, 20), sent.iv, 'the forged response reuses the request IV');
  t.equal(checkOf(msg, sent), 'iv-reused');
});

t.test('v6: wrong lengths are refused', async (t) => {
  const { req, sent } = captured(6);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  t.equal(checkOf(Buffer.concat([msg, bytes('00')]), sent), 'length', 'one byte more');
  t.equal(checkOf(msg.subarray(0, msg.length - 1), sent), 'length', 'one byte less');
  t.equal(checkOf(msg.subarray(0, 20), sent), 'length', 'one block');
  t.equal(checkOf(msg.subarray(0, 3), sent), 'length', 'no version');
  // Valid padding, but a block more than PIDSize allows.
  const plain = openV6(msg);
  const longer = Buffer.concat([plain.subarray(0, v6At(100).pad), Buffer.alloc(16), bytes('0808080808080808')]);
  t.equal(checkOf(sealV6(longer), sent), 'length', 'an extra block before the padding');
  t.not(checkOf(Buffer.concat([msg, randomBytes(16)]), sent), 'accepted', 'an extra cipher block');
});

t.test('v6: two encodings of one response differ in IV, RandomXoredIVs and Hash (C19)', async (t) => {
  const { req, sent } = captured(6);
  const a = encodeKmsResponse(req, baseFor(req), material);
  const b = encodeKmsResponse(req, baseFor(req), material);
  const at = v6At(100);
  const [pa, pb] = [openV6(a), openV6(b)];
  t.not(a.subarray(4, 20).toString('hex'), b.subarray(4, 20).toString('hex'), 'IV');
  t.not(pa.subarray(at.rxi, at.rxi + 16).toString('hex'), pb.subarray(at.rxi, at.rxi + 16).toString('hex'), 'RandomXoredIVs');
  t.not(pa.subarray(at.hash, at.hash + 32).toString('hex'), pb.subarray(at.hash, at.hash + 32).toString('hex'), 'Hash');
  t.same(pa.subarray(at.base, at.rxi), pb.subarray(at.base, at.rxi), 'same response base');
  t.same(pa.subarray(at.hwid, at.hmac), pb.subarray(at.hwid, at.hmac), 'same HwId and XoredIVs');
  t.not(a.subarray(4, 20).toString('hex'), sent.iv!.toString('hex'), 'the IV is not the request IV');
  t.equal(checkOf(a, sent), 'accepted');
  t.equal(checkOf(b, sent), 'accepted');
});

function openV5(message: Buffer): Buffer {
  return createDecipheriv('aes-128-cbc', KMS_V5_KEY, message.subarray(4, 20)).setAutoPadding(false).update(message.subarray(20));
}

function sealV5(plain: Buffer, iv: Buffer): Buffer {
  return Buffer.concat([bytes('00000500'), iv, createCipheriv('aes-128-cbc', KMS_V5_KEY, iv).setAutoPadding(false).update(plain)]);
}

t.test('v5: our response reuses the request IV and every check catches its field (§6.3, C17)', async (t) => {
  const { req, sent } = captured(5);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  t.equal(msg.length, 4 + 224, 'C21: 4 + roundup16(108 + 100 + 1)');
  t.same(msg.subarray(4, 20), sent.iv, 'wire IV = request IV');
  t.equal(checkOf(msg, sent), 'accepted');
  const plain = openV5(msg); // standard view: base at 0
  t.equal(plain.subarray(192).toString('hex'), '10'.repeat(16), 'a whole block of padding (208 = 13 × 16)');
  const edit = (f: (p: Buffer) => void, iv = sent.iv!): Buffer => {
    const p = Buffer.from(plain);
    f(p);
    return sealV5(p, iv);
  };
  t.equal(
    checkOf(
      edit(() => undefined),
      sent,
    ),
    'accepted',
    're-sealing changes nothing',
  );
  t.equal(
    checkOf(
      edit((p) => (p[144 + 5] = p[144 + 5]! ^ 1)),
      sent,
    ),
    'hash',
    'RandomXoredIVs bit',
  );
  t.equal(
    checkOf(
      edit((p) => (p[160 + 31] = p[160 + 31]! ^ 1)),
      sent,
    ),
    'hash',
    'Hash bit',
  );
  t.equal(
    checkOf(
      edit((p) => (p[108] = p[108]! ^ 1)),
      sent,
    ),
    'cmid',
    'CMID',
  );
  t.equal(
    checkOf(
      edit((p) => (p[124] = p[124]! ^ 1)),
      sent,
    ),
    'client-time',
    'ClientTime',
  );
  t.equal(
    checkOf(
      edit((p) => p.writeUInt16LE(6, 2)),
      sent,
    ),
    'version',
    'inner version',
  );
  t.equal(
    checkOf(
      edit((p) => (p[207] = 0x11)),
      sent,
    ),
    'padding',
    'padding',
  );
  t.equal(
    checkOf(
      edit(() => undefined, randomBytes(16)),
      sent,
    ),
    'iv-echo',
    'a fresh IV',
  );
  t.equal(checkOf(Buffer.concat([msg, bytes('00')]), sent), 'length', 'one byte more');
  const bad = Buffer.from(msg);
  bad[100] = bad[100]! ^ 4;
  t.not(checkOf(bad, sent), 'accepted', 'ciphertext bit');
});

t.test('v4: length, MAC and echoes (§6.1, C15)', async (t) => {
  const { req, sent } = captured(4);
  const msg = encodeKmsResponse(req, baseFor(req), material);
  t.equal(msg.length, 160, '60 + PIDSize');
  t.equal(msg.readUInt32LE(4), 100);
  t.equal(checkOf(msg, sent), 'accepted');
  const flipped = (off: number): Buffer => {
    const b = Buffer.from(msg);
    b[off] = b[off]! ^ 1;
    return b;
  };
  t.equal(checkOf(flipped(159), sent), 'mac', 'MAC bit');
  t.equal(checkOf(flipped(136), sent), 'mac', 'CurrentCount bit');
  t.equal(checkOf(Buffer.concat([msg, bytes('0000')]), sent), 'length', 'two bytes more');
  t.equal(checkOf(msg.subarray(0, 159), sent), 'length', 'one byte less');
  t.equal(checkOf(encodeKmsResponse(req, baseFor(req, { majorVersion: 5 }), material), sent), 'version');
  t.equal(checkOf(encodeKmsResponse(req, baseFor(req, { epid: 'not an epid' }), material), sent), 'epid');
  // A 48-character ePID: PIDSize 98, so the response length is 158 (§3.2 pads the stub, not the message).
  const short = encodeKmsResponse(req, baseFor(req, { epid: '03612-00206-556-123727-03-1033-9600.0000-2972018' }), material);
  t.equal(short.length, 158);
  t.equal(checkOf(short, sent), 'accepted');
});

t.test('every version: a wrong CMID or ClientTime echo is refused', async (t) => {
  for (const v of [4, 5, 6] as const) {
    const { req, sent } = captured(v);
    const other = encodeKmsResponse(req, baseFor(req, { clientMachineId: SPARE_V4_GUID }), material);
    t.equal(checkOf(other, sent), 'cmid', `v${v} CMID`);
    const late = encodeKmsResponse(req, baseFor(req, { clientTime: req.base.requestTime + 10_000_000n }), material);
    t.equal(checkOf(late, sent), 'client-time', `v${v} ClientTime`);
    t.equal(checkOf(encodeKmsResponse(req, baseFor(req), material), sent), 'accepted', `v${v} correct`);
  }
});

t.test('every ePID length from the §7.4 shape gives PIDSize = 2 × (characters + 1) (C14, C21)', async (t) => {
  const epids = ['03612-00206-556-123727-03-1033-9600.0000-2972018', EPID, '03612-04573-556-123727-03-10333-20348.0000-2972018'];
  for (const v of [5, 6] as const) {
    const { req, sent } = captured(v);
    for (const epid of epids) {
      const msg = encodeKmsResponse(req, baseFor(req, { epid }), material);
      const p = 2 * (epid.length + 1);
      t.equal(
        msg.length,
        4 + ((v === 5 ? 108 : 148) + p + 1 + 15) - (((v === 5 ? 108 : 148) + p + 1 + 15) % 16),
        `v${v} ${epid.length} chars`,
      );
      t.equal(verifyKmsResponse(msg, sent).base.epid, epid);
    }
  }
});

t.test('encodeKmsResponse rejects programming errors with a plain Error', async (t) => {
  const plainError = (fn: () => unknown): boolean => {
    try {
      fn();
    } catch (e) {
      return e instanceof Error && !(e instanceof KmsError);
    }
    return false;
  };
  for (const v of [4, 5, 6] as const) {
    const { req } = captured(v);
    t.ok(
      plainError(() => encodeKmsResponse(req, baseFor(req, { epid: '1'.repeat(64) }), material)),
      `v${v}: 64-character ePID`,
    );
    t.ok(
      plainError(() => encodeKmsResponse(req, baseFor(req, { epid: '' }), material)),
      `v${v}: empty ePID`,
    );
    t.ok(
      plainError(() => encodeKmsResponse(req, baseFor(req, { epid: 'a\0b' }), material)),
      `v${v}: NUL in the ePID`,
    );
  }
  const { req } = captured(6);
  t.ok(
    plainError(() => encodeKmsResponse(req, baseFor(req), { hwid: Buffer.alloc(7), randomBytes })),
    'short HwId',
  );
  t.ok(
    plainError(() => encodeKmsResponse({ version: 6, base: req.base }, baseFor(req), material)),
    'no Dreq',
  );
  t.ok(
    plainError(() => encodeKmsResponse(req, baseFor(req), { hwid: HWID, randomBytes: () => Buffer.alloc(4) })),
    'short random',
  );
  // 63 characters is the most a PIDSize of 128 holds.
  const { req: r4 } = captured(4);
  t.equal(encodeKmsResponse(r4, baseFor(r4, { epid: '1'.repeat(63) }), material).readUInt32LE(4), 128);
});
