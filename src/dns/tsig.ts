// TSIG (RFC 8945) with HMAC-SHA256: signs a request we send and verifies the server's signed
// answer, so a site DNS server accepts our dynamic updates and we know the answer is its own.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { decodeMessage, RCODE, RR_CLASS, RR_TYPE, type DecodedRecord } from '../protocol/dns/message';
import { canonicalWireName } from '../protocol/dns/names';

export const TSIG_ALGORITHM_HMAC_SHA256 = 'hmac-sha256';
/** RFC 8945 §10: 300 s is the recommended fudge. */
const TSIG_FUDGE_SECONDS = 300;
const HMAC_SHA256_LENGTH = 32;

export interface TsigKey {
  readonly name: string;
  readonly algorithm: typeof TSIG_ALGORITHM_HMAC_SHA256;
  readonly secret: Buffer;
}

interface TsigVariables {
  readonly timeSigned: number;
  readonly fudge: number;
  readonly error: number;
  readonly other: Buffer;
}

/** RFC 8945 §4.3.3: the TSIG variables appended to the message before hashing. */
function variablesBytes(key: TsigKey, v: TsigVariables): Buffer {
  const fixed = Buffer.alloc(2 + 4);
  fixed.writeUInt16BE(RR_CLASS.ANY, 0);
  fixed.writeUInt32BE(0, 2); // TTL
  const tail = Buffer.alloc(6 + 2 + 2 + 2);
  tail.writeUInt16BE(Math.floor(v.timeSigned / 2 ** 32), 0);
  tail.writeUInt32BE(v.timeSigned % 2 ** 32, 2);
  tail.writeUInt16BE(v.fudge, 6);
  tail.writeUInt16BE(v.error, 8);
  tail.writeUInt16BE(v.other.length, 10);
  return Buffer.concat([canonicalWireName(key.name), fixed, canonicalWireName(key.algorithm), tail, v.other]);
}

function hmac(key: TsigKey, parts: readonly Buffer[]): Buffer {
  const h = createHmac('sha256', key.secret);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Wire bytes of a TSIG RR (name and algorithm uncompressed, RFC 8945 §4.2). */
function tsigRecordBytes(key: TsigKey, originalId: number, v: TsigVariables, mac: Buffer): Buffer {
  const alg = canonicalWireName(key.algorithm);
  const rdata = Buffer.alloc(alg.length + 10 + mac.length + 6 + v.other.length);
  let at = alg.copy(rdata, 0);
  rdata.writeUInt16BE(Math.floor(v.timeSigned / 2 ** 32), at);
  rdata.writeUInt32BE(v.timeSigned % 2 ** 32, at + 2);
  rdata.writeUInt16BE(v.fudge, at + 6);
  rdata.writeUInt16BE(mac.length, at + 8);
  at += 10;
  at += mac.copy(rdata, at);
  rdata.writeUInt16BE(originalId, at);
  rdata.writeUInt16BE(v.error, at + 2);
  rdata.writeUInt16BE(v.other.length, at + 4);
  v.other.copy(rdata, at + 6);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(RR_TYPE.TSIG, 0);
  head.writeUInt16BE(RR_CLASS.ANY, 2);
  head.writeUInt32BE(0, 4);
  head.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([canonicalWireName(key.name), head, rdata]);
}

/** Appends a TSIG record to an encoded message; returns it and the MAC the answer must chain. */
export function signMessage(
  message: Buffer,
  key: TsigKey,
  nowSeconds: number,
  fudge = TSIG_FUDGE_SECONDS,
): { signed: Buffer; mac: Buffer } {
  const v: TsigVariables = { timeSigned: Math.floor(nowSeconds), fudge, error: 0, other: Buffer.alloc(0) };
  const mac = hmac(key, [message, variablesBytes(key, v)]);
  const signed = Buffer.concat([message, tsigRecordBytes(key, message.readUInt16BE(0), v, mac)]);
  signed.writeUInt16BE(message.readUInt16BE(10) + 1, 10);
  return { signed, mac };
}

export type TsigCheck =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** unsigned: no TSIG; error: the server reports BADSIG/BADKEY/BADTIME; mac/time/key: our check failed. */
      readonly problem: 'unsigned' | 'error' | 'mac' | 'time' | 'key';
      readonly tsigError: number;
    };

/**
 * Verifies a signed answer to a request whose MAC was `requestMac` (RFC 8945 §5.3). The TSIG
 * must be the last additional record, name our key, use our algorithm, carry a full-length MAC
 * over (request MAC, the answer without the TSIG and with its original ID, the variables) and
 * a time within its fudge.
 */
export function verifyResponse(response: Buffer, key: TsigKey, requestMac: Buffer, nowSeconds: number): TsigCheck {
  const msg = decodeMessage(response);
  const last: DecodedRecord | undefined = msg.additionals[msg.additionals.length - 1];
  if (!last || last.type !== RR_TYPE.TSIG || last.data.kind !== 'tsig') return { ok: false, problem: 'unsigned', tsigError: 0 };
  const t = last.data;
  if (t.error !== RCODE.NOERROR) return { ok: false, problem: 'error', tsigError: t.error };
  if (
    canonicalWireName(last.name).compare(canonicalWireName(key.name)) !== 0 ||
    canonicalWireName(t.algorithm).compare(canonicalWireName(key.algorithm)) !== 0
  ) {
    return { ok: false, problem: 'key', tsigError: RCODE.BADKEY };
  }
  if (t.mac.length !== HMAC_SHA256_LENGTH) return { ok: false, problem: 'mac', tsigError: RCODE.BADVERS };
  const stripped = Buffer.from(response.subarray(0, last.offset));
  stripped.writeUInt16BE(t.originalId, 0);
  stripped.writeUInt16BE(stripped.readUInt16BE(10) - 1, 10);
  const reqLen = Buffer.alloc(2);
  reqLen.writeUInt16BE(requestMac.length);
  const expected = hmac(key, [reqLen, requestMac, stripped, variablesBytes(key, t)]);
  if (!timingSafeEqual(expected, t.mac)) return { ok: false, problem: 'mac', tsigError: RCODE.BADVERS };
  if (Math.abs(nowSeconds - t.timeSigned) > t.fudge) return { ok: false, problem: 'time', tsigError: RCODE.BADTIME };
  return { ok: true };
}

/** Reads a secret given as base64, or as a BIND key file containing `secret "…";`. */
export function parseTsigSecret(text: string): Buffer | undefined {
  const m = /secret\s+"([^"]+)"/.exec(text);
  const b64 = (m ? m[1]! : text).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const secret = Buffer.from(b64, 'base64');
  return secret.length > 0 ? secret : undefined;
}
