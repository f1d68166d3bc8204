// The admin HTTP listener as a fuzz target: malformed request lines and headers, request
// smuggling shapes, huge headers, slowloris drips, random bytes, foreign Host headers and broken
// credentials, over raw TCP on loopback. Every input ends by itself (a short timer destroys the
// socket), so a round is bounded whatever the server does. healthy(): a plain GET /healthz is
// answered (200 or 503 with a JSON body) — and /api/status too when credentials are given.
import net from 'node:net';
import tls from 'node:tls';
import type { FuzzTarget } from './target';

export interface HttpFuzzOptions {
  readonly host: string;
  readonly port: number;
  /** The listener serves HTTPS (admin.tls.enabled). */
  readonly tls?: boolean;
  /** `user:password` for the healthy() check of /api/status; without it only /healthz is checked. */
  readonly credentials?: string;
}

/** Hostile inputs one round sends (connections), and how long any one may stay open. */
const INPUTS_PER_ROUND = 24;
const MAX_INPUT_MS = 400;

type Input = (rnd: () => number, host: string) => { chunks: Buffer[]; dripMs?: number };

const pick = <T>(rnd: () => number, list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
const randomBytes = (rnd: () => number, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
const text = (s: string): Buffer => Buffer.from(s, 'latin1');

const PATHS = ['/', '/healthz', '/api/status', '/api/machines', '/metrics', '/login', '/logout', '/index.html', '/nothing'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'PATCH', 'G\x00T', 'GET GET', 'get', ''];

const INPUTS: readonly Input[] = [
  // A malformed request line: odd methods, versions, targets, line endings.
  (rnd, host) => {
    const target = pick(rnd, [
      pick(rnd, PATHS),
      '*',
      'http://attacker.example/',
      '//evil',
      `/${'a'.repeat(Math.floor(rnd() * 20_000))}`,
      '/%00%ff%',
      '/?q=%25%5f\\\'"<>',
      '/ /',
      '',
    ]);
    const version = pick(rnd, ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', 'HTTP/9', '', 'HTTP/1.1 extra']);
    const eol = pick(rnd, ['\r\n', '\n', '\r', '\r\r\n']);
    return { chunks: [text(`${pick(rnd, METHODS)} ${target} ${version}${eol}Host: ${host}${eol}${eol}`)] };
  },
  // Smuggling shapes: both lengths, lying lengths, broken chunking, obsolete line folding.
  (rnd, host) => {
    const variants = [
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` +
        `GET /api/status HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nContent-Length: -1\r\n\r\n`,
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 99999999999999999999\r\n\r\nx`,
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nuser`,
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n`,
      `POST /login HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n${'1\r\na\r\n'.repeat(5000)}0\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: ${host}\r\nX-Folded: a\r\n b\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: ${host}\r\nHost: attacker.example\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost : ${host}\r\n\r\n`,
    ];
    return { chunks: [text(pick(rnd, variants))] };
  },
  // Huge headers: one enormous value, or very many small ones.
  (rnd, host) => {
    const one = `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(8_000 + Math.floor(rnd() * 60_000))}\r\n\r\n`;
    const headers = Array.from({ length: 200 + Math.floor(rnd() * 2000) }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    const many = `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n${headers}\r\n`;
    return { chunks: [text(rnd() < 0.5 ? one : many)] };
  },
  // Slowloris: the header block a few bytes at a time, never finished within the input's time.
  (rnd, host) => {
    const head = text(`GET /api/status HTTP/1.1\r\nHost: ${host}\r\nX-Slow: `);
    const chunks = [head, ...Array.from({ length: 20 }, () => text(String.fromCharCode(97 + Math.floor(rnd() * 26))))];
    return { chunks, dripMs: 15 };
  },
  // Random bytes, sometimes after a valid start.
  (rnd, host) => ({
    chunks: [
      rnd() < 0.5
        ? Buffer.concat([text(`GET / HTTP/1.1\r\nHost: ${host}\r\n`), randomBytes(rnd, 200)])
        : randomBytes(rnd, 1 + Math.floor(rnd() * 2000)),
    ],
  }),
  // A foreign, malformed or missing Host (DNS rebinding and parser edges).
  (rnd) => {
    const host = pick(rnd, [
      'attacker.example',
      '127.0.0.2',
      '[::2]',
      '',
      ' ',
      'a'.repeat(400),
      'localhost:99999',
      '[::1',
      'xn--',
      '..',
      'localhost\x00.evil',
      '127.0.0.1:0:0',
    ]);
    const line = rnd() < 0.2 ? '' : `Host: ${host}\r\n`;
    return { chunks: [text(`GET ${pick(rnd, PATHS)} HTTP/1.1\r\n${line}\r\n`)] };
  },
  // Broken credentials and cookies: not base64, no colon, huge, wrong password, forged session.
  (rnd, host) => {
    const auth = pick(rnd, [
      'Basic',
      'Basic !!!',
      `Basic ${Buffer.from('admin').toString('base64')}`,
      `Basic ${Buffer.from('admin:wrong').toString('base64')}`,
      `Basic ${'A'.repeat(6000)}`,
      'Bearer x',
      `Basic ${Buffer.from(`admin:${'p'.repeat(5000)}`).toString('base64')}`,
      'Digest username="admin"',
    ]);
    const cookie = pick(rnd, ['', 'kms_admin_session=forged', `kms_admin_session=${'x'.repeat(9000)}`, 'a=b; kms_admin_session=;;=']);
    return {
      chunks: [
        text(
          `GET ${pick(rnd, ['/api/status', '/metrics', '/'])} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${auth}\r\n` +
            `${cookie ? `Cookie: ${cookie}\r\n` : ''}\r\n`,
        ),
      ],
    };
  },
  // Keep-alive abuse: many pipelined requests, searches with LIKE metacharacters and cursors.
  (rnd, host) => {
    const q = encodeURIComponent(pick(rnd, ['%', '_', '\\', "'", '"', '<script>', '\u202e', 'ws-1', 'a'.repeat(300)]));
    const after = pick(rnd, ['', 'W10', 'WyJhIiwiYiJd', 'bm90LWpzb24', '%%%']);
    const one =
      `GET /api/machines?q=${q}&sort=${pick(rnd, ['name', 'seen', 'application', 'x'])}` +
      `&limit=${pick(rnd, ['1', '200', '-5', '1e9', 'NaN'])}&after=${after} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    return { chunks: [text(one.repeat(1 + Math.floor(rnd() * 30)))] };
  },
];

function connect(o: HttpFuzzOptions, localAddress?: string): net.Socket {
  const where = { host: o.host, port: o.port, ...(localAddress ? { localAddress } : {}) };
  return o.tls ? tls.connect({ ...where, rejectUnauthorized: false }) : net.connect(where);
}

/**
 * The well-behaved client comes from another loopback address than the attacker: wrong passwords
 * lock out their source address (as they should), which must not make the target look unhealthy.
 */
function goodClientAddress(host: string): string | undefined {
  return host === '127.0.0.1' ? '127.0.0.2' : undefined;
}

/** Sends one input; resolves when the socket closed or MAX_INPUT_MS passed (then it is destroyed). */
function sendInput(o: HttpFuzzOptions, input: { chunks: Buffer[]; dripMs?: number }): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(o);
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, MAX_INPUT_MS);
    socket.on('error', done);
    socket.on('close', done);
    socket.on('data', () => {});
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      if (!input.dripMs) {
        for (const c of input.chunks) socket.write(c);
        return;
      }
      let i = 0;
      const drip = setInterval(() => {
        if (i >= input.chunks.length || socket.destroyed) return clearInterval(drip);
        socket.write(input.chunks[i++]!);
      }, input.dripMs);
      socket.once('close', () => clearInterval(drip));
    });
  });
}

/** One well-formed GET; resolves with the status and body, or undefined when not answered in time. */
function get(
  o: HttpFuzzOptions,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const socket = connect(o, goodClientAddress(o.host));
    const chunks: Buffer[] = [];
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw);
      resolve(m ? { status: Number(m[1]), body: m[3]! } : undefined);
    };
    // Generous: the first /api/status starts the snapshot worker.
    const timer = setTimeout(finish, 20_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', finish);
    socket.on('end', finish);
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}\r\nConnection: close\r\n${extra}\r\n`,
      );
    });
  });
}

export function httpFuzzTarget(opts: HttpFuzzOptions): FuzzTarget {
  const hostHeader = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  return {
    name: 'admin-http',
    async round(rnd) {
      const inputs = Array.from({ length: INPUTS_PER_ROUND }, () => pick(rnd, INPUTS)(rnd, hostHeader));
      await Promise.all(inputs.map((i) => sendInput(opts, i)));
      return inputs.length;
    },
    async healthy() {
      const h = await get(opts, '/healthz');
      const healthzOk = h !== undefined && (h.status === 200 ? h.body === 'ok\n' : h.status === 503 && h.body.includes('"problems"'));
      if (!healthzOk) return false;
      if (!opts.credentials) return true;
      const s = await get(opts, '/api/status', { Authorization: `Basic ${Buffer.from(opts.credentials).toString('base64')}` });
      return s !== undefined && s.status === 200 && s.body.includes('"inventory"');
    },
  };
}
