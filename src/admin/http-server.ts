// The admin page and its JSON API (node:http, loopback by default): what the host counts and why,
// which machines activated what, and where its files are. Read-only: nothing here changes state.
import http from 'node:http';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import type { ServerLog } from '../server/types';
import { renderAdminPage } from './page';

export interface AdminContext {
  readonly log: ServerLog;
  /** The status document (GET /api/status and the page). */
  snapshot(): AdminSnapshot;
}

/** What the page shows; built by the appliance from the store's inventory. */
export interface AdminSnapshot {
  readonly generatedAt: string;
  readonly version: string;
  readonly databaseFile: string;
  readonly catalog: string;
  readonly kmsListen: readonly string[];
  readonly dnsListen: readonly string[];
  readonly inventory: unknown;
}

export interface AdminServerHandle {
  readonly addresses: readonly ListenAddress[];
  close(): Promise<void>;
}

export async function startAdminServer(listen: readonly ListenAddress[], ctx: AdminContext): Promise<AdminServerHandle> {
  const servers: http.Server[] = [];
  const bound: ListenAddress[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    try {
      route(req, res, ctx);
    } catch (err) {
      ctx.log.error({ err, url: req.url }, 'admin page error');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error; see the log\n');
    }
  };
  // Each address on its own: a machine without IPv6 still gets the page on 127.0.0.1, and a busy
  // port costs the admin page, never the KMS host.
  for (const a of listen) {
    const server = http.createServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: a.host, port: a.port, ipv6Only: a.family === 6 }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      ctx.log.warn({ code: e.code, listen: formatListenAddress(a) }, `admin page not served on ${formatListenAddress(a)}: ${e.code ?? e.message}; the KMS host runs without it there`);
      continue;
    }
    servers.push(server);
    const info = server.address() as { port: number };
    bound.push({ ...a, port: info.port });
  }
  return {
    addresses: bound,
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

function route(req: http.IncomingMessage, res: http.ServerResponse, ctx: AdminContext): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('read-only\n');
    return;
  }
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('ok\n');
    return;
  }
  if (path === '/api/status') {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(ctx.snapshot(), null, 2));
    return;
  }
  if (path === '/' || path === '/index.html') {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'x-content-type-options': 'nosniff',
    });
    res.end(renderAdminPage(ctx.snapshot()));
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('not found\n');
}
