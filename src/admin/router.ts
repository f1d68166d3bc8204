// What each admin URL answers, as a function of a plain request object: testable without sockets
// (`inject`), and the same for every listener. The order of checks is the security policy:
// Host first (DNS rebinding), then /healthz (no login, no inventory), then login for the rest.
import type { IncomingHttpHeaders } from 'node:http';
import type { LoginGuard } from './login';
import { clearedSessionCookie, sessionCookie } from './login';
import { ADMIN_USER } from './password';
import { hostOf, type HostCheck } from './host-check';
import type { HealthReport } from './health';
import type { AdminSnapshot } from './snapshot';
import { clipSearch, MACHINE_SORTS, MAX_PAGE_SIZE, type MachinePage, type MachineQuery, type MachineSort } from './inventory-reads';
import { AdminBusyError } from './snapshot-service';
import { PAGE_STYLE_HASH, renderAdminPage, renderLoginPage } from './page';

export interface AdminRequest {
  readonly method: string;
  /** Path and query as sent. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  /** The address the client connected to (the Host check accepts it as a literal). */
  readonly localAddress: string;
  readonly tls: boolean;
  /** The request body (only POST /login reads one; the server bounds its size). */
  readonly body?: string;
}

export interface AdminResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  readonly body: string;
}

export interface AdminRouterContext {
  readonly hostCheck: HostCheck;
  readonly login: LoginGuard;
  health(): HealthReport;
  snapshot(): Promise<AdminSnapshot>;
  machines(query: MachineQuery): Promise<MachinePage>;
  metrics(): Promise<{ contentType: string; body: string }>;
  readonly log: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
  /** Called for each failed login (metrics). */
  onLoginFailure?(): void;
}

const PAGE_SIZE = 50;

/** CSP for every response: nothing loads but the hashed style block; no framing, no plugins, forms post here only. */
const CONTENT_SECURITY_POLICY =
  `default-src 'none'; style-src ${PAGE_STYLE_HASH}; img-src 'self'; ` + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Headers every answer carries, whatever it is. */
export function securityHeaders(tls: boolean): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on our own form posts.
    'referrer-policy': 'same-origin',
    'cache-control': 'no-store',
    ...(tls ? { 'strict-transport-security': 'max-age=31536000' } : {}),
  };
}

const TEXT = 'text/plain; charset=utf-8';
const HTML = 'text/html; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

function reply(status: number, type: string, body: string, extra: Record<string, string | readonly string[]> = {}): AdminResponse {
  return { status, headers: { 'content-type': type, ...extra }, body };
}

export class AdminRouter {
  constructor(private readonly ctx: AdminRouterContext) {}

  async handle(req: AdminRequest): Promise<AdminResponse> {
    const r = await this.route(req);
    return { ...r, headers: { ...securityHeaders(req.tls), ...r.headers } };
  }

  /**
   * The answer to a plain HTTP request that reached an HTTPS listener: a redirect to the same
   * host, port and path over https:// when the Host names this listener (the same check as every
   * request: an unchecked Host is never written back), else a 400 that says what to type.
   */
  plainHttpOnTls(req: Pick<AdminRequest, 'method' | 'url' | 'headers' | 'localAddress'>, localPort: number): AdminResponse {
    const hint = (): AdminResponse =>
      reply(400, TEXT, `this port speaks HTTPS: use https://<this host>:${localPort}/ instead of http://\n`, { connection: 'close' });
    const target = requestTarget(req.url);
    const host = target?.authority ?? req.headers.host;
    const name = hostOf(host);
    const isRead = req.method === 'GET' || req.method === 'HEAD';
    if (!target || !isRead || name === undefined || !this.ctx.hostCheck.allows(host, req.localAddress)) return hint();
    const port = /:(\d{1,5})$/.exec(host ?? '')?.[1] ?? String(localPort);
    const location = `https://${name.includes(':') ? `[${name}]` : name}:${port}${target.url.pathname}${target.url.search}`;
    return reply(301, TEXT, `this port speaks HTTPS: use ${location}\n`, { location, connection: 'close' });
  }

  private async route(original: AdminRequest): Promise<AdminResponse> {
    const target = requestTarget(original.url);
    if (!target) return reply(400, TEXT, 'bad request target\n');
    // RFC 9112 §3.2.2: with an absolute-form target the Host line is ignored for the target's authority.
    const req = target.authority === undefined ? original : { ...original, headers: { ...original.headers, host: target.authority } };
    // RFC 9112 §3.2: a Host field that is not a host (and port) is a bad request, not a foreign name.
    if (req.headers.host !== undefined && hostOf(req.headers.host) === undefined) return reply(400, TEXT, 'bad Host header\n');
    // RFC 9110 §15.5.20: 421 Misdirected Request — this server is not authoritative for that name.
    if (!this.ctx.hostCheck.allows(req.headers.host, req.localAddress)) {
      return reply(421, TEXT, 'this admin listener does not answer to that host name; use its own name or address\n');
    }
    const url = target.url;
    const path = url.pathname;
    const isRead = req.method === 'GET' || req.method === 'HEAD';

    if (path === '/healthz') {
      if (!isRead) return methodNotAllowed('GET, HEAD');
      const h = this.ctx.health();
      return h.ok
        ? reply(200, TEXT, 'ok\n')
        : reply(503, JSON_TYPE, JSON.stringify({ status: 'unhealthy', problems: h.problems }, null, 2) + '\n');
    }
    if (path === '/login') {
      if (req.method === 'POST') return this.login(req);
      if (!isRead) return methodNotAllowed('GET, HEAD, POST');
      return reply(200, HTML, renderLoginPage(undefined));
    }
    if (path === '/logout') {
      if (req.method !== 'POST') return methodNotAllowed('POST');
      if (!sameOrigin(req)) return reply(403, TEXT, 'cross-site request refused\n');
      this.ctx.login.logout(req.headers.cookie);
      return reply(303, TEXT, 'logged out\n', { location: '/login', 'set-cookie': clearedSessionCookie() });
    }

    const known = path === '/' || path === '/index.html' || path === '/api/status' || path === '/api/machines' || path === '/metrics';
    if (!known) return reply(404, TEXT, 'not found\n');
    if (!isRead) return methodNotAllowed('GET, HEAD');

    const auth = await this.ctx.login.authenticate(req.headers, req.remoteAddress);
    if (!auth.ok) {
      if (auth.reason === 'wrong') this.ctx.onLoginFailure?.();
      if (auth.reason === 'throttled')
        return reply(429, TEXT, `${throttledText(auth)}; wait and try again\n`, {
          'retry-after': String(auth.retryAfterSeconds ?? 60),
        });
      // Browsers get the form; programs get a Basic challenge (curl -u admin, Prometheus basic_auth).
      if ((path === '/' || path === '/index.html') && auth.reason === 'missing')
        return reply(303, TEXT, 'log in first\n', { location: '/login' });
      return reply(401, TEXT, 'log in as admin (HTTP Basic)\n', { 'www-authenticate': 'Basic realm="kms-appliance", charset="UTF-8"' });
    }

    try {
      if (path === '/metrics') {
        const m = await this.ctx.metrics();
        return reply(200, m.contentType, m.body);
      }
      if (path === '/api/status') return reply(200, JSON_TYPE, JSON.stringify(await this.ctx.snapshot(), null, 2));
      const query = machineQuery(url.searchParams);
      if (path === '/api/machines') return reply(200, JSON_TYPE, JSON.stringify(await this.ctx.machines(query), null, 2));
      const [snapshot, machines] = await Promise.all([this.ctx.snapshot(), this.ctx.machines(query)]);
      return reply(200, HTML, renderAdminPage({ snapshot, machines, query, session: auth.via === 'session' }));
    } catch (err) {
      if (err instanceof AdminBusyError) return reply(503, TEXT, `${err.message}\n`, { 'retry-after': '5' });
      this.ctx.log.error({ err: (err as Error).message, path }, 'admin page error');
      return reply(500, TEXT, 'internal error; see the log\n');
    }
  }

  private async login(req: AdminRequest): Promise<AdminResponse> {
    if (!sameOrigin(req)) return reply(403, TEXT, 'cross-site request refused\n');
    if (!this.ctx.login.required) return reply(303, TEXT, 'no password is set\n', { location: '/' });
    const form = new URLSearchParams(req.body ?? '');
    const result = await this.ctx.login.login(form.get('user') ?? ADMIN_USER, form.get('password') ?? '', req.remoteAddress);
    if (result.ok) return reply(303, TEXT, 'logged in\n', { location: '/', 'set-cookie': sessionCookie(result.token) });
    if (result.reason === 'wrong') this.ctx.onLoginFailure?.();
    const status = result.reason === 'throttled' ? 429 : 401;
    const message =
      result.reason === 'throttled'
        ? `${throttledText(result)}; wait ${result.retryAfterSeconds ?? 60} seconds.`
        : 'Wrong user or password.';
    return reply(
      status,
      HTML,
      renderLoginPage(message),
      result.reason === 'throttled' ? { 'retry-after': String(result.retryAfterSeconds ?? 60) } : {},
    );
  }
}

function throttledText(result: { readonly everyone?: boolean }): string {
  return result.everyone
    ? 'Too many failed logins from many addresses: password checks are paused for everyone'
    : 'Too many failed logins from your address';
}

function methodNotAllowed(allow: string): AdminResponse {
  return reply(405, TEXT, 'method not allowed\n', { allow });
}

/**
 * The request target (RFC 9112 §3.2): origin-form `/path?query`, or absolute-form
 * `http://authority/path`, which a server must accept and whose authority stands for Host.
 * Userinfo in it is refused (RFC 9110 §4.2.4), as is any other form.
 */
function requestTarget(target: string): { url: URL; authority?: string } | undefined {
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute) {
    const authority = absolute[1]!;
    if (authority === '' || authority.includes('@')) return undefined;
    try {
      return { url: new URL(target), authority };
    } catch {
      return undefined;
    }
  }
  if (!target.startsWith('/') || target.startsWith('//')) return undefined;
  try {
    return { url: new URL(target, 'http://admin.invalid') };
  } catch {
    return undefined;
  }
}

/** A form post must come from a page of this listener (Origin, when a browser sends one, names our Host). */
function sameOrigin(req: AdminRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === String(req.headers.host ?? '').toLowerCase();
  } catch {
    return false;
  }
}

function machineQuery(p: URLSearchParams): MachineQuery {
  const sort = p.get('sort');
  const limit = Number(p.get('limit') ?? PAGE_SIZE);
  const after = p.get('after');
  return {
    q: clipSearch(p.get('q') ?? ''),
    sort: (MACHINE_SORTS as readonly string[]).includes(sort ?? '') ? (sort as MachineSort) : 'name',
    ...(after ? { after: after.slice(0, 2000) } : {}),
    limit: Number.isFinite(limit) ? Math.max(1, Math.min(MAX_PAGE_SIZE, Math.floor(limit))) : PAGE_SIZE,
  };
}
