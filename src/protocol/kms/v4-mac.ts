// The v4 MAC (PROTOCOL.md §6.1): CBC-MAC with K4 and a zero IV over the message followed by 0x80
// and zeros to a block boundary (a whole 80 00 … block when aligned). Not CMAC: no subkeys.
import { timingSafeEqual } from 'node:crypto';
import { CIPHER_BLOCK_LENGTH, V4_MAC_LENGTH } from './constants';
import { V4_CIPHER } from './ciphers';

const B = CIPHER_BLOCK_LENGTH;

/** Writes the MAC of msg[start, end) into out at outOff (16 bytes); out may be msg, after end. */
export function writeV4Mac(msg: Uint8Array, start: number, end: number, out: Uint8Array, outOff: number): void {
  out.fill(0, outOff, outOff + B);
  let at = start;
  for (; at + B <= end; at += B) {
    for (let j = 0; j < B; j++) out[outOff + j] = out[outOff + j]! ^ msg[at + j]!;
    V4_CIPHER.encryptBlock(out, outOff, out, outOff);
  }
  const rest = end - at;
  for (let j = 0; j < rest; j++) out[outOff + j] = out[outOff + j]! ^ msg[at + j]!;
  out[outOff + rest] = out[outOff + rest]! ^ 0x80;
  V4_CIPHER.encryptBlock(out, outOff, out, outOff);
}

export function v4Mac(msg: Uint8Array, start = 0, end = msg.length): Buffer {
  const out = Buffer.allocUnsafe(V4_MAC_LENGTH);
  writeV4Mac(msg, start, end, out, 0);
  return out;
}

/** True when msg holds, at macOff, the MAC of msg[start, macOff). */
export function v4MacMatches(msg: Buffer, start: number, macOff: number): boolean {
  return timingSafeEqual(v4Mac(msg, start, macOff), msg.subarray(macOff, macOff + V4_MAC_LENGTH));
}
