// A small HTTP(S) client for the admin tests: any method, headers and body, the raw Host header,
// and the peer certificate of a TLS connection. Not a test file.
import http from 'node:http';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly certificate?: PeerCertificate;
}

export interface RequestOptions {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly tls?: boolean;
  readonly host?: string;
}

export function request(port: number, path: string, o: RequestOptions = {}): Promise<Reply> {
  const host = o.host ?? '127.0.0.1';
  const lib = o.tls ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      {
        host,
        port,
        path,
        method: o.method ?? 'GET',
        headers: { host: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, ...o.headers },
        ...(o.tls ? { rejectUnauthorized: false, agent: false } : { agent: false }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const certificate = o.tls ? (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.() : undefined;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            ...(certificate ? { certificate } : {}),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

export function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}
