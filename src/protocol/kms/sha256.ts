// SHA-256 and HMAC-SHA256 of the few hundred bytes a KMS message hashes. Node's createHash and
// createHmac build a native object and a stream wrapper per call (about 1 and 2 µs, and work for
// the garbage collector); crypto.hash (Node ≥ 20.12) hashes in one call, and HMAC is two such
// hashes (RFC 2104: H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m))).
import crypto from 'node:crypto';
import { SHA256_LENGTH } from './constants';

const BLOCK_LENGTH = 64; // SHA-256's block (RFC 2104's B)

const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;

export function sha256(data: Uint8Array): Buffer {
  return oneShot ? oneShot('sha256', data, 'buffer') : crypto.createHash('sha256').update(data).digest();
}

// (K ⊕ ipad) ‖ m and (K ⊕ opad) ‖ H(…) are assembled in these buffers, their pads kept for the
// last key: a host signs every v6 response of a 4-hour slot with one key.
let padsFor: Buffer | undefined;
let inner = Buffer.allocUnsafe(BLOCK_LENGTH + 512);
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

export function hmacSha256(key: Uint8Array, msg: Uint8Array): Buffer {
  if (!oneShot) return crypto.createHmac('sha256', key).update(msg).digest();
  if (BLOCK_LENGTH + msg.length > inner.length) {
    const bigger = Buffer.allocUnsafe(BLOCK_LENGTH + msg.length);
    inner.copy(bigger, 0, 0, BLOCK_LENGTH);
    inner = bigger;
  }
  if (padsFor === undefined || !padsFor.equals(key)) setPads(key);
  inner.set(msg, BLOCK_LENGTH);
  const innerHash = oneShot('sha256', inner.subarray(0, BLOCK_LENGTH + msg.length), 'buffer');
  innerHash.copy(outer, BLOCK_LENGTH);
  return oneShot('sha256', outer, 'buffer');
}
