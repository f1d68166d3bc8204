// One client TCP connection: bytes in → FragmentAssembler → RpcSession → replies out. Everything a
// client can do wrong ends here as a fault, a bind_nak or a close of this socket only, logged once
// with the peer address and a stable code (PROTOCOL.md §2.11: nothing received may stop the host
// serving other connections).
import type net from 'node:net';
import { randomInt } from 'node:crypto';
import { FragmentAssembler } from '../protocol/rpc/fragment-assembler';
import { RpcSession, type KmsCallHandler } from '../protocol/rpc/session';
import { KmsError } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import type { ServerLog, KmsServerSettings, ActivationHandler } from './types';
import type { ReplyGate } from './reply-gate';

/** Above this much unsent reply data the connection stops reading until the peer catches up. */
const MAX_PENDING_WRITE_BYTES = 256 * 1024;

export interface ConnectionContext {
  readonly settings: () => KmsServerSettings;
  readonly handler: () => ActivationHandler;
  readonly log: ServerLog;
  readonly reportError: (err: KmsError, peer: string) => void;
  readonly onOutcome: (outcome: ActivationOutcome) => void;
  /** Replies and closes go through the gate, which holds them until the store has committed. */
  readonly gate: ReplyGate;
}

export class KmsConnection {
  readonly peer: string;
  private readonly clientAddress: string;
  private readonly assembler: FragmentAssembler;
  private readonly session: RpcSession;
  private readonly idleTimer: NodeJS.Timeout;
  private closing = false;
  private shutdownRequested = false;

  constructor(
    readonly socket: net.Socket,
    private readonly ctx: ConnectionContext,
  ) {
    const settings = ctx.settings();
    this.clientAddress = socket.remoteAddress ?? '';
    this.peer = socket.remoteFamily === 'IPv6' ? `[${this.clientAddress}]:${socket.remotePort}` : `${this.clientAddress}:${socket.remotePort}`;
    this.assembler = new FragmentAssembler(settings.maxPduBytes);
    const onCall: KmsCallHandler = (message) => {
      const result = ctx.handler()(message, this.clientAddress);
      ctx.onOutcome(result.outcome);
      return result.response ? { response: result.response } : { hresult: result.hresult };
    };
    this.session = new RpcSession(
      {
        ndr64: settings.ndr64,
        btfn: settings.btfn,
        maxStubBytes: settings.maxStubBytes,
        maxPduBytes: settings.maxPduBytes,
        secondaryAddress: String(socket.localPort ?? ''),
        newAssocGroupId: () => randomInt(1, 0xffffffff),
      },
      onCall,
    );
    // Idle means "no complete PDU for idleTimeout": a client dripping one byte a second never
    // completes one, so it cannot hold a connection open forever (C33, C36).
    this.idleTimer = setTimeout(() => this.onIdle(), settings.idleTimeoutMs);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => socket.resume());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Resets and broken pipes are what clients do when they go away; not worth a warning.
      ctx.log.debug({ peer: this.peer, err: err.code ?? err.message }, 'client connection error');
    });
    socket.on('close', () => clearTimeout(this.idleTimer));
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    let pdus: Buffer[];
    try {
      pdus = this.assembler.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (pdus.length === 0) return;
    this.idleTimer.refresh();
    const socket = this.socket;
    const gate = this.ctx.gate;
    try {
      for (const pdu of pdus) {
        const result = this.session.handlePdu(pdu);
        if (result.error) this.ctx.reportError(result.error, this.peer);
        const reply = result.reply;
        if (reply) gate.run(() => socket.destroyed || socket.write(reply));
        if (result.close) {
          this.end();
          break;
        }
      }
    } catch (err) {
      this.fail(err);
    }
    if (socket.writableLength > MAX_PENDING_WRITE_BYTES) socket.pause();
    if (this.shutdownRequested && !this.midPdu) this.end();
  }

  private fail(err: unknown): void {
    if (err instanceof KmsError) {
      this.ctx.reportError(err, this.peer);
    } else {
      // A bug, not a client error: keep serving everyone else, but say so loudly.
      this.ctx.log.error({ peer: this.peer, err }, 'internal error while serving a client; connection closed');
    }
    this.closing = true;
    this.socket.destroy();
  }

  private onIdle(): void {
    if (this.midPdu) {
      // Part of a PDU and then nothing (or a drip): worth a warning, unlike a quiet keep-alive.
      this.ctx.reportError(new KmsError('KMS_ERR_CONN_IDLE', `closed: ${this.assembler.buffered} bytes of an unfinished PDU and no complete PDU for the idle timeout`, { partialBytes: this.assembler.buffered }), this.peer);
    } else {
      this.ctx.log.debug({ peer: this.peer, code: 'KMS_ERR_CONN_IDLE' }, 'idle connection closed');
    }
    this.closing = true;
    this.socket.destroy();
  }

  /** Graceful close: replies already written are flushed first. */
  end(): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.idleTimer);
    // After the replies already queued behind the gate, never before them.
    this.ctx.gate.run(() => this.socket.end());
  }

  /** True while part of a PDU is buffered. */
  get midPdu(): boolean {
    return this.assembler.buffered > 0;
  }

  /** Shutdown: close now if between PDUs, else right after the PDU being received is answered. */
  requestShutdown(): void {
    this.shutdownRequested = true;
    if (!this.midPdu) this.end();
  }
}
