// CBC over any BlockCipher and the 1–16-byte PKCS#7-style padding of v5/v6 (PROTOCOL.md §5.2).
// The in-place forms let the codecs build a message once and encrypt it where it lies.
import { ProtocolError } from '../../errors';
import { CIPHER_BLOCK_LENGTH } from './constants';
import type { BlockCipher } from './rijndael';

const B = CIPHER_BLOCK_LENGTH;

function checkRange(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
  if (iv.length !== B) throw new Error(`a CBC IV is 16 bytes, got ${iv.length}`);
  if (start < 0 || end > buf.length || end < start || (end - start) % B !== 0) {
    throw new Error(`CBC range ${start}..${end} of ${buf.length} bytes is not whole 16-byte blocks`);
  }
}

/** C_i = E(P_i ⊕ C_{i−1}), C_{−1} = iv; `iv` must not overlap the range. */
export function cbcEncryptInPlace(cipher: BlockCipher, iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
  checkRange(iv, buf, start, end);
  if (cipher.encryptCbc) {
    cipher.encryptCbc(iv, buf, start, end);
    return;
  }
  let prev: Uint8Array = iv;
  let prevOff = 0;
  for (let at = start; at < end; at += B) {
    for (let j = 0; j < B; j++) buf[at + j] = buf[at + j]! ^ prev[prevOff + j]!;
    cipher.encryptBlock(buf, at, buf, at);
    prev = buf;
    prevOff = at;
  }
}

/** P_i = D(C_i) ⊕ C_{i−1}, walking backwards so each C_{i−1} is still intact when it is needed. */
export function cbcDecryptInPlace(cipher: BlockCipher, iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
  checkRange(iv, buf, start, end);
  if (cipher.decryptCbc) {
    cipher.decryptCbc(iv, buf, start, end);
    return;
  }
  for (let at = end - B; at >= start; at -= B) {
    cipher.decryptBlock(buf, at, buf, at);
    if (at > start) {
      for (let j = 0; j < B; j++) buf[at + j] = buf[at + j]! ^ buf[at - B + j]!;
    } else {
      for (let j = 0; j < B; j++) buf[at + j] = buf[at + j]! ^ iv[j]!;
    }
  }
}

/** Padding bytes added to `length` plaintext bytes: 1…16, a whole block when already aligned. */
export function paddingLength(length: number): number {
  return B - (length % B);
}

export function writePadding(buf: Uint8Array, at: number, count: number): void {
  buf.fill(count, at, at + count);
}

/** Length of the plaintext without its padding, or -1 when the padding is invalid (§5.2). */
export function unpaddedLength(buf: Uint8Array, start: number, end: number): number {
  if (end - start < 1) return -1;
  const n = buf[end - 1]!;
  if (n < 1 || n > B || n > end - start) return -1;
  for (let i = end - n; i < end - 1; i++) if (buf[i] !== n) return -1;
  return end - start - n;
}

export function pad(plaintext: Uint8Array): Buffer {
  const n = paddingLength(plaintext.length);
  const out = Buffer.allocUnsafe(plaintext.length + n);
  out.set(plaintext, 0);
  writePadding(out, plaintext.length, n);
  return out;
}

/** Pads and encrypts; returns the ciphertext (without the IV). */
export function cbcEncrypt(cipher: BlockCipher, iv: Uint8Array, plaintext: Uint8Array): Buffer {
  const buf = pad(plaintext);
  cbcEncryptInPlace(cipher, iv, buf, 0, buf.length);
  return buf;
}

/** Decrypts and removes the padding; bad padding is KMS_ERR_KMS_PADDING. */
export function cbcDecrypt(cipher: BlockCipher, iv: Uint8Array, ciphertext: Uint8Array): Buffer {
  const buf = Buffer.from(ciphertext);
  cbcDecryptInPlace(cipher, iv, buf, 0, buf.length);
  const n = unpaddedLength(buf, 0, buf.length);
  if (n < 0) throw new ProtocolError('KMS_ERR_KMS_PADDING', 'CBC plaintext does not end in valid padding');
  return buf.subarray(0, n);
}
