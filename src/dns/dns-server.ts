// The DNS responder's sockets: UDP datagrams and TCP streams in, dns-responder.ts decides, and
// every counter the metrics page shows is kept here. UDP runs on dns2's UDPServer through its
// typed API (dns-udp.ts); "[::]" is dual-stack because of it (listen-plan.ts). TCP is our own
// node:net server (dns-tcp.ts): dns2's TCPServer has no per-connection hook and reads without any
// bound, while the hostile-clients limits need caps, backpressure and a drip-proof idle timer.
import type net from 'node:net';
import { randomInt } from 'node:crypto';
import type { AppConfig } from '../config/defaults';
import { parseListenAddress, formatListenAddress, type ListenAddress } from '../config/listen-address';
import { ConfigError, KmsError, type ErrorCode } from '../errors';
import { HEADER_LENGTH, RCODE_NAME } from '../protocol/dns/message';
import { decodeName, sameName } from '../protocol/dns/names';
import {
  createDnsResponder,
  describeError,
  type DnsClient,
  type DnsLog,
  type DnsResponder,
  type Forwarder,
  type ResponderEvent,
} from './dns-responder';
import { createDnsTcpService, type DnsTcpCounters } from './dns-tcp';
import { exchangeDns, parseServerAddress } from './dns-transport';
import { DnsUdpServer, type DnsUdpCounters } from './dns-udp';
import { ipv6WildcardIsDualStack, planDnsSockets } from './listen-plan';
import { createRateLimiter } from './rate-limiter';

export interface DnsServerContext {
  readonly kmsPort: number;
  readonly hostName: string;
  addresses(): string[];
  readonly log: DnsLog;
}

/** Cheap counters, incremented as things happen (for the metrics endpoint). */
interface DnsStats extends DnsTcpCounters, DnsUdpCounters {
  /** Replies sent, by header rcode name (NOERROR, NXDOMAIN, REFUSED, FORMERR …). */
  readonly responsesByRcode: Record<string, number>;
  /** Queries for names outside the zones answered REFUSED. */
  refused: number;
  /** Malformed messages (answered FORMERR or dropped). */
  malformed: number;
}

export interface DnsServerHandle {
  /** Where it really answers (UDP and TCP share each port), port 0 resolved. */
  readonly addresses: readonly ListenAddress[];
  /** A snapshot of the counters since start. */
  stats(): DnsStats;
  close(): Promise<void>;
}

const FORWARD_TIMEOUT_MS = 2000;
const FORWARD_MAX_IN_FLIGHT = 256;
const LOG_WINDOW_MS = 10_000;
const LOG_PER_WINDOW = 20;
// A limit hit by one address is logged once per this period, not once per packet.
const LIMIT_LOG_PERIOD_MS = 10 * 60_000;
const LIMIT_LOG_ADDRESSES = 4096;
const PORT_RETRIES = 20;

function createForwarder(upstream: readonly string[], log: DnsLog): Forwarder {
  const servers = upstream.map((u) => {
    const s = parseServerAddress(u);
    if (!s) throw new ConfigError('KMS_ERR_CONFIG_INVALID', `dns.forwarding.upstream: "${u}" is not IP or IP:PORT`);
    return s;
  });
  let inFlight = 0;
  return async (query) => {
    // Each forwarded query holds a socket for up to FORWARD_TIMEOUT_MS per upstream: bounded in all,
    // whatever the number of allowed clients (the answer is SERVFAIL, as for a silent upstream).
    if (inFlight >= FORWARD_MAX_IN_FLIGHT)
      throw new Error(`${FORWARD_MAX_IN_FLIGHT} forwarded queries already wait for an upstream answer`);
    inFlight++;
    try {
      return await forwardOne(query);
    } finally {
      inFlight--;
    }
  };

  async function forwardOne(query: Buffer): Promise<Buffer> {
    // A fresh ID upstream, so answers cannot be spoofed by guessing the client's ID.
    const forwarded = Buffer.from(query);
    forwarded.writeUInt16BE(randomInt(0, 0x10000), 0);
    let lastError: unknown;
    for (const server of servers) {
      try {
        const { response } = await exchangeDns(server, forwarded, { timeoutMs: FORWARD_TIMEOUT_MS });
        // RFC 5452 §9.1: only an answer to the question asked (a forged one needs only the ID).
        if (!sameQuestion(query, response)) throw new Error(`upstream ${server.host} answered another question`);
        const out = Buffer.from(response);
        out.writeUInt16BE(query.readUInt16BE(0), 0);
        return out;
      } catch (err) {
        lastError = err;
        log.debug({ code: describeError(err).code, server: server.host, port: server.port }, 'upstream resolver did not answer');
      }
    }
    throw lastError instanceof Error ? lastError : new Error('no upstream resolver configured');
  }
}

/** Whether `response` carries the one question of `query` (name case-insensitively, type, class). */
function sameQuestion(query: Buffer, response: Buffer): boolean {
  if (response.length < HEADER_LENGTH || response.readUInt16BE(4) !== 1 || query.readUInt16BE(4) !== 1) return false;
  try {
    const q = decodeName(query, HEADER_LENGTH);
    const r = decodeName(response, HEADER_LENGTH);
    if (q.next + 4 > query.length || r.next + 4 > response.length || !sameName(q.name, r.name)) return false;
    return query.readUInt32BE(q.next) === response.readUInt32BE(r.next);
  } catch {
    return false;
  }
}

/** Logs each event with its code, at most LOG_PER_WINDOW lines per code and window. */
function createEventLogger(log: DnsLog): (e: ResponderEvent) => void {
  const windows = new Map<string, { start: number; count: number; suppressed: number }>();
  return (e) => {
    const now = Date.now();
    let w = windows.get(e.code);
    if (!w || now - w.start >= LOG_WINDOW_MS) {
      if (w && w.suppressed > 0)
        log.warn({ code: e.code, suppressed: w.suppressed }, `${w.suppressed} more DNS events of this kind were not logged`);
      w = { start: now, count: 0, suppressed: 0 };
      windows.set(e.code, w);
    }
    if (++w.count > LOG_PER_WINDOW) {
      w.suppressed++;
      return;
    }
    const fields = {
      code: e.code,
      client: e.client.address,
      port: e.client.port,
      transport: e.client.transport,
      reason: e.reason,
      ...e.details,
    };
    if (e.code === 'KMS_ERR_DNS_REFUSED') log.debug(fields, 'DNS query refused');
    else if (e.code === 'KMS_ERR_DNS_MALFORMED') log.warn(fields, 'malformed DNS message');
    else if (LIMIT_CODES.has(e.code)) log.warn(fields, 'DNS client hit a limit');
    else if (e.code === 'KMS_ERR_DNS_TSIG_BAD')
      log.warn(fields, 'TSIG-signed DNS query answered NOTAUTH: the responder holds no TSIG keys');
    else log.warn(fields, 'DNS event');
  };
}

const LIMIT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'KMS_ERR_DNS_RATE_LIMITED',
  'KMS_ERR_DNS_CONNECTION_LIMIT',
  'KMS_ERR_DNS_UNREAD_REPLIES',
  'KMS_ERR_DNS_TCP_TIMEOUT',
]);

/** Passes a limit hit on once per code and client group per LIMIT_LOG_PERIOD_MS (bounded memory). */
function oncePerAddress(onEvent: (e: ResponderEvent) => void): (code: ErrorCode, client: DnsClient, group: string, reason: string) => void {
  const seen = new Map<string, number>();
  return (code, client, group, reason) => {
    const key = `${code} ${group}`;
    const now = Date.now();
    const at = seen.get(key);
    if (at !== undefined && now - at < LIMIT_LOG_PERIOD_MS) return;
    if (seen.size >= LIMIT_LOG_ADDRESSES) seen.clear();
    seen.set(key, now);
    onEvent({ code, client, reason, details: { group } });
  };
}

function listenError(addr: ListenAddress, err: NodeJS.ErrnoException): KmsError {
  return new KmsError(
    'KMS_ERR_DNS_LISTEN',
    `DNS responder cannot bind ${formatListenAddress(addr)}: ${err.code ?? err.message}`,
    { address: addr.host, port: addr.port, errno: err.code },
    { cause: err },
  );
}

function bindTcp(server: net.Server, addr: ListenAddress, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(err);
    server.once('error', onError);
    // No ipv6Only: "[::]" is dual-stack like its UDP twin (listen-plan.ts).
    server.listen({ host: addr.host, port }, () => {
      server.removeListener('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function bindUdp(socket: DnsUdpServer, addr: ListenAddress, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // dns2's listen() resolves once bound and never rejects: a failed bind is an 'error' event.
    const onError = (err: NodeJS.ErrnoException): void => reject(err);
    socket.once('error', onError);
    void socket.listen(port, addr.host).then(() => {
      socket.removeListener('error', onError);
      resolve();
    });
  });
}

function closeTcp(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

function closeUdp(socket: DnsUdpServer): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // never bound
    }
  });
}

function emptyStats(): DnsStats {
  return {
    responsesByRcode: {},
    refused: 0,
    malformed: 0,
    udpDropped: 0,
    rateLimited: 0,
    slipped: 0,
    tcpOpen: 0,
    tcpConnectionsRefused: 0,
    tcpConnectionsEvicted: 0,
    tcpClosedUnread: 0,
    tcpClosedDrip: 0,
    tcpBackpressure: 0,
  };
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
  const stats = emptyStats();
  const rcodeNames = Array.from({ length: 16 }, (_, i) => RCODE_NAME.get(i) ?? `RCODE${i}`);
  const countReply = (reply: Buffer): void => {
    const name = rcodeNames[reply.length >= 4 ? reply[3]! & 0xf : 0]!;
    stats.responsesByRcode[name] = (stats.responsesByRcode[name] ?? 0) + 1;
  };
  const logEvent = createEventLogger(log);
  const onEvent = (e: ResponderEvent): void => {
    if (e.code === 'KMS_ERR_DNS_REFUSED') stats.refused++;
    else if (e.code === 'KMS_ERR_DNS_MALFORMED') stats.malformed++;
    logEvent(e);
  };
  const onLimit = oncePerAddress(onEvent);
  const forward =
    config.forwarding.enabled && config.forwarding.upstream.length > 0 ? createForwarder(config.forwarding.upstream, log) : undefined;
  const respond: DnsResponder = createDnsResponder(config, context, { forward, serial: Math.floor(Date.now() / 1000), onEvent });
  // One limiter per transport: a flood with a spoofed source drains that address's UDP allowance,
  // and must not also hold back the real client when it asks again over TCP (where spoofing is not
  // possible). The truncated replies of dns.rateLimit.slip send it there.
  const udpLimiter = createRateLimiter(config.rateLimit);
  const tcpLimiter = createRateLimiter(config.rateLimit);

  const respondSafely = (data: Buffer, client: DnsClient): Buffer | null | Promise<Buffer | null> => {
    const failed = (err: unknown): null => {
      const d = describeError(err);
      log.error({ code: d.code, client: client.address, reason: d.message }, 'DNS responder failed on a message; it keeps serving');
      return null;
    };
    try {
      const r = respond(data, client);
      return r instanceof Promise ? r.catch(failed) : r;
    } catch (err) {
      return failed(err);
    }
  };

  const t = config.tcp;
  const tcpLimits = {
    maxConnections: t.maxConnections,
    maxConnectionsPerAddress: t.maxConnectionsPerAddress,
    idleTimeoutMs: t.idleTimeoutSeconds * 1000,
    maxPendingQueries: t.maxPendingQueries,
    pauseUnsentBytes: Math.min(t.pauseUnsentBytes, t.maxUnsentBytes),
    maxUnsentBytes: t.maxUnsentBytes,
  };
  // The TCP connection caps are shared by all listen addresses, like the rate limit.
  const tcpService = createDnsTcpService({
    limits: tcpLimits,
    limiter: tcpLimiter,
    respond: respondSafely,
    onReply: countReply,
    onLimit,
    counters: stats,
  });

  const udpSockets: DnsUdpServer[] = [];
  const tcpServers: net.Server[] = [];
  const closeAll = async (): Promise<void> => {
    tcpService.destroyAll();
    await Promise.all([...udpSockets.map(closeUdp), ...tcpServers.map(closeTcp)]);
  };
  const udpOptions = {
    limiter: udpLimiter,
    slip: config.rateLimit.slip,
    respond: respondSafely,
    onReply: countReply,
    onLimit,
    counters: stats,
  };

  // In the order configured, port 0 resolved; an address carried by a "[::]" socket gets its port.
  const bound: ListenAddress[] = [];
  const plans = planDnsSockets(addrs, ipv6WildcardIsDualStack());
  try {
    for (const { bind: addr, serves } of plans) {
      let port = addr.port;
      for (let attempt = 0; ; attempt++) {
        const tcp = tcpService.createServer();
        const udp = new DnsUdpServer(addr.family === 6 ? 'udp6' : 'udp4', udpOptions);
        udp.on('error', (err) => log.warn({ code: 'KMS_ERR_DNS_LISTEN', reason: err.message }, 'DNS UDP socket error'));
        try {
          const tcpPort = await bindTcp(tcp, addr, port);
          try {
            await bindUdp(udp, addr, tcpPort);
          } catch (err) {
            await closeTcp(tcp);
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
        tcpServers.push(tcp);
        for (const i of serves) bound[i] = { host: addrs[i]!.host, port, family: addrs[i]!.family };
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
    stats: () => ({ ...stats, responsesByRcode: { ...stats.responsesByRcode } }),
    close: () => (closed ??= closeAll()),
  };
}
