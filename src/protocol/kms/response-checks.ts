// What a verifying client checks in every response version, and the one failure it reports:
// ProtocolError KMS_ERR_KMS_RESPONSE_INVALID whose `check` is a short stable id (tests and
// `activate` key on it) and whose message says in words what failed.
import { ProtocolError } from '../../errors';
import { CIPHER_BLOCK_LENGTH } from './constants';
import type { KmsRequestBase, KmsResponseBase, KmsVersion } from './types';

export type ResponseCheck =
  | 'length'
  | 'padding'
  | 'version'
  | 'pid-size'
  | 'epid'
  | 'cmid'
  | 'client-time'
  | 'mac'
  | 'iv-echo'
  | 'iv-reused'
  | 'hash'
  | 'xored-ivs'
  | 'hmac';

export function responseInvalid(check: ResponseCheck, message: string, details: Record<string, unknown> = {}): ProtocolError {
  return new ProtocolError('KMS_ERR_KMS_RESPONSE_INVALID', message, { check, ...details });
}

/** Clear (v5/v6) or base version must be the request's version with minor 0 (§6.1, §6.3, §6.6 item 2). */
export function checkVersion(minor: number, major: number, version: KmsVersion, where: string): void {
  if (minor !== 0 || major !== version) {
    throw responseInvalid('version', `${where} version is ${major}.${minor}, the request was ${version}.0`, { where, major, minor });
  }
}

/** CMID and ClientTime are echoes of the request (§4.3, §6.6 item 4). */
export function checkEchoes(base: KmsResponseBase, sent: KmsRequestBase): void {
  if (base.clientMachineId !== sent.clientMachineId) {
    throw responseInvalid('cmid', `the response names CMID ${base.clientMachineId}, the request sent ${sent.clientMachineId}`);
  }
  if (base.clientTime !== sent.requestTime) {
    throw responseInvalid('client-time', `the response echoes client time ${base.clientTime}, the request sent ${sent.requestTime}`);
  }
}

/** (L − 4) a positive multiple of 16 with at least `minBlocks` blocks after the version (§6.6 item 1). */
export function checkEncryptedLength(message: Buffer, minBlocks: number): void {
  const body = message.length - 4;
  if (body < minBlocks * CIPHER_BLOCK_LENGTH || body % CIPHER_BLOCK_LENGTH !== 0) {
    throw responseInvalid('length', `a ${message.length}-byte response is not 4 bytes plus whole cipher blocks`, {
      length: message.length,
    });
  }
}

export function roundUp16(n: number): number {
  return (n + 15) & ~15;
}
