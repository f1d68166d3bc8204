// A DCE/RPC client connection that binds and calls like a Windows KMS client (PROTOCOL.md §2.5
// "What a current Windows client does"): bind offering NDR32, NDR64 and BTFN; when the host
// rejects NDR32 because it took NDR64, an alter_context for NDR32; the first request on NDR32 and
// later ones on NDR64. Every reply is checked the way such a client checks it (§2.3, §2.6, §3.3).
import net from 'node:net';
import { KmsError, ProtocolError } from '../errors';
import { decodeBindAck, decodeBindNak, encodeBind, type BindAckPdu } from '../protocol/rpc/bind';
import {
  BTFN_SUPPORTED_FEATURES,
  CONTEXT_RESULT,
  KMS_INTERFACE,
  NDR32_SYNTAX,
  NDR64_SYNTAX,
  OPNUM_REQUEST_ACTIVATION,
  PFC,
  PTYPE,
  btfnSyntax,
} from '../protocol/rpc/constants';
import { FragmentAssembler } from '../protocol/rpc/fragment-assembler';
import { decodeHeader } from '../protocol/rpc/header';
import { decodeFaultPdu, decodeResponsePdu, encodeRequestPdu } from '../protocol/rpc/request';
import { decodeResponseStub, encodeRequestStub, type TransferSyntax } from '../protocol/ndr/stub';

export interface RpcClientOptions {
  readonly ndr64: boolean;
  readonly btfn: boolean;
  /** Windows clients send 0x13 (FIRST|LAST|CONC_MPX); false leaves CONC_MPX out. */
  readonly multiplex?: boolean;
  readonly timeoutMs: number;
}

export interface CallResult {
  readonly hresult: number;
  readonly response?: Buffer;
  readonly syntax: TransferSyntax;
  /** Deviations a checking client only warns about. */
  readonly warnings: readonly string[];
}

const WINDOWS_MAX_FRAG = 5840;
const MAX_REPLY_PDU_BYTES = 4096;

export class RpcClient {
  private readonly assembler = new FragmentAssembler(MAX_REPLY_PDU_BYTES);
  private readonly queue: Buffer[] = [];
  private waiter: { resolve: (pdu: Buffer) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;
  private callId = 2; // Windows clients start at 2 (§2.1)
  private ndr32Context: number | undefined;
  private ndr64Context: number | undefined;
  private requestsSent = 0;
  readonly warnings: string[] = [];

  private constructor(
    private readonly socket: net.Socket,
    private readonly options: RpcClientOptions,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const pdu of this.assembler.push(chunk)) this.deliver(pdu);
      } catch (err) {
        this.fail(new KmsError('KMS_ERR_CLIENT_PROTOCOL', `the host sent a broken PDU: ${(err as Error).message}`));
      }
    });
    // A reset or a failed write (ECONNRESET, EPIPE) is the host breaking the exchange, not a bug
    // of ours: it ends as one coded line like every other broken exchange, never a stack trace.
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(
        new KmsError('KMS_ERR_CLIENT_PROTOCOL', `the connection to the host failed: ${err.code ?? err.message}`, { errno: err.code }),
      ),
    );
    socket.on('close', () => this.fail(new KmsError('KMS_ERR_CLIENT_PROTOCOL', 'the host closed the connection')));
  }

  /** Connects; failures are KMS_ERR_CLIENT_CONNECT (what a Windows client reports as 0x800706BA). */
  static connect(host: string, port: number, options: RpcClientOptions): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new KmsError('KMS_ERR_CLIENT_CONNECT', `no TCP connection to ${host}:${port} within ${options.timeoutMs} ms`, { host, port }),
        );
      }, options.timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RpcClient(socket, options));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new KmsError('KMS_ERR_CLIENT_CONNECT', `cannot connect to ${host}:${port}: ${err.code ?? err.message}`, {
            host,
            port,
            errno: err.code,
          }),
        );
      });
    });
  }

  private deliver(pdu: Buffer): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(pdu);
    } else {
      this.queue.push(pdu);
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
  }

  private nextPdu(): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new KmsError('KMS_ERR_CLIENT_TIMEOUT', `no answer within ${this.options.timeoutMs} ms`));
      }, this.options.timeoutMs);
      this.waiter = {
        resolve: (pdu) => {
          clearTimeout(timer);
          resolve(pdu);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  private async exchange(pdu: Buffer): Promise<Buffer> {
    if (this.failure) throw this.failure;
    this.socket.write(pdu);
    return this.nextPdu();
  }

  /** bind (and alter_context when needed) like a Windows client. */
  async bind(): Promise<void> {
    const { ndr64, btfn } = this.options;
    const contexts = [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }];
    if (ndr64) contexts.push({ contextId: 1, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR64_SYNTAX] });
    if (btfn)
      contexts.push({ contextId: contexts.length, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [btfnSyntax(BTFN_SUPPORTED_FEATURES)] });
    const flags = PFC.FIRST_FRAG | PFC.LAST_FRAG | (this.options.multiplex === false ? 0 : PFC.CONC_MPX);
    const callId = this.callId;
    const reply = await this.exchange(
      encodeBind({
        ptype: PTYPE.BIND,
        callId,
        flags,
        maxXmitFrag: WINDOWS_MAX_FRAG,
        maxRecvFrag: WINDOWS_MAX_FRAG,
        assocGroupId: 0,
        contexts,
      }),
    );
    const ack = fromHost(() => this.checkBindReply(reply, PTYPE.BIND_ACK, callId, contexts.length));
    if ((ack.header.flags & PFC.CONC_MPX) !== (flags & PFC.CONC_MPX)) this.warnings.push('bind_ack does not echo PFC_CONC_MPX');
    if (ack.assocGroupId === 0) this.warnings.push('bind_ack assoc_group_id is 0');
    ack.results.forEach((r, i) => {
      const offered = contexts[i]!;
      const syntax = offered.transferSyntaxes[0]!;
      if (r.result === CONTEXT_RESULT.ACCEPTANCE) {
        if (r.reason !== 0) this.warnings.push(`context ${offered.contextId} accepted with reason ${r.reason}`);
        if (syntax.uuid === NDR32_SYNTAX.uuid) this.ndr32Context = offered.contextId;
        if (syntax.uuid === NDR64_SYNTAX.uuid) this.ndr64Context = offered.contextId;
      }
    });
    if (this.ndr32Context === undefined && this.ndr64Context !== undefined) {
      // The host took NDR64 and therefore refused NDR32 in the same PDU (§2.5): ask again alone.
      const alterCallId = this.callId;
      const alter = await this.exchange(
        encodeBind({
          ptype: PTYPE.ALTER_CONTEXT,
          callId: alterCallId,
          flags,
          maxXmitFrag: WINDOWS_MAX_FRAG,
          maxRecvFrag: WINDOWS_MAX_FRAG,
          assocGroupId: ack.assocGroupId,
          contexts: [contexts[0]!],
        }),
      );
      const resp = fromHost(() => this.checkBindReply(alter, PTYPE.ALTER_CONTEXT_RESP, alterCallId, 1));
      if (resp.assocGroupId !== ack.assocGroupId) this.warnings.push('alter_context_resp names another association group');
      if (resp.results[0]?.result === CONTEXT_RESULT.ACCEPTANCE) this.ndr32Context = 0;
    }
    if (this.ndr32Context === undefined && this.ndr64Context === undefined) {
      throw new KmsError('KMS_ERR_CLIENT_BIND_REJECTED', 'the host accepted neither NDR32 nor NDR64 for the KMS interface', {
        results: ack.results.map((r) => `${r.result}/${r.reason}`),
      });
    }
  }

  private checkBindReply(pdu: Buffer, expected: number, callId: number, nItems: number): BindAckPdu {
    const header = decodeHeader(pdu);
    if (header.ptype === PTYPE.BIND_NAK) {
      const nak = decodeBindNak(pdu);
      throw new KmsError('KMS_ERR_CLIENT_BIND_REJECTED', `the host answered bind_nak (reason ${nak.reason})`, { reason: nak.reason });
    }
    if (header.ptype !== expected) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `expected PTYPE ${expected}, got ${header.ptype}`);
    if (header.callId !== callId) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `reply call_id ${header.callId} differs from ${callId}`);
    const ack = decodeBindAck(pdu);
    if (ack.results.length !== nItems)
      throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `${ack.results.length} context results for ${nItems} items`);
    return ack;
  }

  /** One RequestActivation call. The first call uses NDR32 when both were accepted (§2.5). */
  async call(kmsMessage: Buffer): Promise<CallResult> {
    const useNdr32 = this.ndr64Context === undefined || (this.requestsSent === 0 && this.ndr32Context !== undefined);
    const syntax: TransferSyntax = useNdr32 ? 'ndr32' : 'ndr64';
    const contextId = (useNdr32 ? this.ndr32Context : this.ndr64Context)!;
    if (this.requestsSent > 0) this.callId++;
    this.requestsSent++;
    const callId = this.callId;
    const stub = encodeRequestStub(kmsMessage, syntax);
    const pdu = await this.exchange(encodeRequestPdu({ callId, contextId, opnum: OPNUM_REQUEST_ACTIVATION, stub }));
    return fromHost(() => this.checkResponse(pdu, callId, contextId, syntax));
  }

  private checkResponse(pdu: Buffer, callId: number, contextId: number, syntax: TransferSyntax): CallResult {
    const header = decodeHeader(pdu);
    if (header.ptype === PTYPE.FAULT) {
      const fault = decodeFaultPdu(pdu);
      throw new KmsError('KMS_ERR_CLIENT_RPC_FAULT', `the host answered with RPC fault 0x${fault.status.toString(16).padStart(8, '0')}`, {
        status: fault.status,
      });
    }
    if (header.ptype !== PTYPE.RESPONSE)
      throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `expected a response PDU, got PTYPE ${header.ptype}`);
    const warnings: string[] = [];
    if ((header.flags & (PFC.FIRST_FRAG | PFC.LAST_FRAG)) !== (PFC.FIRST_FRAG | PFC.LAST_FRAG)) {
      throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', 'response is not a single fragment');
    }
    if (header.flags & PFC.CONC_MPX) warnings.push('response sets PFC_CONC_MPX');
    if (header.callId !== callId) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `response call_id ${header.callId} differs from ${callId}`);
    if (header.authLength !== 0) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', 'response carries authentication data');
    const response = decodeResponsePdu(pdu);
    if (response.cancelCount !== 0) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `cancel_count ${response.cancelCount}`);
    if (response.contextId !== contextId)
      throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `response p_cont_id ${response.contextId} differs from ${contextId}`);
    const stub = decodeResponseStub(response.stub, syntax, response.allocHint);
    warnings.push(...stub.warnings);
    return { hresult: stub.hresult, syntax, warnings, ...(stub.response ? { response: stub.response } : {}) };
  }

  close(): void {
    this.fail(new KmsError('KMS_ERR_CLIENT_PROTOCOL', 'closed by the client'));
    this.socket.end();
    this.socket.destroy();
  }
}

/**
 * Runs a decode of the host's reply. The codecs' errors speak from the host's side ("the client
 * sent a broken packet"); here the broken packet is the host's, so it is said that way, with the
 * codec's code kept in the details.
 */
function fromHost<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', `the host sent a broken PDU: ${err.message}`, { ...err.details, pduCode: err.code });
  }
}
