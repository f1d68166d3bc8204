// What v5 and v6 requests share once decrypted (PROTOCOL.md §6.2): the zero-IV plaintext
// Dreq ‖ base ‖ 04 04 04 04, its padding and inner-version checks, and the request layout.
import { ProtocolError } from '../../errors';
import { CIPHER_BLOCK_LENGTH, IV_LENGTH, REQUEST_BASE_LENGTH, REQUEST_PADDING_LENGTH } from './constants';
import { decodeRequestBase } from './request-base';
import type { DecodedKmsRequest, KmsRequestBase } from './types';

export const ZERO_IV: Buffer = Buffer.alloc(CIPHER_BLOCK_LENGTH);

/**
 * `plain` = Dreq ‖ base ‖ pad (256 bytes, zero-IV view) of a request whose clear version is
 * `version`. Padding must be exactly 04 04 04 04 and the inner version the clear one (§6.2, C22).
 */
export function finishEncryptedRequest(version: 5 | 6, iv: Buffer, plain: Buffer): DecodedKmsRequest {
  const padAt = IV_LENGTH + REQUEST_BASE_LENGTH;
  for (let i = padAt; i < padAt + REQUEST_PADDING_LENGTH; i++) {
    if (plain[i] !== REQUEST_PADDING_LENGTH) {
      throw new ProtocolError('KMS_ERR_KMS_PADDING', `the v${version} request does not decrypt to 04 04 04 04 padding`, {
        padding: plain.toString('hex', padAt, padAt + REQUEST_PADDING_LENGTH),
      });
    }
  }
  const base = decodeRequestBase(plain, IV_LENGTH);
  if (base.majorVersion !== version || base.minorVersion !== 0) {
    throw new ProtocolError(
      'KMS_ERR_KMS_INNER_VERSION',
      `the encrypted version ${base.majorVersion}.${base.minorVersion} differs from the clear ${version}.0`,
      {
        inner: `${base.majorVersion}.${base.minorVersion}`,
      },
    );
  }
  return { version, base, iv, dreq: plain.subarray(0, IV_LENGTH) };
}

/** A client's request base must carry the version it is sent in. */
export function checkRequestBaseVersion(version: number, base: KmsRequestBase): void {
  if (base.majorVersion !== version || base.minorVersion !== 0) {
    throw new Error(`a v${version} request needs a ${version}.0 base, got ${base.majorVersion}.${base.minorVersion}`);
  }
}
