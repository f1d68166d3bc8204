// The 16-byte common header every connection-oriented DCE/RPC PDU starts with (PROTOCOL.md §2.1):
// decode it from a received PDU, write it at the start of a PDU being built.
import { ProtocolError } from '../../errors';
import { Reader } from '../reader';
import type { Writer } from '../writer';
import { COMMON_HEADER_LENGTH, DREP_LITTLE_ENDIAN_ASCII_IEEE, RPC_VERSION, RPC_VERSION_MINOR } from './constants';

export interface CommonHeader {
  readonly rpcVersion: number;
  readonly rpcVersionMinor: number;
  readonly ptype: number;
  readonly flags: number;
  /** packed_drep as a little-endian u32: 0x10 is `10 00 00 00`. */
  readonly drep: number;
  readonly fragLength: number;
  readonly authLength: number;
  readonly callId: number;
}

/** Reads the header at the start of `pdu`; throws KMS_ERR_PDU_TRUNCATED when fewer than 16 bytes. */
export function decodeHeader(pdu: Buffer): CommonHeader {
  const r = new Reader(pdu, 0, Math.min(pdu.length, COMMON_HEADER_LENGTH));
  return {
    rpcVersion: r.u8('rpc_vers'),
    rpcVersionMinor: r.u8('rpc_vers_minor'),
    ptype: r.u8('PTYPE'),
    flags: r.u8('pfc_flags'),
    drep: r.u32('packed_drep'),
    fragLength: r.u16('frag_length'),
    authLength: r.u16('auth_length'),
    callId: r.u32('call_id'),
  };
}

/**
 * Checks that `pdu` is exactly one whole PDU: the framer cut it by frag_length, so a mismatch means
 * the caller handed over something else. Returns the decoded header.
 */
export function decodeWholePduHeader(pdu: Buffer): CommonHeader {
  const h = decodeHeader(pdu);
  if (h.fragLength < COMMON_HEADER_LENGTH) {
    throw new ProtocolError('KMS_ERR_PDU_FRAG_LENGTH', `frag_length ${h.fragLength} is below the header size`, {
      fragLength: h.fragLength,
    });
  }
  if (h.fragLength !== pdu.length) {
    throw new ProtocolError('KMS_ERR_PDU_TRUNCATED', `frag_length ${h.fragLength} but the PDU has ${pdu.length} bytes`, {
      fragLength: h.fragLength,
      have: pdu.length,
    });
  }
  return h;
}

/**
 * Writes a 5.0 little-endian header with auth_length 0 (KMS uses no RPC authentication, §1.7) and
 * returns the offset of frag_length for `finishPdu`.
 */
export function writeHeader(w: Writer, ptype: number, flags: number, callId: number): number {
  w.u8(RPC_VERSION).u8(RPC_VERSION_MINOR).u8(ptype).u8(flags).u32(DREP_LITTLE_ENDIAN_ASCII_IEEE);
  const fragLengthAt = w.reserve(2);
  w.u16(0).u32(callId);
  return fragLengthAt;
}

/** Back-fills frag_length (the whole PDU, header included) and returns the PDU bytes. */
export function finishPdu(w: Writer, fragLengthAt: number): Buffer {
  w.backfillU16(fragLengthAt, w.offset);
  return w.finish();
}
