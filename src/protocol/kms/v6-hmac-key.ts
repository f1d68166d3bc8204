// The v6 HMAC key and MAC (PROTOCOL.md §6.5, §6.4 step 6). The key depends only on the echoed
// client time, so a host needs no clock agreement with the client.
import { KMS_V6_TIME_C1, KMS_V6_TIME_C2, KMS_V6_TIME_C3, V6_HMAC_LENGTH, SHA256_LENGTH } from './constants';
import { hmacSha256, hmacSha256Into, sha256 } from './sha256';

export type HmacTolerance = -1 | 0 | 1;

/** slot = ((t div C1) × C2 + C3 + tolerance × C1) mod 2^64, as 8 bytes little-endian. */
export function v6TimeSlot(filetime: bigint, tolerance: HmacTolerance = 0): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64LE(slotValue(filetime, tolerance), 0);
  return out;
}

function slotValue(filetime: bigint, tolerance: HmacTolerance): bigint {
  const t = BigInt.asUintN(64, filetime);
  return BigInt.asUintN(64, (t / KMS_V6_TIME_C1) * KMS_V6_TIME_C2 + KMS_V6_TIME_C3 + BigInt(tolerance) * KMS_V6_TIME_C1);
}

// The key changes only every C1 ticks (≈ 4 h) and nearly every client in that window asks with
// the same slot, so the last key is remembered: this saves a SHA-256 on every v6 response.
let cachedSlot = -1n;
let cachedKey: Buffer = Buffer.alloc(0);

/** The key for internal use: shared, never to be written into. */
export function sharedV6HmacKey(filetime: bigint, tolerance: HmacTolerance = 0): Buffer {
  const slot = slotValue(filetime, tolerance);
  if (slot !== cachedSlot) {
    const slotBytes = Buffer.allocUnsafe(8);
    slotBytes.writeBigUInt64LE(slot, 0);
    cachedKey = sha256(slotBytes).subarray(SHA256_LENGTH - 16);
    cachedSlot = slot;
  }
  return cachedKey;
}

/** Khmac = bytes 16…31 of SHA-256(slot). */
export function v6HmacKey(filetime: bigint, tolerance: HmacTolerance = 0): Buffer {
  return Buffer.from(sharedV6HmacKey(filetime, tolerance));
}

/** The 16 bytes a v6 response carries: the last half of HMAC-SHA256(key, msg[start, end)). */
export function v6Hmac(key: Uint8Array, msg: Uint8Array, start = 0, end = msg.length): Buffer {
  return hmacSha256(key, msg.subarray(start, end)).subarray(SHA256_LENGTH - V6_HMAC_LENGTH);
}

/** v6Hmac(key, msg, start, end) written at out[at, at + 16). */
export function writeV6Hmac(key: Uint8Array, msg: Uint8Array, start: number, end: number, out: Buffer, at: number): void {
  hmacSha256Into(key, msg, start, end, SHA256_LENGTH - V6_HMAC_LENGTH, out, at);
}
