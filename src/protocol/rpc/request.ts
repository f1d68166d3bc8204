// request / response / fault PDUs (PROTOCOL.md §2.8, §2.9): the host decodes requests and encodes
// responses and faults; the client side encodes requests and decodes the two answers.
import { CALL_HEADER_LENGTH, COMMON_HEADER_LENGTH, FAULT_PDU_LENGTH, PFC, PTYPE, REPLY_FLAGS } from './constants';
import { guidToBytes } from '../guid';
import { Reader } from '../reader';
import { Writer } from '../writer';
import { decodeHeader, finishPdu, writeHeader, type CommonHeader } from './header';

export interface RequestPdu {
  readonly header: CommonHeader;
  /** The client's estimate of the whole stub; never used for allocation (§2.8). */
  readonly allocHint: number;
  readonly contextId: number;
  readonly opnum: number;
  /** Present only with PFC_OBJECT_UUID; its value means nothing to KMS. */
  readonly objectUuid?: string;
  /** This fragment's stub bytes (a view into the PDU). */
  readonly stub: Buffer;
}

export interface ResponsePdu {
  readonly header: CommonHeader;
  readonly allocHint: number;
  readonly contextId: number;
  readonly cancelCount: number;
  readonly reserved: number;
  readonly stub: Buffer;
}

export interface FaultPdu {
  readonly header: CommonHeader;
  readonly allocHint: number;
  readonly contextId: number;
  readonly cancelCount: number;
  readonly reserved: number;
  readonly status: number;
  readonly reserved2: number;
}

/**
 * Decodes a request (one fragment), its header given when the caller decoded it already. A PDU
 * too short for alloc_hint, p_cont_id, opnum and (when flagged) the object UUID fails with
 * KMS_ERR_RPC_REQUEST_TRUNCATED: its header is readable, so the host answers with a fault rather
 * than closing (§2.9).
 */
export function decodeRequest(pdu: Buffer, header: CommonHeader = decodeHeader(pdu)): RequestPdu {
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length, 'KMS_ERR_RPC_REQUEST_TRUNCATED');
  const allocHint = r.u32('alloc_hint');
  const contextId = r.u16('p_cont_id');
  const opnum = r.u16('opnum');
  const objectUuid = header.flags & PFC.OBJECT_UUID ? r.guid('object UUID') : undefined;
  const stub = r.bytes(r.remaining, 'stub');
  return objectUuid === undefined
    ? { header, allocHint, contextId, opnum, stub }
    : { header, allocHint, contextId, opnum, objectUuid, stub };
}

/** A single-fragment response: alloc_hint = stub length, cancel_count 0, flags 0x03 (§2.9, C11). */
export function encodeResponse(callId: number, contextId: number, stub: Buffer): Buffer {
  const w = new Writer(CALL_HEADER_LENGTH + stub.length);
  const at = writeResponseHead(w, callId, contextId, stub.length);
  w.bytes(stub);
  return finishPdu(w, at);
}

/**
 * The 24 bytes of a single-fragment response before its stub, for a caller that writes the stub
 * into the same writer (one buffer per reply); returns the offset of frag_length for finishPdu.
 */
export function writeResponseHead(w: Writer, callId: number, contextId: number, stubLength: number): number {
  const at = writeHeader(w, PTYPE.RESPONSE, REPLY_FLAGS.SINGLE_FRAGMENT, callId);
  w.u32(stubLength).u16(contextId).u8(0).u8(0);
  return at;
}

/**
 * A response in as many fragments as the client's max_recv_frag needs (§2.10: no reply may exceed
 * it): one PDU (encodeResponse) when it fits, which it always does for a client that keeps to
 * DCE/RPC's 1432-byte minimum. Otherwise fragments back to back in one buffer, FIRST on the first
 * and LAST on the last, each alloc_hint the stub bytes from it on, and every stub but the last a
 * multiple of 8 bytes so NDR alignment holds across them. A fragment carries at least 8 stub
 * bytes, so a max_recv_frag below 32 (no fault fits in it either) is exceeded by that much.
 */
export function encodeResponseFragments(callId: number, contextId: number, stub: Buffer, maxRecvFrag: number): Buffer {
  if (CALL_HEADER_LENGTH + stub.length <= maxRecvFrag) return encodeResponse(callId, contextId, stub);
  const per = Math.max(8, Math.floor((maxRecvFrag - CALL_HEADER_LENGTH) / 8) * 8);
  const fragments: Buffer[] = [];
  for (let from = 0; from < stub.length; from += per) {
    const part = stub.subarray(from, from + per);
    const flags = (from === 0 ? PFC.FIRST_FRAG : 0) | (from + per >= stub.length ? PFC.LAST_FRAG : 0);
    const w = new Writer(CALL_HEADER_LENGTH + part.length);
    const at = writeHeader(w, PTYPE.RESPONSE, flags, callId);
    w.u32(stub.length - from)
      .u16(contextId)
      .u8(0)
      .u8(0)
      .bytes(part);
    fragments.push(finishPdu(w, at));
  }
  return Buffer.concat(fragments);
}

/**
 * A fault (§2.9): 32 bytes, flags FIRST|LAST|DID_NOT_EXECUTE, the request's call_id and
 * p_cont_id, alloc_hint 32, and cancel_count/reserved/final reserved all zero. Unlike the C
 * reference, the call_id is the request's and offsets 22–23 are never left uninitialised.
 */
export function encodeFault(callId: number, contextId: number, status: number): Buffer {
  const w = new Writer(FAULT_PDU_LENGTH);
  const at = writeHeader(w, PTYPE.FAULT, REPLY_FLAGS.FAULT, callId);
  w.u32(FAULT_PDU_LENGTH).u16(contextId).u8(0).u8(0).u32(status).u32(0);
  return finishPdu(w, at);
}

export interface RequestFields {
  readonly callId: number;
  readonly contextId: number;
  readonly opnum: number;
  readonly stub: Buffer;
  /** Defaults to a single fragment (0x03). */
  readonly flags?: number;
  /** Defaults to the stub length, as Windows fills it in. */
  readonly allocHint?: number;
  /** Sent (and PFC_OBJECT_UUID set) only when given. */
  readonly objectUuid?: string;
}

/** Client side: one request PDU (or one fragment of a request when `flags` says so). */
export function encodeRequestPdu(f: RequestFields): Buffer {
  const w = new Writer(CALL_HEADER_LENGTH + 16 + f.stub.length);
  let flags = f.flags ?? REPLY_FLAGS.SINGLE_FRAGMENT;
  if (f.objectUuid !== undefined) flags |= PFC.OBJECT_UUID;
  const at = writeHeader(w, PTYPE.REQUEST, flags, f.callId);
  w.u32(f.allocHint ?? f.stub.length)
    .u16(f.contextId)
    .u16(f.opnum);
  if (f.objectUuid !== undefined) w.bytes(guidToBytes(f.objectUuid));
  w.bytes(f.stub);
  return finishPdu(w, at);
}

/** Client side: a response PDU; checking its fields against the call is the caller's job (§3.3). */
export function decodeResponsePdu(pdu: Buffer): ResponsePdu {
  const header = decodeHeader(pdu);
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length);
  return {
    header,
    allocHint: r.u32('alloc_hint'),
    contextId: r.u16('p_cont_id'),
    cancelCount: r.u8('cancel_count'),
    reserved: r.u8('reserved'),
    stub: r.bytes(r.remaining, 'stub'),
  };
}

/** Client side: a fault PDU. Its call_id and offsets 22–23 are unreliable from the C reference. */
export function decodeFaultPdu(pdu: Buffer): FaultPdu {
  const header = decodeHeader(pdu);
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length);
  // Bytes after the final reserved u32 ([MS-RPCE] extended error data) are not interpreted.
  return {
    header,
    allocHint: r.u32('alloc_hint'),
    contextId: r.u16('p_cont_id'),
    cancelCount: r.u8('cancel_count'),
    reserved: r.u8('reserved'),
    status: r.u32('status'),
    reserved2: r.u32('reserved'),
  };
}
