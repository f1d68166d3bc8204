// The per-connection DCE/RPC state machine of the host (PROTOCOL.md §2.11): whole PDUs in, at most
// one reply out per PDU, plus whether to close. Pure: the server owns the socket, timers and logs.
import { KmsError, ProtocolError, specOf, type ErrorCode } from '../../errors';
import { Writer } from '../writer';
import {
  decodeRequestStub,
  encodeRefusalStub,
  encodeSuccessStub,
  successStubLength,
  writeSuccessStub,
  type TransferSyntax,
} from '../ndr/stub';
import { decodeBind, encodeBindAck, encodeBindNak, negotiateFragSize, type BindPdu } from './bind';
import {
  CALL_HEADER_LENGTH,
  DREP_LITTLE_ENDIAN_ASCII_IEEE,
  OPNUM_REQUEST_ACTIVATION,
  PFC,
  PTYPE,
  REPLY_FLAGS,
  RPC_VERSION,
  RPC_VERSION_MINOR,
} from './constants';
import { ackFor, type FirstBindAnswer, type FirstBindCache } from './first-bind-cache';
import { decodeWholePduHeader, finishPdu, type CommonHeader } from './header';
import { ContextTable, judgePresentationContexts, LIMIT_REJECTION } from './presentation-context';
import { decodeRequest, encodeFault, encodeResponseFragments, writeResponseHead, type RequestPdu } from './request';

export interface SessionOptions {
  readonly ndr64: boolean;
  readonly btfn: boolean;
  /** Reassembly limit for a fragmented request's stub (§2.10). */
  readonly maxStubBytes: number;
  /** The listening port as decimal text, sent as bind_ack's secondary address (§2.6, C35). */
  readonly secondaryAddress: string;
  /** A nonzero u32, called once per association (at the first bind_ack). */
  readonly newAssocGroupId: () => number;
  /** The listener's remembered first binds, shared by its connections; absent: every bind is decoded in full. */
  readonly firstBinds?: FirstBindCache;
  /** The framer's limit (kms.maxPduBytes): bind_ack lowers the client's frag sizes to it (§2.6). Absent: echo them. */
  readonly maxPduBytes?: number;
  /** Accepted presentation contexts one connection may hold (kms.maxContextsPerConnection). */
  readonly maxContexts?: number;
}

/** Where bind_ack carries max_recv_frag (§2.6). */
const MAX_RECV_FRAG_OFFSET = 18;

/** Without a configured limit: far above the two contexts a Windows client uses. */
const DEFAULT_MAX_CONTEXTS = 16;

export interface KmsCall {
  readonly syntax: TransferSyntax;
  readonly callId: number;
  readonly contextId: number;
}

/**
 * Gets exactly the requestSize KMS bytes, a view of the received PDU that is valid during the call
 * only (a handler that keeps any of it copies it); answers with a KMS response or a refusal HRESULT.
 */
export type KmsCallHandler = (kmsMessage: Buffer, call: KmsCall) => { response: Buffer } | { hresult: number };

export interface SessionResult {
  /** PDU to send: bind_ack, bind_nak, alter_context_resp, response or fault. */
  readonly reply?: Buffer;
  /** Close the connection after sending `reply` (if any). */
  readonly close: boolean;
  /** Why a fault, bind_nak or close happened (one log line); also a refusal the handler threw. */
  readonly error?: KmsError;
  /**
   * The PDU moved the association forward: a bind/alter_context that added a context, or a request
   * answered with a response. Only these keep a connection from counting as idle; a fault, a
   * bind_nak, co_cancel or orphaned do not.
   */
  readonly progress?: true;
}

interface PendingCall {
  readonly callId: number;
  readonly contextId: number;
  readonly opnum: number;
  readonly syntax: TransferSyntax;
  /**
   * The stub so far, in one buffer grown by doubling up to maxStubBytes: what a call holds is
   * bounded by its bytes, not by its number of fragments (empty ones included).
   */
  stub: Buffer;
  size: number;
}

const CONTINUE: SessionResult = Object.freeze({ close: false });

export class RpcSession {
  private bound = false;
  private assocGroupId = 0;
  /** The client's max_recv_frag as bind_ack answered it: no reply may exceed it (§2.10). */
  private maxRecvFrag = 0xffff;
  private readonly contexts: ContextTable;
  /** A request arriving in fragments, until its last one (§2.10). */
  private pending: PendingCall | undefined;
  /** A fragmented call already answered with a fault: its remaining fragments get no reply. */
  private discardCallId: number | undefined;

  constructor(
    private readonly options: SessionOptions,
    private readonly handler: KmsCallHandler,
  ) {
    this.contexts = new ContextTable(options.maxContexts ?? DEFAULT_MAX_CONTEXTS);
  }

  /** Handles one whole PDU (as the FragmentAssembler cuts them). Never throws for bad input. */
  handlePdu(pdu: Buffer): SessionResult {
    let header: CommonHeader;
    try {
      header = decodeWholePduHeader(pdu);
    } catch (err) {
      return { close: true, error: asKmsError(err) };
    }
    switch (header.ptype) {
      case PTYPE.BIND:
      case PTYPE.ALTER_CONTEXT:
        return this.onBind(pdu, header);
      case PTYPE.REQUEST:
        return this.onRequest(pdu, header);
      case PTYPE.CO_CANCEL:
      case PTYPE.ORPHANED:
        // §2.2: no reply. A KMS call is answered as soon as it is complete, so there is nothing
        // to cancel. §2.1: a PDU of another RPC version that cannot be refused is closed on.
        if (!isVersion50(header)) return closeWith('KMS_ERR_PDU_RPC_VERSION', header);
        return CONTINUE;
      case PTYPE.AUTH3:
      case PTYPE.SHUTDOWN:
        return closeWith('KMS_ERR_PDU_PTYPE_CLOSE', header);
      default:
        // Unknown types and the host's own reply types (response, bind_ack …) from a client (§2.2).
        return closeWith('KMS_ERR_PDU_PTYPE_UNKNOWN', header);
    }
  }

  private onBind(pdu: Buffer, header: CommonHeader): SessionResult {
    const isAlter = header.ptype === PTYPE.ALTER_CONTEXT;
    // §2.1: version 4, drep 0, auth 8 — the bind_nak reasons come from the error registry.
    const problem = bindHeaderProblem(header);
    if (problem) return nak(header, problem);
    // §2.11: a second bind on a bound connection is refused and the association kept (U7).
    if (!isAlter && this.bound) return nak(header, 'KMS_ERR_BIND_SECOND');
    const limit = this.options.maxPduBytes ?? 0xffff;
    const firstBind = !isAlter && !this.bound;
    const remembered = firstBind ? this.options.firstBinds?.lookup(pdu, this.options) : undefined;
    if (remembered) return this.answerRemembered(pdu, remembered, limit);
    let bind: BindPdu;
    try {
      bind = decodeBind(pdu);
    } catch (err) {
      return nak(header, 'KMS_ERR_BIND_MALFORMED', err);
    }
    const judgement = judgePresentationContexts(bind.contexts, this.options);
    const maxRecvFrag = negotiateFragSize(bind.maxRecvFrag, limit);
    // §2.11: an alter_context before any bind opens the association like a bind would (U7).
    if (!this.bound) {
      this.bound = true;
      this.assocGroupId = this.options.newAssocGroupId() >>> 0;
      this.maxRecvFrag = maxRecvFrag;
    }
    let results = judgement.results;
    let progress = false;
    let overLimit: number[] | undefined;
    for (const c of judgement.accepted) {
      const change = this.contexts.add(c);
      if (change === 'full') (overLimit ??= []).push(c.item);
      // Only a new context is progress: re-offering a known id with the other syntax changes the
      // table but moves nothing forward, and flipping it forever must not defeat the idle timeout.
      else if (change === 'added') progress = true;
    }
    if (overLimit) {
      // Items past the limit are answered (2, 3) local_limit_exceeded (§2.5) and the connection
      // closes after the reply: no KMS client offers more than two contexts.
      const over = new Set(overLimit);
      results = results.map((r, i) => (over.has(i) ? LIMIT_REJECTION : r));
    }
    // §2.6: frag sizes echoed or lowered to what the framer accepts; bind_ack echoes pfc_flags, so
    // CONC_MPX comes back exactly when asked for; alter_context_resp has 0x03 and no sec_addr.
    const reply = encodeBindAck({
      ptype: isAlter ? PTYPE.ALTER_CONTEXT_RESP : PTYPE.BIND_ACK,
      callId: header.callId,
      flags: isAlter ? REPLY_FLAGS.SINGLE_FRAGMENT : header.flags,
      maxXmitFrag: negotiateFragSize(bind.maxXmitFrag, limit),
      maxRecvFrag,
      assocGroupId: this.assocGroupId,
      secondaryAddress: isAlter ? '' : this.options.secondaryAddress,
      results,
    });
    if (firstBind && !overLimit) this.options.firstBinds?.remember(pdu, this.options, judgement.accepted, reply);
    if (overLimit) {
      const error = new ProtocolError('KMS_ERR_RPC_CONTEXT_LIMIT', undefined, {
        ...headerDetails(header),
        limit: this.contexts.limit,
        refusedItems: overLimit.length,
      });
      return { reply, close: true, error };
    }
    return progress ? { reply, close: false, progress: true } : { reply, close: false };
  }

  /** A first bind answered before under the same policy: same contexts, same bind_ack but for its own fields. */
  private answerRemembered(pdu: Buffer, remembered: FirstBindAnswer, limit: number): SessionResult {
    this.bound = true;
    this.assocGroupId = this.options.newAssocGroupId() >>> 0;
    let progress = false;
    // The table is empty and the offer was judged without an item over the limit, so every add succeeds.
    for (const c of remembered.accepted) if (this.contexts.add(c) === 'added') progress = true;
    const reply = ackFor(remembered, pdu, limit, this.assocGroupId);
    this.maxRecvFrag = reply.readUInt16LE(MAX_RECV_FRAG_OFFSET);
    return progress ? { reply, close: false, progress: true } : { reply, close: false };
  }

  private onRequest(pdu: Buffer, header: CommonHeader): SessionResult {
    const first = (header.flags & PFC.FIRST_FRAG) !== 0;
    const last = (header.flags & PFC.LAST_FRAG) !== 0;
    if (!first && this.discardCallId === header.callId) {
      if (last) this.discardCallId = undefined;
      return CONTINUE;
    }
    if (first) this.discardCallId = undefined;

    let req: RequestPdu | undefined;
    let truncation: unknown;
    try {
      req = decodeRequest(pdu, header);
    } catch (err) {
      truncation = err;
    }
    const contextId = req?.contextId ?? 0;
    // §2.1 / C39: the header rules come before everything else of §2.8.
    const problem = requestHeaderProblem(header);
    if (problem) return this.fault(header, contextId, problem);
    if (!req) return this.fault(header, 0, 'KMS_ERR_RPC_REQUEST_TRUNCATED', truncation);

    if (first) {
      if (this.pending) {
        const stale = this.pending.callId;
        this.pending = undefined;
        return this.fault(header, contextId, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE', undefined, { pendingCallId: stale });
      }
      // §2.8 checks in order: context known (before any bind nothing is), then opnum.
      const syntax = this.contexts.get(req.contextId);
      if (syntax === undefined) return this.fault(header, contextId, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', undefined, { bound: this.bound });
      if (req.opnum !== OPNUM_REQUEST_ACTIVATION)
        return this.fault(header, contextId, 'KMS_ERR_RPC_OPNUM', undefined, { opnum: req.opnum });
      if (last) return this.serve(req.stub, header.callId, req.contextId, syntax);
      if (req.stub.length > this.options.maxStubBytes) return this.fault(header, contextId, 'KMS_ERR_RPC_FRAGMENT_TOO_LARGE');
      this.pending = {
        callId: header.callId,
        contextId: req.contextId,
        opnum: req.opnum,
        syntax,
        stub: Buffer.from(req.stub),
        size: req.stub.length,
      };
      return CONTINUE;
    }

    // §2.10: a continuation must belong to the call in progress.
    const call = this.pending;
    if (!call) return this.fault(header, contextId, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE');
    if (call.callId !== header.callId || call.contextId !== req.contextId || call.opnum !== req.opnum) {
      this.pending = undefined;
      return this.fault(header, contextId, 'KMS_ERR_RPC_FRAGMENT_SEQUENCE', undefined, { pendingCallId: call.callId });
    }
    if (call.size + req.stub.length > this.options.maxStubBytes) {
      this.pending = undefined;
      return this.fault(header, contextId, 'KMS_ERR_RPC_FRAGMENT_TOO_LARGE', undefined, { size: call.size + req.stub.length });
    }
    appendStub(call, req.stub, this.options.maxStubBytes);
    if (!last) return CONTINUE;
    this.pending = undefined;
    return this.serve(call.stub.subarray(0, call.size), call.callId, call.contextId, call.syntax);
  }

  private serve(stub: Buffer, callId: number, contextId: number, syntax: TransferSyntax): SessionResult {
    let kmsMessage: Buffer;
    try {
      kmsMessage = decodeRequestStub(stub, syntax);
    } catch (err) {
      return this.faultFor(callId, contextId, true, 'KMS_ERR_RPC_STUB_MALFORMED', err);
    }
    let outcome: { response: Buffer } | { hresult: number };
    let error: KmsError | undefined;
    try {
      outcome = this.handler(kmsMessage, { syntax, callId, contextId });
    } catch (err) {
      // A refusal the host raised as an error still travels as an HRESULT (§3.4); anything else
      // is a bug in the handler, not bad input, and is not hidden here.
      if (!(err instanceof KmsError) || err.spec.action !== 'refuse' || err.spec.hresult === undefined) throw err;
      outcome = { hresult: err.spec.hresult };
      error = err;
    }
    const reply =
      'response' in outcome
        ? successResponse(callId, contextId, outcome.response, syntax, this.maxRecvFrag)
        : encodeResponseFragments(callId, contextId, encodeRefusalStub(outcome.hresult, syntax), this.maxRecvFrag);
    return error ? { reply, close: false, error, progress: true } : { reply, close: false, progress: true };
  }

  private fault(
    header: CommonHeader,
    contextId: number,
    code: ErrorCode,
    cause?: unknown,
    details: Record<string, unknown> = {},
  ): SessionResult {
    return this.faultFor(header.callId, contextId, (header.flags & PFC.LAST_FRAG) !== 0, code, cause, details);
  }

  /**
   * §2.9: a fault echoing the call_id and p_cont_id. It ends the call: a fragmented call in progress
   * with this call_id is forgotten, and the rest of a faulted call is dropped.
   */
  private faultFor(
    callId: number,
    contextId: number,
    lastFragment: boolean,
    code: ErrorCode,
    cause?: unknown,
    details: Record<string, unknown> = {},
  ): SessionResult {
    if (!lastFragment) this.discardCallId = callId;
    if (this.pending?.callId === callId) this.pending = undefined;
    const status = specOf(code).rpcFault;
    if (status === undefined) throw new TypeError(`${code} has no RPC fault status`); // registry bug
    const error =
      cause instanceof KmsError && cause.code === code
        ? cause
        : new ProtocolError(code, messageOf(cause), { callId, contextId, ...details });
    return { reply: encodeFault(callId, contextId, status), close: false, error };
  }
}

/** Copies a fragment's stub bytes after the call's; the caller has checked the sum against `limit`. */
function appendStub(call: PendingCall, bytes: Buffer, limit: number): void {
  const size = call.size + bytes.length;
  if (size > call.stub.length) {
    const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(size, call.stub.length * 2)));
    call.stub.copy(grown, 0, 0, call.size);
    call.stub = grown;
  }
  bytes.copy(call.stub, call.size);
  call.size = size;
}

function isVersion50(h: CommonHeader): boolean {
  return h.rpcVersion === RPC_VERSION && h.rpcVersionMinor === RPC_VERSION_MINOR;
}

function bindHeaderProblem(h: CommonHeader): ErrorCode | undefined {
  if (!isVersion50(h)) return 'KMS_ERR_PDU_RPC_VERSION';
  if (h.drep !== DREP_LITTLE_ENDIAN_ASCII_IEEE) return 'KMS_ERR_PDU_DREP';
  if (h.authLength !== 0) return 'KMS_ERR_PDU_AUTH';
  return undefined;
}

function requestHeaderProblem(h: CommonHeader): ErrorCode | undefined {
  if (!isVersion50(h) || h.authLength !== 0) return 'KMS_ERR_RPC_BAD_HEADER';
  if (h.drep !== DREP_LITTLE_ENDIAN_ASCII_IEEE) return 'KMS_ERR_PDU_DREP';
  return undefined;
}

function nak(header: CommonHeader, code: ErrorCode, cause?: unknown): SessionResult {
  const reason = specOf(code).nakReason;
  if (reason === undefined) throw new TypeError(`${code} has no bind_nak reason`); // registry bug
  const error = cause instanceof KmsError && cause.code === code ? cause : new ProtocolError(code, undefined, headerDetails(header));
  // §2.11: the connection stays as it was (OPEN, or BOUND after a second bind).
  return { reply: encodeBindNak(header.callId, reason), close: false, error };
}

function closeWith(code: ErrorCode, header: CommonHeader): SessionResult {
  return { close: true, error: new ProtocolError(code, undefined, headerDetails(header)) };
}

function headerDetails(h: CommonHeader): Record<string, unknown> {
  return { ptype: h.ptype, callId: h.callId, rpcVersion: `${h.rpcVersion}.${h.rpcVersionMinor}`, drep: h.drep, authLength: h.authLength };
}

function asKmsError(err: unknown): KmsError {
  return err instanceof KmsError ? err : new ProtocolError('KMS_ERR_PDU_TRUNCATED', messageOf(err));
}

function messageOf(err: unknown): string | undefined {
  return err instanceof Error ? err.message : undefined;
}

/** A served call's response: header and stub written into one buffer when it fits the client's max_recv_frag. */
function successResponse(callId: number, contextId: number, response: Buffer, syntax: TransferSyntax, maxRecvFrag: number): Buffer {
  const stubLength = successStubLength(response.length, syntax);
  if (CALL_HEADER_LENGTH + stubLength > maxRecvFrag) {
    return encodeResponseFragments(callId, contextId, encodeSuccessStub(response, syntax), maxRecvFrag);
  }
  const w = new Writer(CALL_HEADER_LENGTH + stubLength);
  const at = writeResponseHead(w, callId, contextId, stubLength);
  writeSuccessStub(w, response, syntax);
  return finishPdu(w, at);
}
