// The response base (PROTOCOL.md §4.3): version, PIDSize, ePID, echoed CMID and ClientTime, count
// and intervals. Writing is the host's side; reading applies the client's ePID checks.
import { bytesToGuid, writeGuid } from '../guid';
import { MAX_EPID_CHARS, MAX_PID_SIZE, MIN_PID_SIZE, RESPONSE_BASE_FIXED_LENGTH } from './constants';
import { isWellFormedEpid } from './epid-shape';
import { responseInvalid } from './response-checks';
import type { KmsResponseBase } from './types';

/** PIDSize = 2 × (characters + 1): UTF-16LE plus one NUL code unit (C14). */
export function pidSizeOf(epid: string): number {
  if (epid.length < 1 || epid.length > MAX_EPID_CHARS || epid.includes('\0')) {
    throw new Error(`an ePID must have 1…${MAX_EPID_CHARS} characters and no NUL, got ${JSON.stringify(epid)}`);
  }
  return 2 * (epid.length + 1);
}

/** Writes the base at `at` and returns its length (44 + PIDSize). */
export function writeResponseBase(base: KmsResponseBase, pidSize: number, out: Buffer, at: number): number {
  out.writeUInt16LE(base.minorVersion, at);
  out.writeUInt16LE(base.majorVersion, at + 2);
  out.writeUInt32LE(pidSize, at + 4);
  out.write(base.epid, at + 8, 'utf16le');
  let p = at + 8 + pidSize;
  out.writeUInt16LE(0, p - 2);
  writeGuid(out, p, base.clientMachineId);
  out.writeBigUInt64LE(base.clientTime, p + 16);
  out.writeUInt32LE(base.currentCount, p + 24);
  out.writeUInt32LE(base.activationInterval, p + 28);
  out.writeUInt32LE(base.renewalInterval, p + 32);
  p += 36;
  return p - at;
}

export interface ReadResponseBase {
  readonly base: KmsResponseBase;
  readonly pidSize: number;
  /** 44 + PIDSize. */
  readonly length: number;
}

/** Reads a base from buf[at, end) and applies the client's ePID checks (§4.3, §7.4). */
export function readResponseBase(buf: Buffer, at: number, end: number): ReadResponseBase {
  if (end - at < RESPONSE_BASE_FIXED_LENGTH) {
    throw responseInvalid('length', `response base needs at least ${RESPONSE_BASE_FIXED_LENGTH} bytes, has ${end - at}`);
  }
  const pidSize = buf.readUInt32LE(at + 4);
  if (pidSize % 2 !== 0 || pidSize < MIN_PID_SIZE || pidSize > MAX_PID_SIZE) {
    throw responseInvalid('pid-size', `PIDSize ${pidSize} is not an even number from ${MIN_PID_SIZE} to ${MAX_PID_SIZE}`, { pidSize });
  }
  const length = RESPONSE_BASE_FIXED_LENGTH + pidSize;
  if (end - at < length) {
    throw responseInvalid('length', `PIDSize ${pidSize} needs a ${length}-byte response base, only ${end - at} bytes are there`, {
      pidSize,
    });
  }
  const epidAt = at + 8;
  const chars = pidSize / 2 - 1;
  for (let i = 0; i < chars; i++) {
    if (buf.readUInt16LE(epidAt + 2 * i) === 0) throw responseInvalid('epid', `the ePID has a NUL at character ${i}`, { pidSize });
  }
  if (buf.readUInt16LE(epidAt + 2 * chars) !== 0) throw responseInvalid('epid', 'the ePID is not NUL-terminated', { pidSize });
  const epid = buf.toString('utf16le', epidAt, epidAt + 2 * chars);
  if (!isWellFormedEpid(epid)) throw responseInvalid('epid', `the ePID ${JSON.stringify(epid)} does not have the ePID form`, { epid });
  const p = epidAt + pidSize;
  return {
    base: {
      minorVersion: buf.readUInt16LE(at),
      majorVersion: buf.readUInt16LE(at + 2),
      epid,
      clientMachineId: bytesToGuid(buf, p),
      clientTime: buf.readBigUInt64LE(p + 16),
      currentCount: buf.readUInt32LE(p + 24),
      activationInterval: buf.readUInt32LE(p + 28),
      renewalInterval: buf.readUInt32LE(p + 32),
    },
    pidSize,
    length,
  };
}
