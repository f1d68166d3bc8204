// bind / alter_context and their answers (PROTOCOL.md §2.4, §2.6, §2.7): the host decodes the
// offer and encodes bind_ack, alter_context_resp and bind_nak; the client side does the reverse.
import { guidToBytes } from '../guid';
import { Reader } from '../reader';
import { Writer } from '../writer';
import {
  COMMON_HEADER_LENGTH,
  MIN_FRAG_SIZE,
  PTYPE,
  REPLY_FLAGS,
  RPC_VERSION,
  RPC_VERSION_MINOR,
  type SyntaxId,
  type TransferSyntaxId,
} from './constants';
import { decodeHeader, finishPdu, writeHeader, type CommonHeader } from './header';

/** One presentation-context item of a bind or alter_context. */
export interface PresentationContextItem {
  readonly contextId: number;
  readonly abstractSyntax: SyntaxId;
  readonly transferSyntaxes: readonly TransferSyntaxId[];
}

export interface BindPdu {
  readonly header: CommonHeader;
  readonly maxXmitFrag: number;
  readonly maxRecvFrag: number;
  readonly assocGroupId: number;
  readonly contexts: readonly PresentationContextItem[];
}

export interface ContextResult {
  readonly result: number;
  readonly reason: number;
  readonly transferSyntax: TransferSyntaxId;
}

export interface BindAckPdu {
  readonly header: CommonHeader;
  readonly maxXmitFrag: number;
  readonly maxRecvFrag: number;
  readonly assocGroupId: number;
  /** The host's port as text ('' in alter_context_resp). */
  readonly secondaryAddress: string;
  readonly results: readonly ContextResult[];
}

export interface BindNakPdu {
  readonly header: CommonHeader;
  readonly reason: number;
  readonly versions: readonly { readonly major: number; readonly minor: number }[];
}

/** Fixed part of a bind body before the items: frags, assoc group, n_context_elem + 3 reserved. */
const BIND_FIXED_LENGTH = 28;
const CONTEXT_ITEM_FIXED_LENGTH = 24;
const TRANSFER_SYNTAX_LENGTH = 20;

/**
 * Decodes a bind or alter_context (same body). Items that do not fit in the PDU fail with
 * KMS_ERR_BIND_MALFORMED (§2.4: "check 28 + Σ item sizes ≤ frag_length"), which the host answers
 * with bind_nak reason 0. Bytes after the last item are not interpreted.
 */
export function decodeBind(pdu: Buffer): BindPdu {
  const header = decodeHeader(pdu);
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length, 'KMS_ERR_BIND_MALFORMED');
  const maxXmitFrag = r.u16('max_xmit_frag');
  const maxRecvFrag = r.u16('max_recv_frag');
  const assocGroupId = r.u32('assoc_group_id');
  const count = r.u8('n_context_elem');
  r.skip(3, 'reserved');
  const contexts: PresentationContextItem[] = [];
  for (let i = 0; i < count; i++) {
    // Every read below is bounds-checked against frag_length, so an item count or a transfer
    // syntax count that overstates the PDU fails before anything past its end is touched.
    const contextId = r.u16('p_cont_id');
    const nSyntaxes = r.u8('n_transfer_syn');
    r.skip(1, 'reserved');
    const uuid = r.guid('abstract syntax');
    const major = r.u16('interface version major');
    const minor = r.u16('interface version minor');
    const transferSyntaxes: TransferSyntaxId[] = [];
    for (let j = 0; j < nSyntaxes; j++) {
      transferSyntaxes.push({ uuid: r.guid('transfer syntax'), version: r.u32('transfer syntax version') });
    }
    contexts.push({ contextId, abstractSyntax: { uuid, major, minor }, transferSyntaxes });
  }
  return { header, maxXmitFrag, maxRecvFrag, assocGroupId, contexts };
}

export interface BindAckFields {
  /** PTYPE.BIND_ACK or PTYPE.ALTER_CONTEXT_RESP. */
  readonly ptype: number;
  readonly callId: number;
  /** bind_ack echoes the bind's pfc_flags; alter_context_resp sends 0x03 (§2.3). */
  readonly flags: number;
  readonly maxXmitFrag: number;
  readonly maxRecvFrag: number;
  readonly assocGroupId: number;
  readonly secondaryAddress: string;
  readonly results: readonly ContextResult[];
}

/**
 * A bind_ack names only the syntaxes the host chose (NDR32, NDR64, the all-zero one), so their wire
 * bytes are converted once, not per result of every bind (a few cached, anything else converted).
 */
const syntaxBytes = new Map<string, Buffer>();
function transferSyntaxBytes(uuid: string): Buffer {
  let bytes = syntaxBytes.get(uuid);
  if (bytes === undefined) {
    bytes = guidToBytes(uuid);
    if (syntaxBytes.size < 8) syntaxBytes.set(uuid, bytes);
  }
  return bytes;
}

/** Encodes bind_ack or alter_context_resp with the layout of §2.6 (zero padding). */
export function encodeBindAck(f: BindAckFields): Buffer {
  const w = new Writer(128);
  const at = writeHeader(w, f.ptype, f.flags, f.callId);
  w.u16(f.maxXmitFrag).u16(f.maxRecvFrag).u32(f.assocGroupId);
  // sec_addr_length counts the terminating NUL; an empty address has length 0, not 1 (§2.6).
  const addr = f.secondaryAddress === '' ? Buffer.alloc(0) : Buffer.from(`${f.secondaryAddress}\0`, 'latin1');
  w.u16(addr.length).bytes(addr);
  w.align(4); // n_results starts at a PDU offset ≡ 0 mod 4
  w.u8(f.results.length).zeros(3);
  for (const res of f.results) {
    w.u16(res.result).u16(res.reason).bytes(transferSyntaxBytes(res.transferSyntax.uuid)).u32(res.transferSyntax.version);
  }
  return finishPdu(w, at);
}

/** Decodes bind_ack or alter_context_resp; the padding before n_results is not interpreted. */
export function decodeBindAck(pdu: Buffer): BindAckPdu {
  const header = decodeHeader(pdu);
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length);
  const maxXmitFrag = r.u16('max_xmit_frag');
  const maxRecvFrag = r.u16('max_recv_frag');
  const assocGroupId = r.u32('assoc_group_id');
  const addrLength = r.u16('sec_addr_length');
  const addr = r.bytes(addrLength, 'sec_addr');
  const nul = addr.indexOf(0);
  const secondaryAddress = addr.subarray(0, nul < 0 ? addr.length : nul).toString('latin1');
  r.align(4);
  const count = r.u8('n_results');
  r.skip(3, 'reserved');
  const results: ContextResult[] = [];
  for (let i = 0; i < count; i++) {
    results.push({
      result: r.u16('result'),
      reason: r.u16('reason'),
      transferSyntax: { uuid: r.guid('transfer syntax'), version: r.u32('transfer syntax version') },
    });
  }
  r.expectEnd('bind_ack');
  return { header, maxXmitFrag, maxRecvFrag, assocGroupId, secondaryAddress, results };
}

/**
 * bind_nak (§2.7): reason, then the one protocol version the host speaks (`01 05 00`), zero-padded
 * to a multiple of 4, so 24 bytes. No [MS-RPCE] signature trailer: KMS clients do not need it.
 */
export function encodeBindNak(callId: number, reason: number): Buffer {
  const w = new Writer(24);
  const at = writeHeader(w, PTYPE.BIND_NAK, REPLY_FLAGS.SINGLE_FRAGMENT, callId);
  w.u16(reason).u8(1).u8(RPC_VERSION).u8(RPC_VERSION_MINOR);
  w.align(4);
  return finishPdu(w, at);
}

export function decodeBindNak(pdu: Buffer): BindNakPdu {
  const header = decodeHeader(pdu);
  const r = new Reader(pdu, COMMON_HEADER_LENGTH, pdu.length);
  const reason = r.u16('provider_reject_reason');
  const n = r.u8('n_protocols');
  const versions: { major: number; minor: number }[] = [];
  for (let i = 0; i < n; i++) versions.push({ major: r.u8('version major'), minor: r.u8('version minor') });
  return { header, reason, versions };
}

export interface BindFields {
  /** PTYPE.BIND or PTYPE.ALTER_CONTEXT. */
  readonly ptype: number;
  readonly callId: number;
  readonly flags: number;
  readonly maxXmitFrag: number;
  readonly maxRecvFrag: number;
  readonly assocGroupId: number;
  readonly contexts: readonly PresentationContextItem[];
}

/** Client side: encodes a bind or alter_context offering `contexts` in order. */
export function encodeBind(f: BindFields): Buffer {
  if (f.contexts.length > 0xff) throw new RangeError('a bind carries at most 255 presentation contexts');
  const w = new Writer(
    BIND_FIXED_LENGTH + f.contexts.reduce((n, c) => n + CONTEXT_ITEM_FIXED_LENGTH + TRANSFER_SYNTAX_LENGTH * c.transferSyntaxes.length, 0),
  );
  const at = writeHeader(w, f.ptype, f.flags, f.callId);
  w.u16(f.maxXmitFrag).u16(f.maxRecvFrag).u32(f.assocGroupId);
  w.u8(f.contexts.length).zeros(3);
  for (const c of f.contexts) {
    w.u16(c.contextId).u8(c.transferSyntaxes.length).u8(0);
    w.bytes(guidToBytes(c.abstractSyntax.uuid)).u16(c.abstractSyntax.major).u16(c.abstractSyntax.minor);
    for (const ts of c.transferSyntaxes) w.bytes(guidToBytes(ts.uuid)).u32(ts.version);
  }
  return finishPdu(w, at);
}

/**
 * The max_xmit_frag/max_recv_frag a bind_ack answers with (§2.6): the client's value, lowered to
 * the host's limit but never below 1432 and never raised (a value below 1432 is echoed as is).
 */
export function negotiateFragSize(offered: number, hostLimit: number): number {
  if (offered <= MIN_FRAG_SIZE) return offered;
  return Math.max(MIN_FRAG_SIZE, Math.min(offered, hostLimit));
}
