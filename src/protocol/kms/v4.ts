// KMS 4.0 (PROTOCOL.md §6.1): the plaintext request base ‖ MAC, the response base ‖ MAC.
import { ProtocolError } from '../../errors';
import { REQUEST_BASE_LENGTH, V4_MAC_LENGTH, V4_REQUEST_LENGTH, V4_RESPONSE_OVERHEAD } from './constants';
import { decodeRequestBase, writeRequestBase } from './request-base';
import { pidSizeOf, readResponseBase, writeResponseBase } from './response-base';
import { checkEchoes, checkVersion, responseInvalid } from './response-checks';
import type { DecodedKmsRequest, KmsRequestBase, KmsResponseBase, SentKmsRequest, VerifiedKmsResponse } from './types';
import { v4Mac, v4MacMatches, writeV4Mac } from './v4-mac';

/** `message` is exactly the 252 bytes (the dispatcher checked version and length). */
export function decodeV4Request(message: Buffer, verifyMac: boolean): DecodedKmsRequest {
  // §6.1: verifying is safe because genuine clients always send a correct MAC (kms.verifyV4Mac).
  if (verifyMac && !v4MacMatches(message, 0, REQUEST_BASE_LENGTH)) {
    throw new ProtocolError('KMS_ERR_KMS_MAC', 'the v4 request MAC does not verify', {
      mac: message.toString('hex', REQUEST_BASE_LENGTH, V4_REQUEST_LENGTH),
    });
  }
  return { version: 4, base: decodeRequestBase(message, 0) };
}

/** base ‖ MAC over the final base bytes, 60 + PIDSize in all (§6.1, C15). */
export function encodeV4Response(base: KmsResponseBase): Buffer {
  const pidSize = pidSizeOf(base.epid);
  const out = Buffer.allocUnsafe(V4_RESPONSE_OVERHEAD + pidSize);
  const n = writeResponseBase(base, pidSize, out, 0);
  writeV4Mac(out, 0, n, out, n);
  return out;
}

export function encodeV4Request(base: KmsRequestBase): Buffer {
  const out = Buffer.allocUnsafe(V4_REQUEST_LENGTH);
  writeRequestBase(base, out, 0);
  writeV4Mac(out, 0, REQUEST_BASE_LENGTH, out, REQUEST_BASE_LENGTH);
  return out;
}

/** The v4 client check (§6.1): exact length, version, MAC, echoes, ePID. */
export function verifyV4Response(message: Buffer, sent: SentKmsRequest): VerifiedKmsResponse {
  const { base, length } = readResponseBase(message, 0, message.length);
  if (message.length !== length + V4_MAC_LENGTH) {
    throw responseInvalid(
      'length',
      `a v4 response with PIDSize ${length - 44} has ${length + V4_MAC_LENGTH} bytes, got ${message.length}`,
      {
        length: message.length,
      },
    );
  }
  checkVersion(base.minorVersion, base.majorVersion, 4, 'response');
  if (!v4Mac(message, 0, length).equals(message.subarray(length))) {
    throw responseInvalid('mac', 'the v4 response MAC does not verify');
  }
  checkEchoes(base, sent.base);
  return { version: 4, base };
}
