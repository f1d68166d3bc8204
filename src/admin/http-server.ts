// The admin listeners: node:http, or node:https (node:tls underneath) when admin.tls.enabled.
// They own the sockets and their limits (header size and time, request time, body size,
// connections in total and per address: a slow or greedy client cannot hold the page, let alone
// the KMS host); what each URL answers is the router's business.
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import type { AdminRouter, AdminResponse } from './router';
import { securityHeaders } from './router';
import { normalizeAddress } from './host-check';
import { throttleKey } from './login';
import { sortPlainFromTls, type PlainRequestHead } from './plain-on-tls';
import type { CertificatePair } from './tls-certificate';

/** Header block limit: a browser's request is 1–2 KiB. */
const MAX_HEADER_BYTES = 8192;
/** Only the login form has a body. */
const MAX_BODY_BYTES = 4096;
/** Requests one connection may send ahead of their answers (HTTP/1.1 pipelining). */
const MAX_PIPELINED = 16;

/** The time limits and the per-address share (README "Remote administration"). */
export interface AdminLimits {
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly idleSocketMs: number;
  readonly tlsHandshakeTimeoutMs: number;
  readonly maxConnectionsPerAddress: number;
}

const LIMITS: AdminLimits = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  idleSocketMs: 30_000,
  tlsHandshakeTimeoutMs: 10_000,
  maxConnectionsPerAddress: 16,
});

/**
 * How often Node looks at the header and request timers. Its default, 30 s, let a slow client
 * keep its connection up to 30 s past either limit; a look per second costs a walk over at most
 * admin.maxConnections sockets.
 */
function checkingIntervalMs(l: AdminLimits): number {
  return Math.max(10, Math.min(1000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4)));
}

export interface AdminServerLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AdminServerOptions {
  readonly listen: readonly ListenAddress[];
  /** HTTPS with this certificate; absent = plain HTTP (loopback only, checked by the caller). */
  readonly tls?: CertificatePair;
  /** Open connections at once, all listeners together. */
  readonly maxConnections: number;
  readonly router: AdminRouter;
  readonly log: AdminServerLog;
  /** Tests shorten the time limits; the appliance uses the defaults. */
  readonly limits?: Partial<AdminLimits>;
}

export interface AdminServerHandle {
  readonly addresses: readonly ListenAddress[];
  readonly tls: boolean;
  /** Serves new connections with this certificate (SIGHUP after the site renewed it). */
  setCertificate(pair: CertificatePair): void;
  close(): Promise<void>;
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServerHandle> {
  const { log, router } = options;
  const limits: AdminLimits = { ...LIMITS, ...options.limits };
  const tls = options.tls !== undefined;
  const servers: (http.Server | https.Server)[] = [];
  const bound: ListenAddress[] = [];
  const byGroup = new Map<string, Set<net.Socket>>();
  /** Each open connection's bookkeeping on close (or at once, when it is evicted). */
  const release = new Map<net.Socket, () => void>();
  let open = 0;
  const quietUntil = new Map<string, number>();
  // Once per burst and kind: a flood must not become a flood of log lines.
  const logOnce = (kind: string, write: () => void): void => {
    const now = Date.now();
    if ((quietUntil.get(kind) ?? 0) > now) return;
    quietUntil.set(kind, now + 10_000);
    write();
  };

  /**
   * Requests of one connection not yet answered. Node hands over every pipelined request of a read
   * at once and keeps each one's answer until the client reads it: 16 connections pipelining 999
   * `/api/status` each and reading nothing held 134 MB of heap (544 MB RSS). Browsers, curl and
   * Prometheus send one request at a time; a connection with more queued is closed.
   */
  const unanswered = new WeakMap<net.Socket, number>();
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const socket = req.socket;
    if (socket.destroyed) return;
    const queued = (unanswered.get(socket) ?? 0) + 1;
    if (queued > MAX_PIPELINED) {
      const addr = normalizeAddress(socket.remoteAddress ?? '');
      logOnce('pipelined', () =>
        log.warn(
          { event: 'admin-connection-closed', clientAddress: addr, pipelined: queued },
          `admin connection from ${addr} closed: more than ${MAX_PIPELINED} requests sent ahead of their answers`,
        ),
      );
      socket.destroy();
      return;
    }
    unanswered.set(socket, queued);
    res.once('close', () => unanswered.set(socket, (unanswered.get(socket) ?? 1) - 1));
    void answer(req, res).catch((err: Error) => {
      log.error({ err: err.message, url: req.url }, 'admin page error');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', ...securityHeaders(tls) });
      res.end('internal error; see the log\n');
    });
  };

  const answer = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // RFC 9112 §3.2: more than one Host line is a 400 (Node would keep the first one silently).
    const hostLines = req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host').length;
    const body = req.method === 'POST' && hostLines <= 1 ? await readBody(req) : '';
    let r: AdminResponse;
    if (hostLines > 1) {
      r = {
        status: 400,
        headers: { 'content-type': 'text/plain; charset=utf-8', ...securityHeaders(tls), connection: 'close' },
        body: 'more than one Host header\n',
      };
    } else if (body === undefined) {
      r = {
        status: 413,
        headers: { 'content-type': 'text/plain; charset=utf-8', ...securityHeaders(tls), connection: 'close' },
        body: 'request body too large\n',
      };
    } else {
      r = await router.handle({
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        remoteAddress: normalizeAddress(req.socket.remoteAddress ?? ''),
        localAddress: normalizeAddress(req.socket.localAddress ?? ''),
        tls,
        body,
      });
    }
    if (res.destroyed) return;
    res.writeHead(r.status, { ...(r.headers as http.OutgoingHttpHeaders), 'content-length': Buffer.byteLength(r.body) });
    res.end(r.body);
  };

  /**
   * Connections are counted per address (an IPv6 client by its /64, which one machine can fill).
   * At the total limit a newcomer whose address holds at least two fewer connections than the
   * address holding the most takes that address's oldest one: a few addresses holding every slot
   * with requests that never finish cannot keep out a client that has none.
   */
  const onConnection = (socket: net.Socket): void => {
    const addr = normalizeAddress(socket.remoteAddress ?? '');
    const group = throttleKey(addr);
    const mine = byGroup.get(group)?.size ?? 0;
    let evicted: net.Socket | undefined;
    if (open >= options.maxConnections && mine < limits.maxConnectionsPerAddress) {
      let largest: Set<net.Socket> | undefined;
      for (const held of byGroup.values()) if (!largest || held.size > largest.size) largest = held;
      if (largest && largest.size >= mine + 2) evicted = largest.values().next().value as net.Socket;
    }
    if (evicted) {
      const from = normalizeAddress(evicted.remoteAddress ?? '');
      logOnce('evicted', () =>
        log.warn(
          { event: 'admin-connection-evicted', clientAddress: from, for: addr, open },
          `admin connection from ${from} closed for ${addr}: all ${options.maxConnections} connections were taken`,
        ),
      );
      release.get(evicted)?.();
      evicted.destroy();
    } else if (open >= options.maxConnections || mine >= limits.maxConnectionsPerAddress) {
      logOnce('refused', () =>
        log.warn(
          { event: 'admin-connection-refused', clientAddress: addr, open, fromAddress: mine },
          `admin connection from ${addr} refused: too many open connections`,
        ),
      );
      socket.destroy();
      return;
    }
    open++;
    let held = byGroup.get(group);
    if (!held) byGroup.set(group, (held = new Set()));
    held.add(socket);
    const done = (): void => {
      if (!release.delete(socket)) return;
      open--;
      held.delete(socket);
      if (held.size === 0 && byGroup.get(group) === held) byGroup.delete(group);
    };
    release.set(socket, done);
    socket.once('close', done);
  };

  const answerPlain = (head: PlainRequestHead | undefined, socket: net.Socket): string => {
    const addr = normalizeAddress(socket.remoteAddress ?? '');
    const one = head !== undefined && head.hosts.length === 1;
    const r = router.plainHttpOnTls(
      {
        method: head?.method ?? 'GET',
        url: one ? head.target : '',
        headers: one ? { host: head.hosts[0] } : {},
        localAddress: normalizeAddress(socket.localAddress ?? ''),
      },
      socket.localPort ?? 0,
    );
    logOnce('plain-http', () =>
      log.info(
        { event: 'admin-plain-http', clientAddress: addr, status: r.status },
        `admin: plain HTTP from ${addr} on the HTTPS port, answered ${r.status} (use https://)`,
      ),
    );
    const headers = { ...securityHeaders(false), ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) };
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${String(v)}\r\n`);
    return `HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status]}\r\n${lines.join('')}\r\n${head?.method === 'HEAD' ? '' : r.body}`;
  };

  const onClientError = (err: NodeJS.ErrnoException, socket: net.Socket): void => {
    // Malformed request line, oversized headers, timeouts: answer if the socket can take it, then close.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    log.debug({ code: err.code, clientAddress: socket.remoteAddress }, 'admin: bad request');
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    socket.destroy();
  };

  const serverOptions: http.ServerOptions = {
    maxHeaderSize: MAX_HEADER_BYTES,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: checkingIntervalMs(limits),
    requireHostHeader: true,
  };
  for (const a of options.listen) {
    const server = options.tls
      ? https.createServer(
          {
            ...serverOptions,
            key: options.tls.keyPem,
            cert: options.tls.certPem,
            minVersion: 'TLSv1.2',
            handshakeTimeout: limits.tlsHandshakeTimeoutMs,
          },
          onRequest,
        )
      : http.createServer(serverOptions, onRequest);
    server.maxHeadersCount = 64;
    server.maxRequestsPerSocket = 1000;
    server.setTimeout(limits.idleSocketMs, (s: net.Socket) => s.destroy());
    if (server instanceof https.Server) {
      // TLS's own connection listener runs after the first bytes are sorted: plain HTTP is answered here.
      const handshakes = server.listeners('connection');
      if (handshakes.length !== 1) throw new Error('admin: the HTTPS server does not have one connection listener');
      const handshake = handshakes[0] as (socket: net.Socket) => void;
      server.removeListener('connection', handshake);
      server.on('connection', onConnection);
      server.on('connection', (socket: net.Socket) => {
        if (socket.destroyed) return;
        sortPlainFromTls(socket, {
          silentMs: limits.tlsHandshakeTimeoutMs,
          headersTimeoutMs: limits.headersTimeoutMs,
          maxHeaderBytes: MAX_HEADER_BYTES,
          toTls: (s) => handshake.call(server, s),
          answer: answerPlain,
          dropped: (s, reason) =>
            log.debug({ clientAddress: s.remoteAddress, reason }, 'admin: connection closed before its first request'),
        });
      });
    } else server.on('connection', onConnection);
    server.on('clientError', onClientError);
    if (tls)
      server.on('tlsClientError', (err: Error, s: net.Socket) => {
        log.debug({ err: err.message, clientAddress: s.remoteAddress }, 'admin: TLS handshake failed');
        s.destroy();
      });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: a.host, port: a.port, ipv6Only: a.family === 6 }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      // Each address on its own: a machine without IPv6 still gets the page on 127.0.0.1, and a
      // busy port costs the admin page, never the KMS host.
      const e = err as NodeJS.ErrnoException;
      log.warn(
        { code: e.code, listen: formatListenAddress(a) },
        `admin page not served on ${formatListenAddress(a)}: ${e.code ?? e.message}; the KMS host runs without it there`,
      );
      continue;
    }
    server.on('error', (err) => log.error({ err: err.message }, 'admin listener error'));
    servers.push(server);
    const info = server.address() as { port: number };
    bound.push({ ...a, port: info.port });
  }

  return {
    addresses: bound,
    tls,
    setCertificate(pair) {
      for (const s of servers)
        if (s instanceof https.Server) s.setSecureContext({ key: pair.keyPem, cert: pair.certPem, minVersion: 'TLSv1.2' });
    },
    close: () => {
      // closeAllConnections() knows only HTTP connections: not one still sorting, answered as plain
      // HTTP, or in its TLS handshake (close() would wait for each up to the handshake limit).
      for (const s of [...release.keys()]) s.destroy();
      return Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      ).then(() => undefined);
    },
  };
}

/** The body as text, or undefined when it exceeds MAX_BODY_BYTES (the rest is not read). */
function readBody(req: http.IncomingMessage): Promise<string | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
