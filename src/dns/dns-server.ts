// The DNS responder's sockets: dns2's UDP and TCP servers carry the datagrams and TCP streams,
// while parsing and policy stay in dns-responder.ts. dns2's own parser is bypassed (its
// lenient parse cannot tell FORMERR from silence and drops the sender on errors), so each
// dns2 server is subclassed at its per-message entry point.
import dgram from 'node:dgram';
import type net from 'node:net';
import { randomInt } from 'node:crypto';
import DNS from 'dns2';
import type { AppConfig } from '../config/defaults';
import { parseListenAddress, formatListenAddress, type ListenAddress } from '../config/listen-address';
import { ConfigError, KmsError } from '../errors';
import { createDnsResponder, describeError, type DnsClient, type DnsLog, type DnsResponder, type Forwarder, type ResponderEvent } from './dns-responder';
import { exchangeDns, parseServerAddress } from './dns-transport';
import { createRateLimiter } from './rate-limiter';

export interface DnsServerContext {
  readonly kmsPort: number;
  readonly hostName: string;
  addresses(): string[];
  readonly log: DnsLog;
}

export interface DnsServerHandle {
  /** Where it really answers (UDP and TCP share each port), port 0 resolved. */
  readonly addresses: readonly ListenAddress[];
  close(): Promise<void>;
}

const FORWARD_TIMEOUT_MS = 2000;
const TCP_MAX_CONNECTIONS = 256;
const LOG_WINDOW_MS = 10_000;
const LOG_PER_WINDOW = 20;
const PORT_RETRIES = 20;

/** dns2's UDP server with its datagram handler replaced by ours (it would parse first). */
class RawUdpServer extends DNS.UDPServer {
  onDatagram: (data: Buffer, rinfo: dgram.RemoteInfo) => void = () => undefined;
  override handle(data: Buffer, rinfo: dgram.RemoteInfo): void {
    this.onDatagram(data, rinfo);
  }
}

interface TcpState {
  inFlight: number;
  peerEnded: boolean;
}

/** The parts of dns2's TCP server its typings leave out. */
interface Dns2TcpInternals {
  idleTimeout: number;
  response(client: net.Socket, state: TcpState, message: Buffer): void;
}

/** dns2's TCP server; our framing replaces its handler, its response() writes the answers. */
class RawTcpServer extends DNS.TCPServer {
  onMessage: (data: Buffer, socket: net.Socket) => Promise<Buffer | null> = async () => null;

  handle(socket: net.Socket): void {
    const self = this as unknown as Dns2TcpInternals;
    const state: TcpState = { inFlight: 0, peerEnded: false };
    let buffered: Buffer = Buffer.alloc(0);
    socket.setTimeout(self.idleTimeout);
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('end', () => {
      state.peerEnded = true;
      if (state.inFlight === 0) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      // RFC 1035 §4.2.2: each message is preceded by its 2-byte length; the length caps what
      // a client can make us buffer at 64 KiB.
      while (buffered.length >= 2) {
        const n = buffered.readUInt16BE(0);
        if (buffered.length < 2 + n) return;
        const message = Buffer.from(buffered.subarray(2, 2 + n));
        buffered = buffered.subarray(2 + n);
        state.inFlight++;
        void this.onMessage(message, socket).then(
          (answer) => {
            if (answer) self.response(socket, state, answer);
            else {
              // Nothing to say to this peer (it sent a response, or garbage we must not answer).
              state.inFlight--;
              socket.destroy();
            }
          },
          () => socket.destroy(),
        );
      }
    });
  }
}

function createForwarder(upstream: readonly string[], log: DnsLog): Forwarder {
  const servers = upstream.map((u) => {
    const s = parseServerAddress(u);
    if (!s) throw new ConfigError('KMS_ERR_CONFIG_INVALID', `dns.forwarding.upstream: "${u}" is not IP or IP:PORT`);
    return s;
  });
  return async (query) => {
    // A fresh ID upstream, so answers cannot be spoofed by guessing the client's ID.
    const forwarded = Buffer.from(query);
    forwarded.writeUInt16BE(randomInt(0, 0x10000), 0);
    let lastError: unknown;
    for (const server of servers) {
      try {
        const { response } = await exchangeDns(server, forwarded, { timeoutMs: FORWARD_TIMEOUT_MS });
        const out = Buffer.from(response);
        out.writeUInt16BE(query.readUInt16BE(0), 0);
        return out;
      } catch (err) {
        lastError = err;
        log.debug({ code: describeError(err).code, server: server.host, port: server.port }, 'upstream resolver did not answer');
      }
    }
    throw lastError instanceof Error ? lastError : new Error('no upstream resolver configured');
  };
}

/** Logs each event with its code, at most LOG_PER_WINDOW lines per code and window. */
function createEventLogger(log: DnsLog): (e: ResponderEvent) => void {
  const windows = new Map<string, { start: number; count: number; suppressed: number }>();
  return (e) => {
    const now = Date.now();
    let w = windows.get(e.code);
    if (!w || now - w.start >= LOG_WINDOW_MS) {
      if (w && w.suppressed > 0) log.warn({ code: e.code, suppressed: w.suppressed }, `${w.suppressed} more DNS events of this kind were not logged`);
      w = { start: now, count: 0, suppressed: 0 };
      windows.set(e.code, w);
    }
    if (++w.count > LOG_PER_WINDOW) {
      w.suppressed++;
      return;
    }
    const fields = { code: e.code, client: e.client.address, port: e.client.port, transport: e.client.transport, reason: e.reason, ...e.details };
    if (e.code === 'KMS_ERR_DNS_REFUSED') log.debug(fields, 'DNS query refused');
    else log.warn(fields, e.code === 'KMS_ERR_DNS_MALFORMED' ? 'malformed DNS message' : 'DNS event');
  };
}

function listenError(addr: ListenAddress, err: NodeJS.ErrnoException): KmsError {
  return new KmsError('KMS_ERR_DNS_LISTEN', `DNS responder cannot bind ${formatListenAddress(addr)}: ${err.code ?? err.message}`, { address: addr.host, port: addr.port, errno: err.code }, { cause: err });
}

function bindTcp(server: RawTcpServer, addr: ListenAddress, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(err);
    server.once('error', onError);
    // ipv6Only lets "[::]:53" and "0.0.0.0:53" be configured side by side.
    server.listen({ host: addr.host, port, ipv6Only: addr.family === 6 }, () => {
      server.removeListener('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function bindUdp(socket: RawUdpServer, addr: ListenAddress, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(err);
    socket.once('error', onError);
    socket.bind({ address: addr.host, port, exclusive: true }, () => {
      socket.removeListener('error', onError);
      resolve();
    });
  });
}

function closeTcp(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  return new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

function closeUdp(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // never bound
    }
  });
}

/**
 * Starts answering on every listen address (UDP and TCP on the same port; port 0 picks one
 * free for both). Rejects with KMS_ERR_DNS_LISTEN when an address cannot be bound.
 */
export async function startDnsServer(
  config: AppConfig['dns'],
  context: DnsServerContext,
  listen: readonly (ListenAddress | string)[],
): Promise<DnsServerHandle> {
  const log = context.log;
  const addrs = listen.map((l) => {
    if (typeof l !== 'string') return l;
    const a = parseListenAddress(l);
    if ('error' in a) throw new ConfigError('KMS_ERR_CONFIG_INVALID', `DNS listen address: ${a.error}`);
    return a;
  });
  const onEvent = createEventLogger(log);
  const forward = config.forwarding.enabled && config.forwarding.upstream.length > 0 ? createForwarder(config.forwarding.upstream, log) : undefined;
  const respond: DnsResponder = createDnsResponder(config, context, { forward, serial: Math.floor(Date.now() / 1000), onEvent });
  const limiter = createRateLimiter(config.rateLimit);

  const handleSafely = async (data: Buffer, client: DnsClient): Promise<Buffer | null> => {
    try {
      return await respond(data, client);
    } catch (err) {
      const d = describeError(err);
      log.error({ code: d.code, client: client.address, reason: d.message }, 'DNS responder failed on a message; it keeps serving');
      return null;
    }
  };

  const udpSockets: RawUdpServer[] = [];
  const tcpServers: { server: RawTcpServer; sockets: Set<net.Socket> }[] = [];
  const bound: ListenAddress[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all([...udpSockets.map(closeUdp), ...tcpServers.map((t) => closeTcp(t.server, t.sockets))]);
  };

  try {
    for (const addr of addrs) {
      let port = addr.port;
      for (let attempt = 0; ; attempt++) {
        const tcp = new RawTcpServer();
        tcp.maxConnections = TCP_MAX_CONNECTIONS;
        const sockets = new Set<net.Socket>();
        tcp.on('connection', (s: net.Socket) => {
          sockets.add(s);
          s.once('close', () => sockets.delete(s));
        });
        tcp.onMessage = (data, socket) => handleSafely(data, { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, transport: 'tcp' });
        const udp = new RawUdpServer({ type: { type: addr.family === 6 ? 'udp6' : 'udp4', ipv6Only: addr.family === 6 } as unknown as 'udp4' });
        udp.onDatagram = (data, rinfo) => {
          // Rate limiting applies to UDP only: TCP sources cannot be spoofed for reflection.
          if (!limiter.allow(rinfo.address, Date.now())) {
            onEvent({ code: 'KMS_ERR_DNS_RATE_LIMITED', client: { address: rinfo.address, port: rinfo.port, transport: 'udp' }, reason: 'response dropped: over dns.rateLimit' });
            return;
          }
          void handleSafely(data, { address: rinfo.address, port: rinfo.port, transport: 'udp' }).then((answer) => {
            if (answer) udp.send(answer, rinfo.port, rinfo.address, () => undefined);
          });
        };
        udp.on('error', (err) => log.warn({ code: 'KMS_ERR_DNS_LISTEN', reason: err.message }, 'DNS UDP socket error'));
        try {
          const tcpPort = await bindTcp(tcp, addr, port);
          try {
            await bindUdp(udp, addr, tcpPort);
          } catch (err) {
            await closeTcp(tcp, sockets);
            await closeUdp(udp);
            // With port 0 the TCP port may be taken on UDP; pick again.
            if (addr.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < PORT_RETRIES) continue;
            throw err;
          }
          port = tcpPort;
        } catch (err) {
          throw listenError(addr, err as NodeJS.ErrnoException);
        }
        tcp.on('error', (err: Error) => log.warn({ code: 'KMS_ERR_DNS_LISTEN', reason: err.message }, 'DNS TCP server error'));
        udpSockets.push(udp);
        tcpServers.push({ server: tcp, sockets });
        bound.push({ host: addr.host, port, family: addr.family });
        break;
      }
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  log.info(
    { listen: bound.map(formatListenAddress), zones: config.zones.map((z) => z.domain), forwarding: forward !== undefined },
    'DNS responder answering _vlmcs._tcp for its zones',
  );
  let closed: Promise<void> | undefined;
  return {
    addresses: bound,
    close: () => (closed ??= closeAll()),
  };
}
