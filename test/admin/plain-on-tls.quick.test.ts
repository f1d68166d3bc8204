// Plain HTTP on the HTTPS admin port: an admin who types http:// gets a redirect to https:// (or a
// 400 that says so when the Host is not this listener's), not a bare reset. The first-byte sorting
// in front of TLS keeps every bound: a silent client, or one that sends a byte and stops, is still
// closed at the time limit, connections still count against the limits, and good clients get in.
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import type { Test } from 'tap';
import { request } from './http-client';
import { startAdminServer, type AdminLimits } from '../../src/admin/http-server';
import { AdminRouter, type AdminResponse, type AdminRouterContext } from '../../src/admin/router';
import { HostCheck } from '../../src/admin/host-check';
import { generateSelfSigned, type CertificatePair } from '../../src/admin/tls-certificate';
import { parseHead } from '../../src/admin/plain-on-tls';
import { afterPoll, settledWithin } from '../wait';

let pair: CertificatePair | undefined;
const certificate = async (): Promise<CertificatePair> => (pair ??= await generateSelfSigned('branch-box', ['127.0.0.1', '::1']));

interface Listener {
  readonly port: number;
  readonly port6?: number;
  readonly debug: string[];
}

/** An HTTPS admin listener whose router answers every request 200 and redirects plain HTTP as the real one does. */
async function tlsListener(t: Test, limits: Partial<AdminLimits> = {}, maxConnections = 64, v6 = false): Promise<Listener> {
  const real = new AdminRouter({ hostCheck: new HostCheck(['localhost', 'branch-box']) } as unknown as AdminRouterContext);
  const router = {
    handle: async (): Promise<AdminResponse> => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: 'ok\n' }),
    plainHttpOnTls: real.plainHttpOnTls.bind(real),
  } as unknown as AdminRouter;
  const debug: string[] = [];
  const log = {
    debug: (_: object, m?: string) => debug.push(m ?? ''),
    info: () => undefined,
    warn: () => undefined,
    error: () => undefined,
  };
  const server = await startAdminServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }, ...(v6 ? [{ host: '::1', port: 0, family: 6 as const }] : [])],
    tls: await certificate(),
    maxConnections,
    router,
    log,
    limits,
  });
  t.teardown(() => server.close());
  const port6 = server.addresses.find((a) => a.family === 6)?.port;
  return { port: server.addresses[0]!.port, ...(port6 !== undefined ? { port6 } : {}), debug };
}

/** Writes `data` (may be empty) on one connection; resolves with what the server sent and whether it closed before `boundMs`. */
function exchange(
  port: number,
  data: string | Buffer,
  boundMs = 8000,
  host = '127.0.0.1',
): Promise<{ text: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let text = '';
    const finish = (byServer: boolean): void => {
      clearTimeout(bound);
      s.destroy();
      resolve({ text, closedByServer: byServer });
    };
    const bound = setTimeout(() => finish(false), boundMs);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', () => undefined);
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    if (data.length > 0) s.write(data);
  });
}

/** A connection that sends `data` (maybe nothing) and holds on; resolves once it is open. */
function hold(port: number, data: string | Buffer, held: net.Socket[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      if (data.length > 0) s.write(data);
      resolve();
    });
    s.on('error', () => resolve());
    held.push(s);
  });
}

t.test('a plain GET on the HTTPS port is redirected to https:// on the same host, port and path', async (t) => {
  const { port } = await tlsListener(t);
  const r = await request(port, '/api/machines?q=pc-1&sort=name');
  t.equal(r.status, 301);
  t.equal(r.headers.location, `https://127.0.0.1:${port}/api/machines?q=pc-1&sort=name`);
  t.equal(r.headers.connection, 'close');
  t.match(r.body, /this port speaks HTTPS: use https:\/\//);
  const named = await request(port, '/', { headers: { host: `branch-box:${port}` } });
  t.equal(named.status, 301);
  t.equal(named.headers.location, `https://branch-box:${port}/`, 'a name the listener answers to is kept');
  const head = await request(port, '/healthz', { method: 'HEAD' });
  t.equal(head.status, 301, 'HEAD too');
  t.equal(head.body, '');
});

t.test('a Host that is not this listener is never written back: 400 with the hint', async (t) => {
  const { port } = await tlsListener(t);
  for (const host of ['attacker.example', `127.0.0.2:${port}`, 'bad host\\x', '[::1']) {
    const r = await exchange(port, `GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    t.match(r.text, /^HTTP\/1\.1 400 /, `Host ${JSON.stringify(host)}: 400`);
    t.notMatch(r.text, /\r\nlocation:/i, 'no Location');
    t.match(r.text, /this port speaks HTTPS: use https:\/\//);
    t.notMatch(r.text, /attacker|127\.0\.0\.2/, 'the foreign name is not in the answer');
    t.ok(r.closedByServer, 'and the connection is closed');
  }
  const noHost = await exchange(port, 'GET / HTTP/1.0\r\n\r\n');
  t.match(noHost.text, /^HTTP\/1\.1 400 /, 'no Host: 400');
  const twoHosts = await exchange(port, `GET / HTTP/1.1\r\nHost: localhost:${port}\r\nHost: attacker.example\r\n\r\n`);
  t.match(twoHosts.text, /^HTTP\/1\.1 400 /, 'two Host lines: 400');
  const post = await exchange(port, `POST /login HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Length: 3\r\n\r\nabc`);
  t.match(post.text, /^HTTP\/1\.1 400 /, 'a POST is not redirected (its body would be sent again)');
  const absolute = await exchange(port, `GET http://attacker.example/ HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`);
  t.match(absolute.text, /^HTTP\/1\.1 400 /, 'an absolute-form target names the host checked');
  const garbage = await exchange(port, 'Hello there\r\n\r\n');
  t.match(garbage.text, /^HTTP\/1\.1 400 /, 'a line that is not a request line: 400');
});

t.test('a real HTTPS client is unaffected, and an IPv6 listener redirects with the bracketed address', async (t) => {
  const l = await tlsListener(t, {}, 64, true);
  const r = await request(l.port, '/healthz', { tls: true });
  t.equal(r.status, 200);
  t.equal(r.body, 'ok\n');
  t.ok(r.certificate?.fingerprint256, 'over TLS, with the certificate');
  if (l.port6 === undefined) {
    t.comment('no ::1 here: the IPv6 part is skipped');
    return;
  }
  t.equal((await request(l.port6, '/healthz', { tls: true, host: '::1' })).status, 200, 'HTTPS on [::1]');
  const plain = await request(l.port6, '/a/b', { host: '::1' });
  t.equal(plain.status, 301);
  t.equal(plain.headers.location, `https://[::1]:${l.port6}/a/b`);
});

t.test('a client that sends nothing, or one byte and then nothing, is closed at the time limit', async (t) => {
  const l = await tlsListener(t, { tlsHandshakeTimeoutMs: 300, headersTimeoutMs: 300 });
  const silent = await exchange(l.port, '');
  t.ok(silent.closedByServer, 'silent: closed by the server');
  t.equal(silent.text, '', 'with nothing sent');
  const letter = await exchange(l.port, 'G');
  t.ok(letter.closedByServer, 'one letter: closed by the server');
  const record = await exchange(l.port, Buffer.from([0x16]));
  t.ok(record.closedByServer, 'one TLS record byte: closed by the server (the handshake limit)');
  const half = await exchange(l.port, `GET / HTTP/1.1\r\nHost: localhost:${l.port}\r\n`);
  t.ok(half.closedByServer, 'half a plain head: closed by the server');
  t.equal(half.text, '', 'without an answer');
  t.ok(
    l.debug.some((m) => /before its first request/.test(m)),
    'the closes are logged',
  );
});

t.test('a head larger than the header limit, or many requests pipelined, gets one answer and the close', async (t) => {
  const { port } = await tlsListener(t);
  const big = await exchange(port, `GET / HTTP/1.1\r\nHost: localhost:${port}\r\nX-Pad: ${'a'.repeat(9000)}`);
  t.match(big.text, /^HTTP\/1\.1 400 /);
  t.ok(big.closedByServer);
  const many = await exchange(port, `GET / HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`.repeat(200));
  t.equal([...many.text.matchAll(/HTTP\/1\.1 \d{3} /g)].length, 1, 'one answer');
  t.match(many.text, /^HTTP\/1\.1 301 /);
  t.ok(many.closedByServer);
});

t.test('connections not yet sorted count against the limits, and good clients are served beside them', async (t) => {
  const l = await tlsListener(t, { maxConnectionsPerAddress: 6 }, 64);
  const held: net.Socket[] = [];
  t.teardown(() => {
    for (const s of held) s.destroy();
  });
  for (let i = 0; i < 3; i++) await hold(l.port, '', held);
  for (let i = 0; i < 3; i++) await hold(l.port, 'GET / HT', held);
  const refused = await exchange(l.port, '');
  t.ok(refused.closedByServer, 'a seventh connection from the same address is refused');
  const other = await tlsListener(t);
  for (let i = 0; i < 4; i++) await hold(other.port, '', held);
  for (let i = 0; i < 4; i++) await hold(other.port, Buffer.from([0x16]), held);
  for (let i = 0; i < 4; i++) await hold(other.port, 'G', held);
  t.equal((await request(other.port, '/healthz', { tls: true })).status, 200, 'an HTTPS client is served while they are open');
  t.equal((await request(other.port, '/healthz')).status, 301, 'a plain client is answered while they are open');
  t.ok(
    held.slice(6).every((s) => !s.destroyed),
    'the held connections were still open',
  );
});

t.test('parseHead reads the request line and every Host line', async (t) => {
  t.same(parseHead('GET /a?b HTTP/1.1\r\nHost: x:1\r\nhost:  y \r\nAccept: */*'), { method: 'GET', target: '/a?b', hosts: ['x:1', 'y'] });
  t.same(parseHead('GET /a HTTP/1.0\nHost: x'), { method: 'GET', target: '/a', hosts: ['x'] }, 'bare LF lines');
  t.equal(parseHead('GET /a b HTTP/1.1'), undefined, 'a space in the target');
  t.equal(parseHead('GET /a HTTP/2.0'), undefined, 'not HTTP/1.x');
  t.equal(parseHead('GET /\x01 HTTP/1.1'), undefined, 'a control character in the target');
});

t.test('a client that resets its connection before or while sorting costs nothing: the listener keeps serving', async (t) => {
  const { port } = await tlsListener(t);
  for (const data of ['', 'GET / HTTP/1.1\r\n']) {
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          if (data) s.write(data);
          setImmediate(() => {
            s.resetAndDestroy();
            resolve();
          });
        });
        s.on('error', () => resolve());
      });
    }
  }
  t.equal((await request(port, '/healthz', { tls: true })).status, 200, 'HTTPS still served');
  t.equal((await request(port, '/healthz')).status, 301, 'plain still answered');
});

t.test('over TLS the header time limit still holds: a client dripping its head is closed', async (t) => {
  const { port } = await tlsListener(t, { headersTimeoutMs: 300, requestTimeoutMs: 600 });
  const closed = await new Promise<{ byServer: boolean; text: string }>((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () =>
      s.write(`GET / HTTP/1.1\r\nHost: localhost:${port}\r\n`),
    );
    let text = '';
    const iv = setInterval(() => s.writable && s.write('X'), 50);
    const finish = (byServer: boolean): void => {
      clearInterval(iv);
      clearTimeout(bound);
      s.destroy();
      resolve({ byServer, text });
    };
    const bound = setTimeout(() => finish(false), 8000);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', () => undefined);
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
  });
  t.ok(closed.byServer, 'closed by the server');
  t.match(closed.text, /^HTTP\/1\.1 408 /, 'with 408');
});

t.test('close() ends connections still sorting, answered as plain HTTP or in their TLS handshake, without waiting for them', async (t) => {
  const real = new AdminRouter({ hostCheck: new HostCheck(['localhost']) } as unknown as AdminRouterContext);
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  // Limits far beyond the wait's bound: only close() can end these connections in time.
  const long = { tlsHandshakeTimeoutMs: 600_000, headersTimeoutMs: 600_000, requestTimeoutMs: 600_000, idleSocketMs: 600_000 };
  const server = await startAdminServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    tls: await certificate(),
    maxConnections: 64,
    router: real,
    log: quiet,
    limits: long,
  });
  const port = server.addresses[0]!.port;
  const held: net.Socket[] = [];
  t.teardown(() => {
    for (const s of held) s.destroy();
  });
  for (const data of ['', 'G', Buffer.from([0x16, 0x03, 0x01])]) await hold(port, data, held);
  await hold(port, `GET / HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`, held);
  await afterPoll();
  const closed = await settledWithin(
    server.close().then(() => true),
    8000,
    false,
  );
  t.ok(closed, 'close() finished');
});

t.test('a plain head sent a byte at a time is read across every split (CRLF and bare LF)', async (t) => {
  const { port } = await tlsListener(t);
  for (const eol of ['\r\n', '\n']) {
    const head = `GET /split HTTP/1.1${eol}Host: localhost:${port}${eol}${eol}`;
    const text = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      let got = '';
      const bound = setTimeout(() => s.destroy(), 8000);
      s.on('data', (c: Buffer) => (got += c.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(bound);
        resolve(got);
      });
      s.on('connect', async () => {
        for (const ch of head) {
          if (s.destroyed) return;
          s.write(ch);
          await new Promise((r) => setTimeout(r, 1));
        }
      });
    });
    t.match(text, /^HTTP\/1\.1 301 /, `${JSON.stringify(eol)}: redirected`);
    t.match(text, new RegExp(`\\r\\nlocation: https://localhost:${port}/split\\r\\n`));
  }
});
