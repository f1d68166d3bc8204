// Keys, sizes and time constants of the KMS messages (PROTOCOL.md §4.1, §5.1, §6.5). Every magic
// number of the KMS codecs lives here, named after what it measures. The key buffers are shared:
// never write into them.

/** The v4 MAC key: a 160-bit Rijndael key (Nk = 5, 11 rounds), §5.1. */
export const KMS_V4_KEY: Buffer = Buffer.from('053d8307f9e5f088eb5ea6686cf037c7e4efd2d6', 'hex');
/** The v5 key: plain AES-128, §5.1. */
export const KMS_V5_KEY: Buffer = Buffer.from('cd7e796f2ab25dcb55ffc8ef8364c470', 'hex');
/** The v6 key: AES-128 whose expanded schedule is altered by KMS_V6_SCHEDULE_XORS, §5.1. */
export const KMS_V6_KEY: Buffer = Buffer.from('a94a4195e201432d9bcb460405d84a21', 'hex');

/** [schedule byte offset, xor mask]: byte 0 of round keys 4, 6 and 8 (§5.1 "K6 modification"). */
export const KMS_V6_SCHEDULE_XORS: readonly (readonly [number, number])[] = Object.freeze([
  [64, 0x73],
  [96, 0x09],
  [128, 0xe4],
] as const);

/** v6 HMAC-key time slot: slot = (t div C1) × C2 + C3 mod 2^64 (§6.5). C1 ticks ≈ 4.117 h. */
export const KMS_V6_TIME_C1 = 0x00000022816889bdn;
export const KMS_V6_TIME_C2 = 0x000000208cbab5edn;
export const KMS_V6_TIME_C3 = 0x3156cd5ac628477an;

export const CIPHER_BLOCK_LENGTH = 16;
/** MinorVer u16 then MajorVer u16, first in every KMS message (§4.1). */
export const KMS_VERSION_LENGTH = 4;
/** The request base is 236 bytes in every version (§4.2). */
export const REQUEST_BASE_LENGTH = 236;
/** v4 request = base ‖ MAC (§6.1). */
export const V4_REQUEST_LENGTH = 252;
/** v5/v6 request = clear version (4) ‖ IV (16) ‖ CBC(base ‖ 04 04 04 04) (240), §6.2. */
export const ENCRYPTED_REQUEST_LENGTH = 260;
/** The 236-byte base leaves 4 bytes to the 16-byte boundary, so valid request padding is 04 × 4. */
export const REQUEST_PADDING_LENGTH = 4;
export const V4_MAC_LENGTH = 16;
/** The v6 response carries the last 16 of the 32 HMAC-SHA256 bytes (§6.4 step 6). */
export const V6_HMAC_LENGTH = 16;
export const SHA256_LENGTH = 32;
export const HWID_LENGTH = 8;
/** RandomXoredIVs, XoredIVs and the IVs are one cipher block each. */
export const IV_LENGTH = 16;

/** Response base without the ePID: version 4, PIDSize 4, CMID 16, ClientTime 8, 3 × u32 (§4.3). */
export const RESPONSE_BASE_FIXED_LENGTH = 44;
/** PIDSize includes the 2-byte NUL terminator; clients want 4 ≤ PIDSize ≤ 128, even (§4.3). */
export const MIN_PID_SIZE = 4;
export const MAX_PID_SIZE = 128;
export const MAX_EPID_CHARS = MAX_PID_SIZE / 2 - 1;

/** WorkstationName: 64 UTF-16 code units at request-base offset 108 (§4.2). */
export const WORKSTATION_NAME_UNITS = 64;

/** v4 response = base ‖ MAC: 60 + PIDSize bytes (§4.1). */
export const V4_RESPONSE_OVERHEAD = RESPONSE_BASE_FIXED_LENGTH + V4_MAC_LENGTH;
/** v5 plaintext before padding, zero-IV view: Dreq 16 + base 44 + RandomXoredIVs 16 + Hash 32 (§6.3). */
export const V5_PLAINTEXT_OVERHEAD = IV_LENGTH + RESPONSE_BASE_FIXED_LENGTH + IV_LENGTH + SHA256_LENGTH;
/** v6 plaintext before padding, zero-IV view: v5's 108 + HwId 8 + XoredIVs 16 + HMAC 16 (§6.4). */
export const V6_PLAINTEXT_OVERHEAD = V5_PLAINTEXT_OVERHEAD + HWID_LENGTH + IV_LENGTH + V6_HMAC_LENGTH;
