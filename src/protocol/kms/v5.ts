// KMS 5.0 (PROTOCOL.md §6.2, §6.3): AES-128-CBC with K5 through node:crypto. The response reuses
// the request IV; both directions are built in the zero-IV view so one cipher call does each.
import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import {
  ENCRYPTED_REQUEST_LENGTH,
  IV_LENGTH,
  KMS_V5_KEY,
  KMS_VERSION_LENGTH,
  REQUEST_BASE_LENGTH,
  REQUEST_PADDING_LENGTH,
  SHA256_LENGTH,
  V5_PLAINTEXT_OVERHEAD,
} from './constants';
import { ZERO_IV, checkRequestBaseVersion, finishEncryptedRequest } from './encrypted-request';
import { writeRequestBase } from './request-base';
import { pidSizeOf, readResponseBase, writeResponseBase } from './response-base';
import { sha256, sha256Into } from './sha256';
import { checkEchoes, checkEncryptedLength, checkVersion, responseInvalid, roundUp16 } from './response-checks';
import { paddingLength, unpaddedLength, writePadding } from './cbc';
import type { DecodedKmsRequest, KmsRequestBase, KmsResponseBase, SentKmsRequest, VerifiedKmsResponse } from './types';

function aesCbc(encrypt: boolean, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = encrypt ? createCipheriv('aes-128-cbc', KMS_V5_KEY, iv) : createDecipheriv('aes-128-cbc', KMS_V5_KEY, iv);
  c.setAutoPadding(false); // KMS padding is checked (and written) by the codec itself
  const out = c.update(data);
  c.final();
  return out;
}

/** D_K5(block): the "decrypted request IV" Dreq. */
function decryptBlockV5(block: Uint8Array): Buffer {
  const d = createDecipheriv('aes-128-ecb', KMS_V5_KEY, null);
  d.setAutoPadding(false);
  const out = d.update(block);
  d.final();
  return out;
}

/** `message` is exactly the 260 bytes. */
export function decodeV5Request(message: Buffer): DecodedKmsRequest {
  const body = message.subarray(KMS_VERSION_LENGTH, ENCRYPTED_REQUEST_LENGTH);
  const plain = aesCbc(false, ZERO_IV, body); // Dreq ‖ base ‖ pad
  return finishEncryptedRequest(5, Buffer.from(body.subarray(0, IV_LENGTH)), plain);
}

/**
 * Version ‖ IV ‖ CBC(K5, IV, base ‖ RandomXoredIVs ‖ Hash ‖ pad) with IV = the request's (§6.3).
 * Built as CBC(K5, 0, Dreq ‖ …): the first cipher block E(Dreq) is the request IV itself.
 */
export function encodeV5Response(req: DecodedKmsRequest, base: KmsResponseBase, random: Buffer): Buffer {
  const dreq = req.dreq;
  if (dreq === undefined || dreq.length !== IV_LENGTH) throw new Error('a v5 response needs the decoded request Dreq');
  if (random.length < IV_LENGTH) throw new Error('a v5 response needs 16 random bytes');
  const pidSize = pidSizeOf(base.epid);
  const used = V5_PLAINTEXT_OVERHEAD + pidSize;
  const plain = Buffer.allocUnsafe(used + paddingLength(used));
  dreq.copy(plain, 0);
  let p = IV_LENGTH + writeResponseBase(base, pidSize, plain, IV_LENGTH);
  for (let j = 0; j < IV_LENGTH; j++) plain[p + j] = random[j]! ^ dreq[j]!; // RandomXoredIVs
  p += IV_LENGTH;
  sha256Into(random.subarray(0, IV_LENGTH), plain, p);
  p += SHA256_LENGTH;
  writePadding(plain, p, plain.length - p);
  const out = Buffer.allocUnsafe(KMS_VERSION_LENGTH + plain.length);
  out.writeUInt16LE(0, 0);
  out.writeUInt16LE(5, 2);
  aesCbc(true, ZERO_IV, plain).copy(out, KMS_VERSION_LENGTH);
  return out;
}

export function encodeV5Request(base: KmsRequestBase, iv: Buffer): { message: Buffer; dreq: Buffer } {
  checkRequestBaseVersion(5, base);
  const plain = Buffer.allocUnsafe(REQUEST_BASE_LENGTH + REQUEST_PADDING_LENGTH);
  writeRequestBase(base, plain, 0);
  writePadding(plain, REQUEST_BASE_LENGTH, REQUEST_PADDING_LENGTH);
  const message = Buffer.allocUnsafe(ENCRYPTED_REQUEST_LENGTH);
  message.writeUInt16LE(0, 0);
  message.writeUInt16LE(5, 2);
  iv.copy(message, KMS_VERSION_LENGTH, 0, IV_LENGTH);
  aesCbc(true, iv, plain).copy(message, KMS_VERSION_LENGTH + IV_LENGTH);
  return { message, dreq: decryptBlockV5(iv) };
}

/** The v5 client checks (§6.3, C17, C21). */
export function verifyV5Response(message: Buffer, sent: SentKmsRequest): VerifiedKmsResponse {
  const { iv: sentIv, dreq } = sent;
  if (sentIv === undefined || dreq === undefined) throw new Error('verifying a v5 response needs the sent IV and Dreq');
  checkEncryptedLength(message, 2);
  checkVersion(message.readUInt16LE(0), message.readUInt16LE(2), 5, 'clear response');
  const wireIv = message.subarray(KMS_VERSION_LENGTH, KMS_VERSION_LENGTH + IV_LENGTH);
  if (!wireIv.equals(sentIv)) throw responseInvalid('iv-echo', 'the v5 response IV is not the request IV');
  const plain = aesCbc(false, wireIv, message.subarray(KMS_VERSION_LENGTH + IV_LENGTH)); // base ‖ … ‖ pad
  const n = unpaddedLength(plain, 0, plain.length);
  if (n < 0) throw responseInvalid('padding', 'the v5 response does not decrypt to valid padding');
  const { base, pidSize, length } = readResponseBase(plain, 0, n);
  const expected = KMS_VERSION_LENGTH + roundUp16(V5_PLAINTEXT_OVERHEAD + pidSize + 1);
  if (message.length !== expected || n !== length + IV_LENGTH + SHA256_LENGTH) {
    throw responseInvalid('length', `a v5 response with PIDSize ${pidSize} has ${expected} bytes, got ${message.length}`, {
      length: message.length,
    });
  }
  checkVersion(base.minorVersion, base.majorVersion, 5, 'inner response');
  checkEchoes(base, sent.base);
  const xored = plain.subarray(length, length + IV_LENGTH);
  const r = Buffer.allocUnsafe(IV_LENGTH);
  for (let j = 0; j < IV_LENGTH; j++) r[j] = xored[j]! ^ dreq[j]!;
  const hash = sha256(r);
  if (!timingSafeEqual(hash, plain.subarray(length + IV_LENGTH, length + IV_LENGTH + SHA256_LENGTH))) {
    throw responseInvalid('hash', 'SHA-256(RandomXoredIVs ⊕ Dreq) differs from the response Hash');
  }
  return { version: 5, base };
}
