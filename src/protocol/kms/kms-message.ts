// The KMS message API the host and the verifying client use: dispatch on the version, enforce the
// version and length rules (PROTOCOL.md §4.1, §7.1 steps 2–3), and hand off to the v4/v5/v6 codecs.
import { ProtocolError } from '../../errors';
import { ENCRYPTED_REQUEST_LENGTH, IV_LENGTH, KMS_VERSION_LENGTH, V4_REQUEST_LENGTH } from './constants';
import { responseInvalid } from './response-checks';
import type {
  DecodedKmsRequest,
  KmsRequestBase,
  KmsResponseBase,
  KmsVersion,
  ResponseMaterial,
  SentKmsRequest,
  VerifiedKmsResponse,
} from './types';
import { decodeV4Request, encodeV4Request, encodeV4Response, verifyV4Response } from './v4';
import { decodeV5Request, encodeV5Request, encodeV5Response, verifyV5Response } from './v5';
import { decodeV6Request, encodeV6Request, encodeV6Response, verifyV6Response } from './v6';

/** The KMS message size each version requires (§4.1): 252 for 4.0, 260 for 5.0 and 6.0. */
function requestLengthOf(version: KmsVersion): number {
  return version === 4 ? V4_REQUEST_LENGTH : ENCRYPTED_REQUEST_LENGTH;
}

/**
 * Host side. `message` = the requestSize bytes of the stub (§3.1). Checks, in order: version 4.0,
 * 5.0 or 6.0; the version's length (excess ignored, §4.1); the v4 MAC when `verifyV4Mac`; v5/v6
 * padding 04 04 04 04 and inner version = clear version (§6.2). Each failure is a ProtocolError
 * whose code the host answers with 0x8007000D. The result never shares memory with `message`.
 */
export function decodeKmsRequest(message: Buffer, opts: { verifyV4Mac: boolean }): DecodedKmsRequest {
  if (message.length < KMS_VERSION_LENGTH) {
    throw new ProtocolError('KMS_ERR_KMS_LENGTH', `a ${message.length}-byte KMS message has no version`, { length: message.length });
  }
  const minor = message.readUInt16LE(0);
  const major = message.readUInt16LE(2);
  // §4.1: dispatch on MajorVer, MinorVer must be 0.
  if (minor !== 0 || (major !== 4 && major !== 5 && major !== 6)) {
    throw new ProtocolError('KMS_ERR_KMS_VERSION', `KMS protocol version ${major}.${minor} is not 4.0, 5.0 or 6.0`, {
      version: `${major}.${minor}`,
    });
  }
  const need = requestLengthOf(major);
  if (message.length < need) {
    throw new ProtocolError('KMS_ERR_KMS_LENGTH', `a v${major} request needs ${need} bytes, got ${message.length}`, {
      version: major,
      length: message.length,
    });
  }
  const exact = message.length === need ? message : message.subarray(0, need);
  switch (major) {
    case 4:
      return decodeV4Request(exact, opts.verifyV4Mac);
    case 5:
      return decodeV5Request(exact);
    case 6:
      return decodeV6Request(exact);
  }
}

function randomOf(material: ResponseMaterial, n: number): Buffer {
  const b = material.randomBytes(n);
  if (b.length !== n) throw new Error(`randomBytes(${n}) returned ${b.length} bytes`);
  return b;
}

/**
 * Host side: the response to a decoded request, in the request's version. `base` is written as
 * given (the host fills the echoes and the request's version). PIDSize = 2 × (characters + 1).
 */
export function encodeKmsResponse(req: DecodedKmsRequest, base: KmsResponseBase, material: ResponseMaterial): Buffer {
  switch (req.version) {
    case 4:
      return encodeV4Response(base);
    case 5:
      return encodeV5Response(req, base, randomOf(material, IV_LENGTH));
    case 6:
      return encodeV6Response(req, base, material.hwid, randomOf(material, 2 * IV_LENGTH));
    default:
      throw new Error(`no KMS version ${String(req.version)}`);
  }
}

/** Client side: the request message for `base` (whose version must be `version`.0), with a random IV for v5/v6. */
export function encodeKmsRequest(version: KmsVersion, base: KmsRequestBase, randomBytes: (n: number) => Buffer): SentKmsRequest {
  switch (version) {
    case 4:
      if (base.majorVersion !== 4 || base.minorVersion !== 0)
        throw new Error(`a v4 request needs a 4.0 base, got ${base.majorVersion}.${base.minorVersion}`);
      return { version, base, message: encodeV4Request(base) };
    case 5:
    case 6: {
      const iv = randomBytes(IV_LENGTH);
      if (iv.length !== IV_LENGTH) throw new Error(`randomBytes(${IV_LENGTH}) returned ${iv.length} bytes`);
      const { message, dreq } = version === 5 ? encodeV5Request(base, iv) : encodeV6Request(base, iv);
      return { version, base, message, iv: Buffer.from(iv), dreq };
    }
    default:
      throw new Error(`no KMS version ${String(version)}`);
  }
}

/**
 * Client side: every check a Windows client makes on a response to `sent` (§6.1, §6.3, §6.6);
 * failure is ProtocolError KMS_ERR_KMS_RESPONSE_INVALID with details.check naming the check.
 */
export function verifyKmsResponse(message: Buffer, sent: SentKmsRequest): VerifiedKmsResponse {
  if (message.length < KMS_VERSION_LENGTH) throw responseInvalid('length', `a ${message.length}-byte response has no version`);
  switch (sent.version) {
    case 4:
      return verifyV4Response(message, sent);
    case 5:
      return verifyV5Response(message, sent);
    case 6:
      return verifyV6Response(message, sent);
    default:
      throw new Error(`no KMS version ${String(sent.version)}`);
  }
}
