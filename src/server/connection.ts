// One client TCP connection: bytes in → FragmentAssembler → RpcSession → replies out. Everything a
// client can do wrong ends here as a fault, a bind_nak or a close of this socket only, logged once
// with the peer address and a stable code (PROTOCOL.md §2.11: nothing received may stop the host
// serving other connections). Every resource a connection holds is bounded: the PDU being
// reassembled (kms.maxPduBytes), a fragmented request (kms.maxStubBytes), presentation contexts
// (kms.maxContextsPerConnection), replies not yet sent (below), time without progress
// (kms.idleTimeoutSeconds) and time at all (kms.maxConnectionSeconds).
import type net from 'node:net';
import { randomInt } from 'node:crypto';
import { FragmentAssembler } from '../protocol/rpc/fragment-assembler';
import { RpcSession, type KmsCallHandler } from '../protocol/rpc/session';
import { PTYPE } from '../protocol/rpc/constants';
import { KmsError } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import type { FirstBindCache } from '../protocol/rpc/first-bind-cache';
import type { ServerLog, KmsServerSettings, ActivationHandler } from './types';
import type { ReplyGate } from './reply-gate';
import type { Slot } from './connection-table';
import { readIntoSharedBuffer } from './read-buffer';

/**
 * Above this much unsent reply data the connection stops reading until the peer catches up. A
 * client has at most a few replies of ≤ 344 bytes outstanding; one read (≤ 64 KiB) produces at
 * most about 1.5× its size in replies, so the backlog cannot pass BACKLOG_CLOSE_BYTES by reading.
 */
const BACKLOG_PAUSE_BYTES = 64 * 1024;
const BACKLOG_CLOSE_BYTES = 1024 * 1024;
/** A connection paused because its peer does not read is closed if it stays paused this long. */
const BACKLOG_STALL_MS = 2000;
/** After a graceful close, a peer that neither reads the rest nor closes is cut off after this. */
const CLOSE_GRACE_MS = 2000;
/**
 * PDUs handled in one turn of the event loop; the rest of a read waits for the next turn, with
 * reading paused so they stay in order. A real client sends one to three per read, but a 64 KiB
 * read of 24-byte PDUs is 2,730 of them, and every other client would wait for all of them.
 */
const MAX_PDUS_PER_TURN = 64;

/** Why the host closed a connection on its own, for the server's counters. */
export type LimitReason = 'idle' | 'lifetime' | 'backlog' | 'limit-contexts';

export interface ConnectionContext {
  readonly settings: KmsServerSettings;
  readonly handler: () => ActivationHandler;
  readonly log: ServerLog;
  readonly reportError: (err: KmsError, connection: KmsConnection) => void;
  readonly onOutcome: (outcome: ActivationOutcome) => void;
  /** The connection made progress (the server moves it to the back of the eviction order). */
  readonly onProgress: (connection: KmsConnection) => void;
  /** The connection hit one of its limits and is being closed. */
  readonly onLimit: (reason: LimitReason) => void;
  /** The socket closed (for whatever reason). */
  readonly onClose: (connection: KmsConnection) => void;
  /** Replies and closes go through the gate, which holds them until the store has committed. */
  readonly gate: ReplyGate;
  /** The listener's remembered first binds (protocol/rpc/first-bind-cache.ts). */
  readonly firstBinds: FirstBindCache;
}

export class KmsConnection implements Slot {
  readonly clientAddress: string;
  lastProgressAt: number;
  readonly openedAt: number;
  private readonly assembler: FragmentAssembler;
  private readonly session: RpcSession;
  private timer: NodeJS.Timeout;
  /** Reply bytes handed to the gate and not yet written to the socket. */
  private gated = 0;
  private paused = false;
  private pausedAt = 0;
  /** PDUs of a read left for the next turn (MAX_PDUS_PER_TURN); reading is paused meanwhile. */
  private deferred = false;
  /** The peer's FIN came while PDUs it sent before it were still deferred: honoured after them. */
  private endAfterDeferred = false;
  private closing = false;
  private shutdownRequested = false;
  /** The outcome of the call just handled, reported (log line, metrics) once its reply is on its way. */
  private unreported: ActivationOutcome | undefined;
  /** Replies and outcomes waiting at the gate, outbox[0, outboxLength); slots are cleared, never the array. */
  private readonly outbox: (Buffer | ActivationOutcome | undefined)[] = [];
  private outboxLength = 0;

  constructor(
    readonly socket: net.Socket,
    readonly group: string,
    /** The listening port as text (bind_ack's secondary address); known to the server, so no getsockname per connection. */
    listenPort: string,
    private readonly ctx: ConnectionContext,
  ) {
    const settings = ctx.settings;
    this.clientAddress = socket.remoteAddress ?? '';
    this.openedAt = this.lastProgressAt = Date.now();
    this.assembler = new FragmentAssembler(settings.maxPduBytes);
    const onCall: KmsCallHandler = (message) => {
      const result = ctx.handler()(message, this.clientAddress);
      this.unreported = result.outcome;
      return result.response ? { response: result.response } : { hresult: result.hresult };
    };
    this.session = new RpcSession(
      {
        ndr64: settings.ndr64,
        btfn: settings.btfn,
        maxStubBytes: settings.maxStubBytes,
        maxPduBytes: settings.maxPduBytes,
        maxContexts: settings.maxContextsPerConnection,
        secondaryAddress: listenPort,
        newAssocGroupId: () => randomInt(1, 0xffffffff),
        firstBinds: ctx.firstBinds,
      },
      onCall,
    );
    // One timer per connection, checking both the idle and the lifetime limit when it fires;
    // progress only records the time, so the hot path never touches a timer.
    this.timer = setTimeout(() => this.onTimer(), Math.min(settings.idleTimeoutMs, settings.maxConnectionLifetimeMs));
    const onChunk = (chunk: Buffer): void => this.onData(chunk);
    if (!readIntoSharedBuffer(socket, onChunk)) socket.on('data', onChunk);
    socket.on('drain', () => {
      if (this.paused && !this.closing) {
        this.paused = false;
        if (!this.deferred) socket.resume();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Resets and broken pipes are what clients do when they go away; not worth a warning.
      ctx.log.debug({ peer: this.peer, err: err.code ?? err.message }, 'client connection error');
    });
    socket.on('end', () => this.onPeerEnd());
    socket.on('close', () => {
      clearTimeout(this.timer);
      ctx.onClose(this);
    });
  }

  /** "address:port" ("[v6]:port") for log lines; built only when something is logged. */
  get peer(): string {
    const s = this.socket;
    return s.remoteFamily === 'IPv6' ? `[${this.clientAddress}]:${s.remotePort}` : `${this.clientAddress}:${s.remotePort}`;
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
    this.handle(pdus, 0);
  }

  /** Handles `pdus` from `from` on, at most MAX_PDUS_PER_TURN of them in this turn. */
  private handle(pdus: Buffer[], from: number): void {
    const to = Math.min(pdus.length, from + MAX_PDUS_PER_TURN);
    let progress = false;
    // Several replies of one read leave in one write, not a system call each.
    const corked = to - from > 1;
    if (corked) this.socket.cork();
    try {
      for (let i = from; i < to; i++) {
        const result = this.session.handlePdu(pdus[i]!);
        if (result.progress) progress = true;
        if (result.error) {
          this.ctx.reportError(result.error, this);
          if (result.error.code === 'KMS_ERR_RPC_CONTEXT_LIMIT') this.ctx.onLimit('limit-contexts');
        }
        if (result.reply) this.send(result.reply);
        this.reportOutcome();
        if (result.close) {
          this.end();
          break;
        }
      }
    } catch (err) {
      if (corked) this.socket.uncork();
      this.reportOutcome();
      this.fail(err);
      return;
    }
    if (corked) this.socket.uncork();
    if (progress) {
      this.lastProgressAt = Date.now();
      this.ctx.onProgress(this);
    }
    if (to < pdus.length && !this.closing) {
      this.deferred = true;
      this.socket.pause();
      setImmediate(() => this.resumeDeferred(pdus, to));
      this.checkBacklog();
      return;
    }
    // The stream lost its framing after the PDUs above: they are answered, then the close (§2.1).
    const broken = this.assembler.failed;
    if (broken && !this.closing) {
      this.ctx.reportError(broken, this);
      this.end();
    }
    this.checkBacklog();
    if (this.shutdownRequested && !this.midPdu) this.end();
  }

  private resumeDeferred(pdus: Buffer[], from: number): void {
    this.deferred = false;
    if (this.closing) return;
    this.handle(pdus, from);
    if (this.deferred || this.closing) return;
    if (this.endAfterDeferred) {
      this.onPeerEnd();
      return;
    }
    // Reading resumes once the read is done, unless the reply backlog paused it meanwhile.
    if (!this.paused) this.socket.resume();
  }

  private send(reply: Buffer): void {
    // Only a response carries something the store must hold first (an answered activation is on
    // disk). bind_ack, alter_context_resp, bind_nak and faults leave at once unless a reply of this
    // connection is still waiting at the gate, which keeps this connection's replies in order.
    if (this.gated === 0 && reply[2] !== PTYPE.RESPONSE) {
      this.socket.write(reply);
      return;
    }
    this.gated += reply.length;
    this.toOutbox(reply);
  }

  /**
   * The log line and the metrics of a call leave after its reply (through the gate, in order), so
   * a client waiting for its answer does not also wait for them.
   */
  private reportOutcome(): void {
    const outcome = this.unreported;
    if (outcome === undefined) return;
    this.unreported = undefined;
    this.toOutbox(outcome);
  }

  // Replies and outcomes wait at the gate in this connection's outbox, which the gate releases in
  // one go: one entry at the gate per connection and turn, not a closure per reply and outcome.
  private toOutbox(item: Buffer | ActivationOutcome): void {
    this.outbox[this.outboxLength++] = item;
    if (this.outboxLength === 1) this.ctx.gate.run(this.releaseOutbox);
  }

  private readonly releaseOutbox = (): void => {
    const items = this.outbox;
    const socket = this.socket;
    // By index, to the current length: whatever a write's events add meanwhile goes in this pass.
    for (let i = 0; i < this.outboxLength; i++) {
      const item = items[i]!;
      items[i] = undefined;
      if (item instanceof Uint8Array) {
        this.gated -= item.length;
        if (!socket.destroyed) socket.write(item);
      } else {
        this.report(item);
      }
    }
    this.outboxLength = 0;
  };

  /**
   * A reporter that throws (a broken log destination, a bug) must not leave the outbox half
   * released: every later reply of this connection would wait behind it for ever, and the gate's
   * entries after it (other connections' outboxes) would never run. Said loudly, as a bug.
   */
  private report(outcome: ActivationOutcome): void {
    try {
      this.ctx.onOutcome(outcome);
    } catch (err) {
      try {
        this.ctx.log.error({ peer: this.peer, err }, 'internal error while reporting a request (log line, metrics); its reply was sent');
      } catch {
        // The log is what failed: nothing left to say it with.
      }
    }
  }

  /** A peer that does not read our replies stops being read; past a hard bound it is cut off. */
  private checkBacklog(): void {
    if (this.closing) return;
    const backlog = this.gated + this.socket.writableLength;
    if (backlog <= BACKLOG_PAUSE_BYTES) return;
    if (backlog > BACKLOG_CLOSE_BYTES) {
      this.limitClose(new KmsError('KMS_ERR_CONN_BACKLOG', undefined, { unsentBytes: backlog }), 'backlog');
      return;
    }
    if (this.paused) return;
    this.paused = true;
    this.pausedAt = Date.now();
    this.socket.pause();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimer(), BACKLOG_STALL_MS);
  }

  private fail(err: unknown): void {
    if (err instanceof KmsError) {
      this.ctx.reportError(err, this);
    } else {
      // A bug, not a client error: keep serving everyone else, but say so loudly.
      this.ctx.log.error({ peer: this.peer, err }, 'internal error while serving a client; connection closed');
    }
    this.closing = true;
    this.socket.destroy();
  }

  private onTimer(): void {
    if (this.closing) return;
    const now = Date.now();
    const { idleTimeoutMs, maxConnectionLifetimeMs } = this.ctx.settings;
    const lifetimeEnds = this.openedAt + maxConnectionLifetimeMs;
    const idleEnds = this.lastProgressAt + idleTimeoutMs;
    const stallEnds = this.paused ? this.pausedAt + BACKLOG_STALL_MS : Infinity;
    if (now >= stallEnds) {
      this.limitClose(new KmsError('KMS_ERR_CONN_BACKLOG', undefined, { unsentBytes: this.gated + this.socket.writableLength }), 'backlog');
    } else if (now >= lifetimeEnds) {
      this.limitClose(
        new KmsError('KMS_ERR_CONN_LIFETIME', undefined, { openSeconds: Math.round((now - this.openedAt) / 1000) }),
        'lifetime',
      );
    } else if (now >= idleEnds) {
      this.onIdle();
    } else {
      this.timer = setTimeout(() => this.onTimer(), Math.min(idleEnds, lifetimeEnds, stallEnds) - now);
    }
  }

  private onIdle(): void {
    if (this.midPdu) {
      // Part of a PDU and then nothing (or a drip): worth a warning, unlike a quiet keep-alive.
      this.ctx.reportError(
        new KmsError(
          'KMS_ERR_CONN_IDLE',
          `closed: ${this.assembler.buffered} bytes of an unfinished PDU and no progress for the idle timeout`,
          { partialBytes: this.assembler.buffered },
        ),
        this,
      );
    } else {
      this.ctx.log.debug({ peer: this.peer, code: 'KMS_ERR_CONN_IDLE' }, 'idle connection closed');
    }
    this.ctx.onLimit('idle');
    this.closing = true;
    this.socket.destroy();
  }

  private limitClose(err: KmsError, reason: LimitReason): void {
    this.ctx.reportError(err, this);
    this.ctx.onLimit(reason);
    this.closing = true;
    this.socket.destroy();
  }

  /**
   * The peer closed its side (PROTOCOL.md §2.11: peer close → close). The server is half-open, so
   * replies still waiting at the gate are written first; then a socket with nothing left to write
   * is destroyed outright: close() sends the FIN, which spares the shutdown() of a graceful end
   * and the loop turn it takes to complete.
   */
  private onPeerEnd(): void {
    if (this.closing) return; // our own end() or a destroy is already under way
    // The stream has handed over everything before the FIN, but some of it waits for the next turn.
    if (this.deferred) {
      this.endAfterDeferred = true;
      return;
    }
    this.closing = true;
    clearTimeout(this.timer);
    this.ctx.gate.run(() => {
      const socket = this.socket;
      if (socket.writableLength === 0) {
        socket.destroy();
        return;
      }
      socket.end();
      this.timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    });
  }

  /** Graceful close: replies already written are flushed first. */
  end(): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.timer);
    // After the replies already queued behind the gate, never before them.
    this.ctx.gate.run(() => this.socket.end());
    this.timer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
  }

  /** Closed to make room for a new client (the server chose this one); logged once per address. */
  evict(): void {
    if (this.closing) return;
    const now = Date.now();
    this.ctx.reportError(
      new KmsError('KMS_ERR_CONN_EVICTED', undefined, { idleMs: now - this.lastProgressAt, openMs: now - this.openedAt }),
      this,
    );
    // The server has already stopped counting this connection, so its socket must not outlive the
    // eviction: a graceful close waits up to CLOSE_GRACE_MS for a FIN a peer may never send, and
    // evictions at the pace of new connections would keep the host far above kms.maxConnections.
    // Only replies still on their way are worth that wait.
    if (this.gated === 0 && this.socket.writableLength === 0) {
      this.closing = true;
      this.socket.destroy();
      return;
    }
    this.end();
  }

  /** True while part of a PDU is buffered, or whole PDUs of a read wait for the next turn. */
  get midPdu(): boolean {
    return this.assembler.buffered > 0 || this.deferred;
  }

  /** Shutdown: close now if between PDUs, else right after the PDU being received is answered. */
  requestShutdown(): void {
    this.shutdownRequested = true;
    if (!this.midPdu) this.end();
  }
}
