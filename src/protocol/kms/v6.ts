// KMS 6.0 (PROTOCOL.md §6.2, §6.4–§6.6): CBC with the modified-AES key K6 (own cipher), a fresh
// response IV, and an HMAC keyed from the echoed client time. Each message is assembled in one
// buffer and encrypted where it lies (zero-IV view), so nothing is concatenated or copied twice.
import { timingSafeEqual } from 'node:crypto';
import {
  ENCRYPTED_REQUEST_LENGTH,
  HWID_LENGTH,
  IV_LENGTH,
  KMS_VERSION_LENGTH,
  REQUEST_BASE_LENGTH,
  REQUEST_PADDING_LENGTH,
  SHA256_LENGTH,
  V6_HMAC_LENGTH,
  V6_PLAINTEXT_OVERHEAD,
} from './constants';
import { V6_CIPHER } from './ciphers';
import { cbcDecryptInPlace, cbcEncryptInPlace, paddingLength, unpaddedLength, writePadding } from './cbc';
import { ZERO_IV, checkRequestBaseVersion, finishEncryptedRequest } from './encrypted-request';
import { writeRequestBase } from './request-base';
import { pidSizeOf, readResponseBase, writeResponseBase } from './response-base';
import { sha256, sha256Into } from './sha256';
import { checkEchoes, checkEncryptedLength, checkVersion, responseInvalid, roundUp16 } from './response-checks';
import type { DecodedKmsRequest, KmsRequestBase, KmsResponseBase, SentKmsRequest, VerifiedKmsResponse } from './types';
import { sharedV6HmacKey, v6Hmac, writeV6Hmac, type HmacTolerance } from './v6-hmac-key';

const V = KMS_VERSION_LENGTH;

/** `message` is exactly the 260 bytes. */
export function decodeV6Request(message: Buffer): DecodedKmsRequest {
  // One allocation: the wire IV copy, then IV ‖ C decrypted in place to Dreq ‖ base ‖ pad.
  const buf = Buffer.allocUnsafe(ENCRYPTED_REQUEST_LENGTH - V + IV_LENGTH);
  message.copy(buf, 0, V, V + IV_LENGTH);
  message.copy(buf, IV_LENGTH, V, ENCRYPTED_REQUEST_LENGTH);
  cbcDecryptInPlace(V6_CIPHER, ZERO_IV, buf, IV_LENGTH, buf.length);
  return finishEncryptedRequest(6, buf.subarray(0, IV_LENGTH), buf.subarray(IV_LENGTH));
}

/**
 * §6.4 in the zero-IV view: plaintext Ds ‖ base ‖ RandomXoredIVs ‖ Hash ‖ HwId ‖ XoredIVs ‖ HMAC ‖
 * pad with Ds = D_K6(S), encrypted with CBC and IV 0, so the first cipher block is the fresh S.
 * `random` supplies R (bytes 0–15) and S (bytes 16–31).
 */
export function encodeV6Response(req: DecodedKmsRequest, base: KmsResponseBase, hwid: Buffer, random: Buffer): Buffer {
  const dreq = req.dreq;
  if (dreq === undefined || dreq.length !== IV_LENGTH) throw new Error('a v6 response needs the decoded request Dreq');
  if (hwid.length !== HWID_LENGTH) throw new Error(`HwId must be ${HWID_LENGTH} bytes, got ${hwid.length}`);
  if (random.length < 2 * IV_LENGTH) throw new Error('a v6 response needs 32 random bytes');
  const pidSize = pidSizeOf(base.epid);
  const used = V6_PLAINTEXT_OVERHEAD + pidSize;
  const out = Buffer.allocUnsafe(V + used + paddingLength(used));
  out.writeUInt16LE(0, 0);
  out.writeUInt16LE(6, 2);
  V6_CIPHER.decryptBlock(random, IV_LENGTH, out, V); // Ds = D_K6(S)
  let p = V + IV_LENGTH;
  p += writeResponseBase(base, pidSize, out, p);
  for (let j = 0; j < IV_LENGTH; j++) out[p + j] = random[j]! ^ dreq[j]!; // RandomXoredIVs = R ⊕ Dreq
  p += IV_LENGTH;
  sha256Into(random.subarray(0, IV_LENGTH), out, p); // Hash = SHA-256(R)
  p += SHA256_LENGTH;
  hwid.copy(out, p);
  p += HWID_LENGTH;
  dreq.copy(out, p); // XoredIVs = Dreq
  p += IV_LENGTH;
  // §6.5: the key comes from the echoed client time, never the host clock (C40).
  writeV6Hmac(sharedV6HmacKey(base.clientTime), out, V, p, out, p);
  p += V6_HMAC_LENGTH;
  writePadding(out, p, out.length - p);
  cbcEncryptInPlace(V6_CIPHER, ZERO_IV, out, V, out.length);
  return out;
}

export function encodeV6Request(base: KmsRequestBase, iv: Buffer): { message: Buffer; dreq: Buffer } {
  checkRequestBaseVersion(6, base);
  const message = Buffer.allocUnsafe(ENCRYPTED_REQUEST_LENGTH);
  message.writeUInt16LE(0, 0);
  message.writeUInt16LE(6, 2);
  iv.copy(message, V, 0, IV_LENGTH);
  const at = V + IV_LENGTH;
  writeRequestBase(base, message, at);
  writePadding(message, at + REQUEST_BASE_LENGTH, REQUEST_PADDING_LENGTH);
  cbcEncryptInPlace(V6_CIPHER, message.subarray(V, at), message, at, ENCRYPTED_REQUEST_LENGTH);
  const dreq = Buffer.allocUnsafe(IV_LENGTH);
  V6_CIPHER.decryptBlock(iv, 0, dreq, 0);
  return { message, dreq };
}

const TOLERANCES: readonly HmacTolerance[] = [0, -1, 1];

/** §6.6 items 1–8 (C18, C19, C21). */
export function verifyV6Response(message: Buffer, sent: SentKmsRequest): VerifiedKmsResponse {
  const { iv: sentIv, dreq } = sent;
  if (sentIv === undefined || dreq === undefined) throw new Error('verifying a v6 response needs the sent IV and Dreq');
  // 1. length and padding
  checkEncryptedLength(message, 2);
  const plain = Buffer.from(message.subarray(V)); // Ds ‖ base ‖ … ‖ HMAC ‖ pad after decryption
  cbcDecryptInPlace(V6_CIPHER, ZERO_IV, plain, 0, plain.length);
  const n = unpaddedLength(plain, 0, plain.length);
  if (n < 0) throw responseInvalid('padding', 'the v6 response does not decrypt to valid padding');
  // 2. versions
  checkVersion(message.readUInt16LE(0), message.readUInt16LE(2), 6, 'clear response');
  // 3. ePID and PIDSize consistent with the length
  const { base, pidSize, length } = readResponseBase(plain, IV_LENGTH, n);
  checkVersion(base.minorVersion, base.majorVersion, 6, 'inner response');
  const expected = V + roundUp16(V6_PLAINTEXT_OVERHEAD + pidSize + 1);
  const hmacAt = IV_LENGTH + length + IV_LENGTH + SHA256_LENGTH + HWID_LENGTH + IV_LENGTH;
  if (message.length !== expected || n !== hmacAt + V6_HMAC_LENGTH) {
    throw responseInvalid('length', `a v6 response with PIDSize ${pidSize} has ${expected} bytes, got ${message.length}`, {
      length: message.length,
    });
  }
  // 4. echoes
  checkEchoes(base, sent.base);
  // 5. Hash = SHA-256(RandomXoredIVs ⊕ Dreq)
  let p = IV_LENGTH + length;
  const r = Buffer.allocUnsafe(IV_LENGTH);
  for (let j = 0; j < IV_LENGTH; j++) r[j] = plain[p + j]! ^ dreq[j]!;
  p += IV_LENGTH;
  if (!timingSafeEqual(sha256(r), plain.subarray(p, p + SHA256_LENGTH))) {
    throw responseInvalid('hash', 'SHA-256(RandomXoredIVs ⊕ Dreq) differs from the response Hash');
  }
  p += SHA256_LENGTH;
  const hwid = Buffer.from(plain.subarray(p, p + HWID_LENGTH));
  p += HWID_LENGTH;
  // 6. XoredIVs = Dreq
  if (!plain.subarray(p, p + IV_LENGTH).equals(dreq)) throw responseInvalid('xored-ivs', 'XoredIVs is not the decrypted request IV');
  // 7. HMAC, accepting the C reference's tolerance of ±C1 on the slot (§6.5)
  const mac = plain.subarray(hmacAt, hmacAt + V6_HMAC_LENGTH);
  const ok = TOLERANCES.some((tol) => timingSafeEqual(v6Hmac(sharedV6HmacKey(base.clientTime, tol), plain, 0, hmacAt), mac));
  if (!ok) throw responseInvalid('hmac', 'the v6 response HMAC does not verify with the key of its client time');
  // 8. a fresh response IV (a reused request IV marks an emulator, §6.4)
  if (message.subarray(V, V + IV_LENGTH).equals(sentIv)) throw responseInvalid('iv-reused', 'the v6 response IV equals the request IV');
  return { version: 6, base, hwid };
}
