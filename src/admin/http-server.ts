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
import type { CertificatePair } from './tls-certificate';

/** Header block limit: a browser's request is 1–2 KiB. */
const MAX_HEADER_BYTES = 8192;
/** Only the login form has a body. */
const MAX_BODY_BYTES = 4096;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const IDLE_SOCKET_MS = 30_000;
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS_PER_ADDRESS = 16;

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
  const tls = options.tls !== undefined;
  const servers: (http.Server | https.Server)[] = [];
  const bound: ListenAddress[] = [];
  const perAddress = new Map<string, number>();
  let open = 0;
  let refusedLogged = false;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void answer(req, res).catch((err: Error) => {
      log.error({ err: err.message, url: req.url }, 'admin page error');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', ...securityHeaders(tls) });
      res.end('internal error; see the log\n');
    });
  };

  const answer = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const body = req.method === 'POST' ? await readBody(req) : '';
    let r: AdminResponse;
    if (body === undefined) {
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

  const onConnection = (socket: net.Socket): void => {
    const addr = normalizeAddress(socket.remoteAddress ?? '');
    const mine = perAddress.get(addr) ?? 0;
    if (open >= options.maxConnections || mine >= MAX_CONNECTIONS_PER_ADDRESS) {
      if (!refusedLogged) {
        refusedLogged = true; // once per burst: a flood must not become a flood of log lines
        setTimeout(() => (refusedLogged = false), 10_000).unref();
        log.warn(
          { event: 'admin-connection-refused', clientAddress: addr, open, fromAddress: mine },
          `admin connection from ${addr} refused: too many open connections`,
        );
      }
      socket.destroy();
      return;
    }
    open++;
    perAddress.set(addr, mine + 1);
    socket.once('close', () => {
      open--;
      const n = (perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) perAddress.delete(addr);
      else perAddress.set(addr, n);
    });
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
    requestTimeout: REQUEST_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
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
            handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
          },
          onRequest,
        )
      : http.createServer(serverOptions, onRequest);
    server.maxHeadersCount = 64;
    server.maxRequestsPerSocket = 1000;
    server.setTimeout(IDLE_SOCKET_MS, (s: net.Socket) => s.destroy());
    server.on('connection', onConnection);
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
    close: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      ).then(() => undefined),
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
