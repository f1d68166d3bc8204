// The 236-byte request base (PROTOCOL.md §4.2), shared by all versions; in v5/v6 it is the
// decrypted plaintext. Callers guarantee the 236 bytes exist (the version codecs check lengths).
import { bytesToGuid, RepeatedGuids, writeGuid } from '../guid';
import { REQUEST_BASE_LENGTH, WORKSTATION_NAME_UNITS } from './constants';
import type { KmsRequestBase } from './types';

const WORKSTATION_OFFSET = 108;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** §4.2: up to the first NUL code unit (all 64 units when there is none); bad UTF-16 → U+FFFD. */
function decodeWorkstationName(buf: Buffer, at: number): string {
  let units = 0;
  let surrogates = false;
  for (; units < WORKSTATION_NAME_UNITS; units++) {
    const high = buf[at + 2 * units + 1]!;
    if ((buf[at + 2 * units]! | high) === 0) break;
    if ((high & 0xf8) === 0xd8) surrogates = true;
  }
  const name = buf.toString('utf16le', at, at + 2 * units);
  // The replacement's regular expression only for the rare name that has surrogates at all.
  return surrogates ? name.replace(LONE_SURROGATE, '\uFFFD') : name;
}

/** The product IDs and the previous CMID (nearly always the nil GUID) repeat across requests. */
const repeated = new RepeatedGuids();

export function decodeRequestBase(buf: Buffer, at: number): KmsRequestBase {
  if (at < 0 || at + REQUEST_BASE_LENGTH > buf.length) {
    throw new Error(`request base needs ${REQUEST_BASE_LENGTH} bytes at ${at}, buffer has ${buf.length}`);
  }
  return {
    minorVersion: buf.readUInt16LE(at),
    majorVersion: buf.readUInt16LE(at + 2),
    vmInfo: buf.readUInt32LE(at + 4),
    licenseStatus: buf.readUInt32LE(at + 8),
    bindingExpiration: buf.readUInt32LE(at + 12),
    applicationId: repeated.text(buf, at + 16),
    activationId: repeated.text(buf, at + 32),
    kmsCountedId: repeated.text(buf, at + 48),
    clientMachineId: bytesToGuid(buf, at + 64),
    requiredClientCount: buf.readUInt32LE(at + 80),
    requestTime: buf.readBigUInt64LE(at + 84),
    previousClientMachineId: repeated.text(buf, at + 92),
    workstationName: decodeWorkstationName(buf, at + WORKSTATION_OFFSET),
  };
}

/** Writes all 236 bytes (the name NUL-filled); a name over 64 UTF-16 units is a caller bug. */
export function writeRequestBase(base: KmsRequestBase, out: Buffer, at: number): void {
  if (base.workstationName.length > WORKSTATION_NAME_UNITS) {
    throw new Error(`WorkstationName has ${base.workstationName.length} UTF-16 units; at most ${WORKSTATION_NAME_UNITS} fit`);
  }
  out.writeUInt16LE(base.minorVersion, at);
  out.writeUInt16LE(base.majorVersion, at + 2);
  out.writeUInt32LE(base.vmInfo, at + 4);
  out.writeUInt32LE(base.licenseStatus, at + 8);
  out.writeUInt32LE(base.bindingExpiration, at + 12);
  writeGuid(out, at + 16, base.applicationId);
  writeGuid(out, at + 32, base.activationId);
  writeGuid(out, at + 48, base.kmsCountedId);
  writeGuid(out, at + 64, base.clientMachineId);
  out.writeUInt32LE(base.requiredClientCount, at + 80);
  out.writeBigUInt64LE(base.requestTime, at + 84);
  writeGuid(out, at + 92, base.previousClientMachineId);
  const nameAt = at + WORKSTATION_OFFSET;
  out.fill(0, nameAt, nameAt + 2 * WORKSTATION_NAME_UNITS);
  out.write(base.workstationName, nameAt, 'utf16le');
}
