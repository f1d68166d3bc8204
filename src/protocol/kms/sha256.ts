// SHA-256 and HMAC-SHA256 of the few hundred bytes a KMS message hashes. Node's createHash and
// createHmac build a native object and a stream wrapper per call (about 1 and 2 µs, and work for
// the garbage collector); crypto.hash (Node ≥ 20.12) hashes in one call, and HMAC is two such
// hashes (RFC 2104: H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m))). The …Into forms take the digest as a
// latin1 string ('binary' in crypto's types) and write it where it goes: a Buffer result is a native allocation of its own
// (a hash and its copy: 730 ns; as a string: 340 ns).
import crypto from 'node:crypto';
import { SHA256_LENGTH } from './constants';

const BLOCK_LENGTH = 64; // SHA-256's block (RFC 2104's B)

const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;

function digestText(data: Uint8Array): string {
  return oneShot ? oneShot('sha256', data, 'binary') : crypto.createHash('sha256').update(data).digest('binary');
}

export function sha256(data: Uint8Array): Buffer {
  return Buffer.from(digestText(data), 'latin1');
}

/** SHA-256(data) written at out[at, at + 32). */
export function sha256Into(data: Uint8Array, out: Buffer, at: number): void {
  out.write(digestText(data), at, SHA256_LENGTH, 'latin1');
}

// (K ⊕ ipad) ‖ m and (K ⊕ opad) ‖ H(…) are assembled in these buffers, their pads kept for the
// last key: a host signs every v6 response of a 4-hour slot with one key.
let padsFor: Buffer | undefined;
let inner = Buffer.allocUnsafe(BLOCK_LENGTH + 512);
/** inner[0, BLOCK_LENGTH + its message length), kept while messages keep one length. */
let innerView = inner.subarray(0, BLOCK_LENGTH);
const outer = Buffer.allocUnsafe(BLOCK_LENGTH + SHA256_LENGTH);

function setPads(key: Uint8Array): void {
  const k = key.length > BLOCK_LENGTH ? sha256(key) : key;
  for (let i = 0; i < BLOCK_LENGTH; i++) {
    const b = i < k.length ? k[i]! : 0;
    inner[i] = b ^ 0x36;
    outer[i] = b ^ 0x5c;
  }
  padsFor = Buffer.from(key);
}

/** HMAC-SHA256(key, msg[start, end)) as a latin1 string of its 32 bytes. */
function hmacText(key: Uint8Array, msg: Uint8Array, start: number, end: number): string {
  if (!oneShot) return crypto.createHmac('sha256', key).update(msg.subarray(start, end)).digest('binary');
  const length = BLOCK_LENGTH + end - start;
  if (length > inner.length) {
    const bigger = Buffer.allocUnsafe(length);
    inner.copy(bigger, 0, 0, BLOCK_LENGTH);
    inner = bigger;
  }
  if (innerView.buffer !== inner.buffer || innerView.byteOffset !== inner.byteOffset || innerView.length !== length) {
    innerView = inner.subarray(0, length);
  }
  if (padsFor === undefined || !padsFor.equals(key)) setPads(key);
  inner.set(msg.subarray(start, end), BLOCK_LENGTH);
  outer.write(oneShot('sha256', innerView, 'binary'), BLOCK_LENGTH, SHA256_LENGTH, 'latin1');
  return oneShot('sha256', outer, 'binary');
}

export function hmacSha256(key: Uint8Array, msg: Uint8Array): Buffer {
  return Buffer.from(hmacText(key, msg, 0, msg.length), 'latin1');
}

/** Bytes [from, 32) of HMAC-SHA256(key, msg[start, end)) written at out[at, …). */
export function hmacSha256Into(key: Uint8Array, msg: Uint8Array, start: number, end: number, from: number, out: Buffer, at: number): void {
  const mac = hmacText(key, msg, start, end);
  out.write(from === 0 ? mac : mac.slice(from), at, SHA256_LENGTH - from, 'latin1');
}
