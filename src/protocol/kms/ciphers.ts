// The three KMS block ciphers with their schedules expanded once at module load (PROTOCOL.md §5.1),
// and one-block helpers for tests and tools. The v5 codec itself uses node:crypto's AES-128;
// V5_CIPHER exists so the own implementation can be checked against OpenSSL and the vectors.
import { KMS_V4_KEY, KMS_V5_KEY, KMS_V6_KEY, KMS_V6_SCHEDULE_XORS, CIPHER_BLOCK_LENGTH } from './constants';
import { RijndaelCipher } from './rijndael';

/** K4: 160-bit key, 11 rounds; only ever encrypts (the v4 MAC is a CBC-MAC). */
export const V4_CIPHER = new RijndaelCipher(KMS_V4_KEY);
export const V5_CIPHER = new RijndaelCipher(KMS_V5_KEY);
/** K6: AES-128 with three schedule bytes altered; decryption uses the altered schedule too. */
export const V6_CIPHER = new RijndaelCipher(KMS_V6_KEY, { scheduleXors: KMS_V6_SCHEDULE_XORS });

function oneBlock(block: Uint8Array): void {
  if (block.length !== CIPHER_BLOCK_LENGTH) throw new Error(`a cipher block is 16 bytes, got ${block.length}`);
}

export function encryptBlockV4(block: Uint8Array): Buffer {
  oneBlock(block);
  const out = Buffer.allocUnsafe(CIPHER_BLOCK_LENGTH);
  V4_CIPHER.encryptBlock(block, 0, out, 0);
  return out;
}

/** One block with the v6 ("modified AES") key. */
export function encryptBlockV6(block: Uint8Array): Buffer {
  oneBlock(block);
  const out = Buffer.allocUnsafe(CIPHER_BLOCK_LENGTH);
  V6_CIPHER.encryptBlock(block, 0, out, 0);
  return out;
}

export function decryptBlockV6(block: Uint8Array): Buffer {
  oneBlock(block);
  const out = Buffer.allocUnsafe(CIPHER_BLOCK_LENGTH);
  V6_CIPHER.decryptBlock(block, 0, out, 0);
  return out;
}
