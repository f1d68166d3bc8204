// DCE/RPC wire constants KMS uses: PDU types, pfc_flags, the interface and transfer-syntax
// identifiers, and the presentation-context result codes (PROTOCOL.md §2.1–§2.7).

/** PDU types (C706 §12.6.4.1; PROTOCOL.md §2.2). */
export const PTYPE = Object.freeze({
  REQUEST: 0, // c→s: one RequestActivation call (or one fragment of it)
  RESPONSE: 2, // s→c: the call's result, a KMS refusal included
  FAULT: 3, // s→c: the call was not executed (unknown context, bad opnum, malformed stub)
  BIND: 11, // c→s: opens the association and offers presentation contexts
  BIND_ACK: 12, // s→c: per-context results
  BIND_NAK: 13, // s→c: the whole bind is refused
  ALTER_CONTEXT: 14, // c→s: offers more contexts on a bound association
  ALTER_CONTEXT_RESP: 15, // s→c: like bind_ack, with an empty secondary address
  AUTH3: 16, // c→s: third leg of an authentication KMS never uses → close
  SHUTDOWN: 17, // c→s: the peer asks to close → close
  CO_CANCEL: 18, // c→s: cancel a call in progress → ignored (KMS calls are answered at once)
  ORPHANED: 19, // c→s: the client abandoned a call → ignored
} as const);
export type Ptype = (typeof PTYPE)[keyof typeof PTYPE];

/** PTYPE number → lowercase name as in C706 and the capture files (`bind_ack`, …). */
export const PTYPE_NAME: ReadonlyMap<number, string> = new Map(Object.entries(PTYPE).map(([name, code]) => [code, name.toLowerCase()]));

export function isPtype(code: number): code is Ptype {
  return PTYPE_NAME.has(code);
}

/** pfc_flags bits (PROTOCOL.md §2.3). */
export const PFC = Object.freeze({
  FIRST_FRAG: 0x01,
  LAST_FRAG: 0x02,
  PENDING_CANCEL: 0x04, // in bind: PFC_SUPPORT_HEADER_SIGN; ignored either way
  CONC_MPX: 0x10, // the client asks for concurrent multiplexing; bind_ack echoes it
  DID_NOT_EXECUTE: 0x20, // set by the host in every fault
  MAYBE: 0x40,
  OBJECT_UUID: 0x80, // request carries a 16-byte object UUID before the stub
} as const);

/** Flags of the replies that do not echo the request (§2.3). */
export const REPLY_FLAGS = Object.freeze({
  SINGLE_FRAGMENT: PFC.FIRST_FRAG | PFC.LAST_FRAG, // response, alter_context_resp, bind_nak: 0x03
  FAULT: PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.DID_NOT_EXECUTE, // 0x23
} as const);

export const RPC_VERSION = 5;
export const RPC_VERSION_MINOR = 0;
/** packed_drep `10 00 00 00` read as a u32: little-endian integers, ASCII, IEEE floats. */
export const DREP_LITTLE_ENDIAN_ASCII_IEEE = 0x00000010;

/** Every PDU starts with this many header bytes; frag_length counts them. */
export const COMMON_HEADER_LENGTH = 16;
/** frag_length is the u16 at offset 8, so a framer knows the PDU size after 10 bytes. */
export const FRAG_LENGTH_OFFSET = 8;
export const FRAG_LENGTH_KNOWN_AFTER = 10;

/** Request/response/fault header part: common header + alloc_hint, p_cont_id, opnum/cancel (§2.8). */
export const CALL_HEADER_LENGTH = 24;
/** A fault is always exactly this long (§2.9). */
export const FAULT_PDU_LENGTH = 32;
/** bind_ack never advertises fragments below the DCE/RPC minimum (§2.6). */
export const MIN_FRAG_SIZE = 1432;

/** An abstract syntax: interface UUID and version (§2.4). */
export interface SyntaxId {
  readonly uuid: string;
  readonly major: number;
  readonly minor: number;
}

/** A transfer syntax as it appears in bind items and results: UUID + u32 version. */
export interface TransferSyntaxId {
  readonly uuid: string;
  /** major in the low 16 bits, minor in the high 16 (§2.4). */
  readonly version: number;
}

/** The KMS interface, version 1.0 (§2.4, §3). */
export const KMS_INTERFACE: SyntaxId = Object.freeze({ uuid: '51c82175-844e-4750-b0d8-ec255555bc06', major: 1, minor: 0 });
export const NDR32_SYNTAX: TransferSyntaxId = Object.freeze({ uuid: '8a885d04-1ceb-11c9-9fe8-08002b104860', version: 2 });
export const NDR64_SYNTAX: TransferSyntaxId = Object.freeze({ uuid: '71710533-beba-4937-8319-b5dbef9ccc36', version: 1 });
/** A rejected item's result names this (all-zero UUID, version 0): checking clients insist (§2.5). */
export const NULL_SYNTAX: TransferSyntaxId = Object.freeze({ uuid: '00000000-0000-0000-0000-000000000000', version: 0 });

/**
 * Bind-time feature negotiation ([MS-RPCE] §3.3.1.5.3): recognised by its first 8 wire bytes, i.e.
 * the first three GUID groups; the last 8 bytes are a feature bitmask, not part of the identity.
 */
export const BTFN_UUID_PREFIX = '6cb71c2c-9812-4540-';
const BTFN_VERSION = 1;
/** Features this host supports: 0x01 security-context multiplexing, 0x02 keep connection on orphan. */
export const BTFN_SUPPORTED_FEATURES = 0x0003;

/** The BTFN transfer syntax a client offers, with the given feature bitmask (first byte). */
export function btfnSyntax(features: number): TransferSyntaxId {
  const hex = (features & 0xff).toString(16).padStart(2, '0');
  return { uuid: `${BTFN_UUID_PREFIX}${hex}00-000000000000`, version: BTFN_VERSION };
}

/** p_cont_def_result_t plus [MS-RPCE] negotiate_ack (§2.5). */
export const CONTEXT_RESULT = Object.freeze({
  ACCEPTANCE: 0,
  USER_REJECTION: 1,
  PROVIDER_REJECTION: 2,
  NEGOTIATE_ACK: 3, // BTFN only; the reason field then carries the acknowledged feature bits
} as const);

/** p_provider_reason_t (§2.5). */
export const PROVIDER_REASON = Object.freeze({
  NOT_SPECIFIED: 0,
  ABSTRACT_SYNTAX_NOT_SUPPORTED: 1,
  TRANSFER_SYNTAXES_NOT_SUPPORTED: 2,
  LOCAL_LIMIT_EXCEEDED: 3,
} as const);

/** The only operation of the KMS interface (§3). */
export const OPNUM_REQUEST_ACTIVATION = 0;
