// The KMS listener: owns the TCP sockets on every configured address (IPv4 and IPv6), enforces the
// connection limit and the client-network allowlist, and hands each connection to KmsConnection.
// Settings and the handler can be swapped at run time (SIGHUP reload) without dropping connections.
import net from 'node:net';
import { KmsError, type ErrorCode } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import { buildNetworkMatcher, isPublicAddress, type NetworkMatcher } from '../net/networks';
import { addressGroup } from '../net/address-group';
import { KmsConnection, type ConnectionContext } from './connection';
import { FirstBindCache } from '../protocol/rpc/first-bind-cache';
import { ConnectionTable } from './connection-table';
import { createLogThrottle, createOncePerAddress } from './log-throttle';
import { refuseWithBindNak } from './refusal';
import type { ActivationHandler, KmsServerSettings, ServerLog } from './types';
import { IMMEDIATE_REPLIES, type ReplyGate } from './reply-gate';

/** A client from the internet is worth one warning an hour, not one per connection. */
const PUBLIC_CLIENT_LOG_INTERVAL = 3_600_000;
/**
 * A connection of the newcomer's own group (or of an equally large one) is evicted only after
 * this long without progress: a client in the middle of its bind → request exchange is not.
 */
const EVICTION_GRACE_MS = 1000;
/**
 * At kms.maxConnections, when no connection is idle, one open this long makes way whatever its
 * progress: a real client connects, binds, sends one request and closes within milliseconds (a
 * slow WAN within a second), so a connection this old is not one, and an attacker keeping slots
 * busy from many address groups must reconnect at kms.maxConnections / 2 s to keep them.
 */
const OPEN_GRACE_MS = 2000;
/** Refused sockets waiting for their bind to be answered with bind_nak; beyond this they are dropped. */
const MAX_REFUSING = 64;
/** Limits that one address keeps hitting are logged once per address (and window), not per connection. */
const LIMIT_CODES: ReadonlySet<string> = new Set([
  'KMS_ERR_CONN_LIMIT',
  'KMS_ERR_CONN_EVICTED',
  'KMS_ERR_CONN_LIFETIME',
  'KMS_ERR_CONN_BACKLOG',
  'KMS_ERR_CONN_IDLE',
  'KMS_ERR_RPC_CONTEXT_LIMIT',
]);

export interface KmsServerOptions {
  readonly listen: readonly ListenAddress[];
  readonly settings: KmsServerSettings;
  readonly handler: ActivationHandler;
  readonly log: ServerLog;
  /** Called once per KMS request with the host's decision (the 12290 log line, C32). */
  readonly onOutcome?: (outcome: ActivationOutcome) => void;
  /** Holds replies until the store commits (group commit); default: replies leave at once. */
  readonly gate?: ReplyGate;
  /** How long a busy connection is safe from eviction at the limits (OPEN_GRACE_MS; tests shorten it). */
  readonly openGraceMs?: number;
}

export interface BoundAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Why the host refused or closed connections on its own, for the metrics endpoint. */
export type RefusalReason = 'allowlist' | 'per-address' | 'total' | 'evicted' | 'idle' | 'lifetime' | 'backlog' | 'limit-contexts';

/** Cheap counters, kept as things happen (never computed by scanning). */
export interface KmsServerStats {
  /** Connections open now (refused sockets waiting for their bind_nak not included). */
  readonly open: number;
  /** Connections accepted since start (refused ones not included). */
  readonly accepted: number;
  /** Connections refused at accept, or closed by the host because of a limit, by reason. */
  readonly refusedByReason: Readonly<Record<RefusalReason, number>>;
  /** bind_nak reason 2 answers sent to refused connections. */
  readonly bindNaks: number;
}

export class KmsServer {
  private settings: KmsServerSettings;
  private handler: ActivationHandler;
  private filter: NetworkMatcher;
  private readonly servers: net.Server[] = [];
  private readonly table = new ConnectionTable<KmsConnection>();
  private readonly connections = new Set<KmsConnection>();
  private refusing = 0;
  private accepted = 0;
  private bindNaks = 0;
  private readonly refused: Record<RefusalReason, number> = {
    allowlist: 0,
    'per-address': 0,
    total: 0,
    evicted: 0,
    idle: 0,
    lifetime: 0,
    backlog: 0,
    'limit-contexts': 0,
  };
  private readonly throttle = createLogThrottle();
  private readonly rareThrottle = createLogThrottle(1, PUBLIC_CLIENT_LOG_INTERVAL);
  private readonly oncePerAddress = createOncePerAddress();
  private readonly connectionContext: (settings: KmsServerSettings) => ConnectionContext;
  private bound: BoundAddress[] = [];

  constructor(private readonly options: KmsServerOptions) {
    this.settings = options.settings;
    this.handler = options.handler;
    this.filter = buildNetworkMatcher(options.settings.clientNetworks, 'everyone');
    const common = {
      handler: () => this.handler,
      log: options.log,
      reportError: (err: KmsError, c: KmsConnection) => this.reportError(err, c.peer, c.group),
      onOutcome: options.onOutcome ?? (() => {}),
      onProgress: (c: KmsConnection) => this.table.touch(c),
      onLimit: (reason: RefusalReason) => this.refused[reason]++,
      onClose: (c: KmsConnection) => {
        this.connections.delete(c);
        this.table.remove(c);
      },
      gate: options.gate ?? IMMEDIATE_REPLIES,
      firstBinds: new FirstBindCache(),
    };
    // One context object per settings generation, shared by its connections.
    let cached: { settings: KmsServerSettings; ctx: ConnectionContext } | undefined;
    this.connectionContext = (settings) => {
      if (cached?.settings !== settings) cached = { settings, ctx: { ...common, settings } };
      return cached.ctx;
    };
  }

  /**
   * Bind every address. A wildcard IPv6 address on a machine without IPv6 is a warning when
   * something else bound; every other failure is fatal and names the address.
   */
  async start(): Promise<BoundAddress[]> {
    const failures: KmsError[] = [];
    for (const address of this.options.listen) {
      try {
        this.bound.push(await this.listenOn(address));
      } catch (err) {
        const e = err as KmsError;
        if (address.family === 6 && address.host === '::' && e.code === 'KMS_ERR_LISTEN_ADDRESS') {
          this.options.log.warn(
            { address: formatListenAddress(address), code: e.code },
            'IPv6 is not available on this machine; serving IPv4 only',
          );
          continue;
        }
        failures.push(e);
      }
    }
    if (failures.length > 0 || this.bound.length === 0) {
      await this.close(0);
      throw failures[0] ?? new KmsError('KMS_ERR_LISTEN_ADDRESS', 'no listen address could be bound');
    }
    return this.bound;
  }

  private listenOn(address: ListenAddress): Promise<BoundAddress> {
    return new Promise((resolve, reject) => {
      let portText = String(address.port);
      // noDelay: every reply is one write the client waits for; Nagle would hold it for an ACK.
      // allowHalfOpen: a client's FIN does not end our side at once; the connection closes it
      // after the replies still held by the gate (connection.ts onPeerEnd).
      const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket, portText));
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, address));
      server.once('error', onError);
      server.listen({ host: address.host, port: address.port, ipv6Only: address.family === 6, backlog: 1024 }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.listenerError(err, address));
        this.servers.push(server);
        const a = server.address() as net.AddressInfo;
        portText = String(a.port);
        resolve({ host: a.address, port: a.port, family: address.family });
      });
    });
  }

  /**
   * An error of a listening socket (a failed accept: EMFILE when the process is out of file
   * descriptors) comes once per connection attempt, so a flood of attempts is throttled like
   * client errors are.
   */
  private listenerError(err: NodeJS.ErrnoException, address: ListenAddress): void {
    const key = 'KMS listener error';
    const now = Date.now();
    if (!this.throttle.allow(key, now)) return;
    const suppressed = this.throttle.takeSuppressed(key);
    this.options.log.error(
      { err, address: formatListenAddress(address), ...(suppressed ? { suppressedSimilar: suppressed } : {}) },
      'KMS listener error',
    );
  }

  private accept(socket: net.Socket, listenPort: string): void {
    const remote = socket.remoteAddress;
    const settings = this.settings;
    if (!this.filter(remote)) {
      this.refused.allowlist++;
      this.reportError(new KmsError('KMS_ERR_CONN_NOT_ALLOWED', undefined, { clientAddress: remote }), remote ?? '?');
      socket.destroy();
      return;
    }
    if (settings.clientNetworks.length === 0 && isPublicAddress(remote)) {
      // Served (no allowlist is set), but the admin should know the internet can reach this host.
      this.reportError(
        new KmsError('KMS_ERR_CONN_PUBLIC_CLIENT', undefined, { clientAddress: remote }),
        remote ?? '?',
        undefined,
        PUBLIC_CLIENT_LOG_INTERVAL,
      );
    }
    const group = addressGroup(remote, settings.ipv6GroupPrefixLength);
    if (!this.makeRoom(group, remote ?? '?', settings)) {
      this.refuse(socket, settings);
      return;
    }
    const connection = new KmsConnection(socket, group, listenPort, this.connectionContext(settings));
    this.accepted++;
    this.table.add(connection);
    this.connections.add(connection);
  }

  /**
   * Whether a newcomer from `group` may have a slot, evicting a connection if that makes room.
   * The policy (README, "Hostile clients"): an address group at kms.maxConnectionsPerAddress
   * makes room only from its own connections: the one longest without progress if that is idle
   * for EVICTION_GRACE_MS, else the one open longest if open for OPEN_GRACE_MS; at kms.maxConnections a
   * newcomer from a group holding at least two fewer connections than the largest group takes
   * the slot of that group's connection that has gone longest without progress; otherwise an
   * idle connection (own group or largest group) makes way; otherwise a connection open for
   * OPEN_GRACE_MS (the largest group's open longest, if it holds several, else the one open longest);
   * failing all that, it is refused.
   */
  private makeRoom(group: string, remote: string, settings: KmsServerSettings): boolean {
    const now = Date.now();
    const idle = (c: KmsConnection | undefined): c is KmsConnection => c !== undefined && now - c.lastProgressAt >= EVICTION_GRACE_MS;
    const own = this.table.sizeOf(group);
    const openGraceMs = this.options.openGraceMs ?? OPEN_GRACE_MS;
    const openLong = (c: KmsConnection | undefined): c is KmsConnection => c !== undefined && now - c.openedAt >= openGraceMs;
    if (own >= settings.maxConnectionsPerAddress) {
      const oldest = this.table.oldestOf(group);
      const opened = this.table.oldestOpenOf(group);
      const victim = idle(oldest) ? oldest : openLong(opened) ? opened : undefined;
      if (!victim) return this.limitReached('per-address', remote, group, settings);
      this.evict(victim);
      return true;
    }
    if (this.table.size < settings.maxConnections) return true;
    const largest = this.table.largestGroup();
    if (largest !== undefined && this.table.largestGroupSize >= own + 2) {
      this.evict(this.table.oldestOf(largest)!);
      return true;
    }
    const candidates = [this.table.oldestOf(group), largest === undefined ? undefined : this.table.oldestOf(largest)].filter(idle);
    const victim = candidates.sort((a, b) => a.lastProgressAt - b.lastProgressAt)[0] ?? this.longOpen(largest, openLong);
    if (!victim) return this.limitReached('total', remote, group, settings);
    this.evict(victim);
    return true;
  }

  /** A connection open OPEN_GRACE_MS: the largest group's open longest when that holds several, else the one open longest. */
  private longOpen(largest: string | undefined, openLong: (c: KmsConnection | undefined) => c is KmsConnection): KmsConnection | undefined {
    const fromLargest = largest !== undefined && this.table.largestGroupSize > 1 ? this.table.oldestOpenOf(largest) : undefined;
    if (openLong(fromLargest)) return fromLargest;
    const oldest = this.table.oldest();
    return openLong(oldest) ? oldest : undefined;
  }

  private evict(victim: KmsConnection): void {
    this.refused.evicted++;
    this.table.remove(victim);
    this.connections.delete(victim);
    victim.evict();
  }

  private limitReached(reason: 'per-address' | 'total', remote: string, group: string, settings: KmsServerSettings): false {
    this.refused[reason]++;
    const err =
      reason === 'total'
        ? new KmsError('KMS_ERR_CONN_LIMIT', undefined, { limit: settings.maxConnections, setting: 'kms.maxConnections' })
        : new KmsError(
            'KMS_ERR_CONN_LIMIT',
            `${group} already has ${this.table.sizeOf(group)} connections open (kms.maxConnectionsPerAddress)`,
            {
              limit: settings.maxConnectionsPerAddress,
              setting: 'kms.maxConnectionsPerAddress',
            },
          );
    this.reportError(err, remote, group);
    return false;
  }

  /** §2.7: the refused client's bind gets bind_nak reason 2; a bounded number wait for it. */
  private refuse(socket: net.Socket, settings: KmsServerSettings): void {
    if (this.refusing >= MAX_REFUSING) {
      socket.destroy();
      return;
    }
    this.refusing++;
    refuseWithBindNak(socket, settings.maxPduBytes, (naked) => {
      this.refusing--;
      if (!naked) return;
      this.bindNaks++;
      this.options.log.debug({ peer: socket.remoteAddress, code: 'KMS_ERR_BIND_CONNECTION_LIMIT' }, 'bind refused: connection limit');
    });
  }

  private reportError(err: KmsError, peer: string, group?: string, rare?: number): void {
    const key = err.code;
    const now = Date.now();
    if (group !== undefined && LIMIT_CODES.has(key) && !this.oncePerAddress(key, group, now)) return;
    const throttle = rare ? this.rareThrottle : this.throttle;
    if (!throttle.allow(key, now)) return;
    const suppressed = throttle.takeSuppressed(key);
    this.options.log.warn(
      { peer, code: err.code, action: err.spec.action, ...err.details, ...(suppressed ? { suppressedSimilar: suppressed } : {}) },
      err.message,
    );
  }

  /** Counters for the metrics endpoint: a copy, cheap to take. */
  stats(): KmsServerStats {
    return { open: this.connections.size, accepted: this.accepted, refusedByReason: { ...this.refused }, bindNaks: this.bindNaks };
  }

  /** New settings apply to new connections; the handler applies to the next request. */
  reconfigure(settings: KmsServerSettings, handler?: ActivationHandler): void {
    this.filter = buildNetworkMatcher(settings.clientNetworks, 'everyone');
    this.settings = settings;
    if (handler) this.handler = handler;
  }

  addresses(): readonly BoundAddress[] {
    return this.bound;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Graceful stop: no new connections; replies already computed are flushed; a connection in the
   * middle of a PDU gets up to `graceMs` to finish it and be answered; then everything is closed.
   */
  async close(graceMs = 5000): Promise<void> {
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    this.servers.length = 0;
    for (const c of this.connections) c.requestShutdown();
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of this.connections) c.socket.destroy();
    await Promise.all(closed);
  }
}

/** A failed listen() as the admin should read it: what is wrong and what to do. */
export function listenError(err: NodeJS.ErrnoException, address: ListenAddress): KmsError {
  const where = formatListenAddress(address);
  const code: ErrorCode =
    err.code === 'EADDRINUSE'
      ? 'KMS_ERR_LISTEN_IN_USE'
      : err.code === 'EACCES' || err.code === 'EPERM'
        ? 'KMS_ERR_LISTEN_PERMISSION'
        : 'KMS_ERR_LISTEN_ADDRESS';
  const why =
    code === 'KMS_ERR_LISTEN_IN_USE'
      ? `${where} is already in use by another program (another KMS host?); stop it or choose another port`
      : code === 'KMS_ERR_LISTEN_PERMISSION'
        ? `no permission to listen on ${where}: ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit grants it)`
        : `cannot listen on ${where} (${err.code ?? err.message}): is this address configured on the machine?`;
  return new KmsError(code, why, { address: where, errno: err.code });
}
