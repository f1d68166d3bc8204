// The KMS listener: owns the TCP sockets on every configured address (IPv4 and IPv6), enforces the
// connection limit and the client-network allowlist, and hands each connection to KmsConnection.
// Settings and the handler can be swapped at run time (SIGHUP reload) without dropping connections.
import net from 'node:net';
import { KmsError, type ErrorCode } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import { buildClientFilter, isPublicAddress, type ClientFilter } from './client-filter';

/** A client from the internet is worth one warning an hour, not one per connection. */
const PUBLIC_CLIENT_LOG_INTERVAL = 3_600_000;
import { KmsConnection } from './connection';
import { createLogThrottle } from './log-throttle';
import type { ActivationHandler, KmsServerSettings, ServerLog } from './types';
import { IMMEDIATE_REPLIES, type ReplyGate } from './reply-gate';

export interface KmsServerOptions {
  readonly listen: readonly ListenAddress[];
  readonly settings: KmsServerSettings;
  readonly handler: ActivationHandler;
  readonly log: ServerLog;
  /** Called once per KMS request with the host's decision (the 12290 log line, C32). */
  readonly onOutcome?: (outcome: ActivationOutcome) => void;
  /** Holds replies until the store commits (group commit); default: replies leave at once. */
  readonly gate?: ReplyGate;
}

export interface BoundAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export class KmsServer {
  private settings: KmsServerSettings;
  private handler: ActivationHandler;
  private filter: ClientFilter;
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<KmsConnection>();
  private readonly perAddress = new Map<string, number>();
  private readonly throttle = createLogThrottle();
  private readonly rareThrottle = createLogThrottle(1, PUBLIC_CLIENT_LOG_INTERVAL);
  private bound: BoundAddress[] = [];

  constructor(private readonly options: KmsServerOptions) {
    this.settings = options.settings;
    this.handler = options.handler;
    this.filter = buildClientFilter(options.settings.clientNetworks);
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
          this.options.log.warn({ address: formatListenAddress(address), code: e.code }, 'IPv6 is not available on this machine; serving IPv4 only');
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
      const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, address));
      server.once('error', onError);
      server.listen({ host: address.host, port: address.port, ipv6Only: address.family === 6, backlog: 1024 }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.options.log.error({ err, address: formatListenAddress(address) }, 'KMS listener error'));
        this.servers.push(server);
        const a = server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port, family: address.family });
      });
    });
  }

  private accept(socket: net.Socket): void {
    const remote = socket.remoteAddress;
    if (!this.filter(remote)) {
      this.reportError(new KmsError('KMS_ERR_CONN_NOT_ALLOWED', undefined, { clientAddress: remote }), remote ?? '?');
      socket.destroy();
      return;
    }
    if (this.settings.clientNetworks.length === 0 && isPublicAddress(remote)) {
      // Served (no allowlist is set), but the admin should know the internet can reach this host.
      this.reportError(new KmsError('KMS_ERR_CONN_PUBLIC_CLIENT', undefined, { clientAddress: remote }), remote ?? '?', PUBLIC_CLIENT_LOG_INTERVAL);
    }
    if (this.connections.size >= this.settings.maxConnections) {
      this.reportError(new KmsError('KMS_ERR_CONN_LIMIT', undefined, { limit: this.settings.maxConnections }), remote ?? '?');
      socket.destroy();
      return;
    }
    const key = remote ?? '';
    const fromThere = this.perAddress.get(key) ?? 0;
    if (fromThere >= this.settings.maxConnectionsPerAddress) {
      this.reportError(new KmsError('KMS_ERR_CONN_LIMIT', `${key} already has ${fromThere} connections open (kms.maxConnectionsPerAddress)`, { limit: this.settings.maxConnectionsPerAddress }), key);
      socket.destroy();
      return;
    }
    this.perAddress.set(key, fromThere + 1);
    const connection = new KmsConnection(socket, {
      settings: () => this.settings,
      handler: () => this.handler,
      log: this.options.log,
      reportError: (err, peer) => this.reportError(err, peer),
      onOutcome: this.options.onOutcome ?? (() => {}),
      gate: this.options.gate ?? IMMEDIATE_REPLIES,
    });
    this.connections.add(connection);
    socket.on('close', () => {
      this.connections.delete(connection);
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left > 0) this.perAddress.set(key, left);
      else this.perAddress.delete(key);
    });
  }

  private reportError(err: KmsError, peer: string, rare?: number): void {
    const key = err.code;
    const now = Date.now();
    const throttle = rare ? this.rareThrottle : this.throttle;
    if (!throttle.allow(key, now)) return;
    const suppressed = throttle.takeSuppressed(key);
    this.options.log.warn(
      { peer, code: err.code, action: err.spec.action, ...err.details, ...(suppressed ? { suppressedSimilar: suppressed } : {}) },
      err.message,
    );
  }

  /** New settings apply to new connections; the handler applies to the next request. */
  reconfigure(settings: KmsServerSettings, handler?: ActivationHandler): void {
    this.filter = buildClientFilter(settings.clientNetworks);
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
    err.code === 'EADDRINUSE' ? 'KMS_ERR_LISTEN_IN_USE' : err.code === 'EACCES' || err.code === 'EPERM' ? 'KMS_ERR_LISTEN_PERMISSION' : 'KMS_ERR_LISTEN_ADDRESS';
  const why =
    code === 'KMS_ERR_LISTEN_IN_USE'
      ? `${where} is already in use by another program (another KMS host?); stop it or choose another port`
      : code === 'KMS_ERR_LISTEN_PERMISSION'
        ? `no permission to listen on ${where}: ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit grants it)`
        : `cannot listen on ${where} (${err.code ?? err.message}): is this address configured on the machine?`;
  return new KmsError(code, why, { address: where, errno: err.code });
}
