// DNS over TCP (RFC 7766) with every per-client resource bounded, because a TCP client, unlike
// a UDP one, can make the server hold things: connections, partial messages, queries in flight
// and replies it never reads. The policy, in the order a connection meets it:
//   - connections per address (IPv6 per /64) are capped; past the cap a new one is closed at once;
//     at the total cap the oldest idle connection of the address holding the most is closed, so
//     an attacker's connections go before a good client's;
//   - the per-client rate limit (dns.rateLimit) throttles reading: queries wait, nothing is lost;
//   - reading stops while the queries read but not answered reach maxPendingQueries, or while
//     the unsent replies exceed pauseUnsentBytes (backpressure: the client must read to go on);
//     past maxUnsentBytes the connection is closed;
//   - the idle timer restarts only when a whole query arrives, so a length prefix followed by a
//     byte every few seconds is closed after idleTimeoutSeconds however it drips.
import net from 'node:net';
import { DnsFrameReader, frameDnsMessage } from '../protocol/dns/tcp-framing';
import type { ErrorCode } from '../errors';
import { addressGroup } from '../net/address-group';
import type { DnsClient } from './dns-responder';
import { unmapIPv4 } from '../net/mapped-ipv4';
import type { RateLimiter } from './rate-limiter';

interface DnsTcpLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  readonly idleTimeoutMs: number;
  readonly maxPendingQueries: number;
  readonly pauseUnsentBytes: number;
  readonly maxUnsentBytes: number;
}

export interface DnsTcpCounters {
  tcpOpen: number;
  tcpConnectionsRefused: number;
  tcpConnectionsEvicted: number;
  tcpClosedUnread: number;
  tcpClosedDrip: number;
  /** Times a connection's reading was paused because its replies were not being read. */
  tcpBackpressure: number;
  rateLimited: number;
}

export interface DnsTcpOptions {
  readonly limits: DnsTcpLimits;
  readonly limiter: RateLimiter;
  /** Answers one message: a reply, null (close: nothing may be said to this peer), or later. */
  respond(message: Buffer, client: DnsClient): Buffer | null | Promise<Buffer | null>;
  /** A reply is about to be written (for the counters). */
  onReply(reply: Buffer): void;
  /** A limit was hit; the caller logs it once per address. */
  onLimit(code: ErrorCode, client: DnsClient, group: string, reason: string): void;
  readonly counters: DnsTcpCounters;
}

// Messages one connection may have answered before it yields the event loop to others.
const MESSAGES_PER_TURN = 64;
const EMPTY = Buffer.alloc(0);

class Connection {
  readonly frames = new DnsFrameReader();
  pending = 0;
  lastProgress = Date.now();
  peerEnded = false;
  throttled = false;
  closed = false;
  awaitingFlush = false;
  readonly idleTimer: NodeJS.Timeout;

  constructor(
    readonly socket: net.Socket,
    readonly client: DnsClient,
    readonly group: string,
    onIdle: () => void,
    idleMs: number,
  ) {
    this.idleTimer = setTimeout(onIdle, idleMs);
  }
}

export interface DnsTcpService {
  /** A listening socket (not yet bound) whose connections share this service's limits. */
  createServer(): net.Server;
  /** Closes every open connection (the servers themselves are closed by the caller). */
  destroyAll(): void;
}

/** One set of connections and limits, shared by every TCP listen address. */
export function createDnsTcpService(o: DnsTcpOptions): DnsTcpService {
  const { limits, counters } = o;
  const byGroup = new Map<string, Set<Connection>>();
  const all = new Set<Connection>();
  // The rate limit refills one token per 1/rate s; a throttled connection looks again then.
  const throttleMs = (): number => Math.max(1, Math.ceil(1000 / Math.max(1, o.limiter.rate)));

  const forget = (c: Connection): void => {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(c.idleTimer);
    all.delete(c);
    const set = byGroup.get(c.group);
    set?.delete(c);
    if (set && set.size === 0) byGroup.delete(c.group);
    counters.tcpOpen--;
  };

  const evictOne = (): void => {
    let largest: Set<Connection> | undefined;
    for (const set of byGroup.values()) if (!largest || set.size > largest.size) largest = set;
    let oldest: Connection | undefined;
    for (const c of largest ?? []) if (!oldest || c.lastProgress < oldest.lastProgress) oldest = c;
    if (!oldest) return;
    counters.tcpConnectionsEvicted++;
    o.onLimit(
      'KMS_ERR_DNS_CONNECTION_LIMIT',
      oldest.client,
      oldest.group,
      `dns.tcp.maxConnections (${limits.maxConnections}) reached: the oldest idle connection of the address holding the most was closed`,
    );
    oldest.socket.destroy();
    forget(oldest);
  };

  const closeWhenDone = (c: Connection): void => {
    if (c.peerEnded && c.pending === 0 && !c.frames.hasMessage && !c.closed) {
      // A half-closed peer with part of a message left sent a truncated stream.
      if (c.frames.buffered > 0) c.socket.destroy();
      else c.socket.end();
    }
  };

  /** Writes one reply; false when the connection is gone (or was closed for not reading). */
  const writeReply = (c: Connection, reply: Buffer | null): boolean => {
    if (c.closed || c.socket.destroyed) return false;
    if (!reply) {
      // Nothing to say to this peer (it sent a response, or something too short to answer).
      c.socket.destroy();
      return false;
    }
    o.onReply(reply);
    c.socket.write(frameDnsMessage(reply));
    if (c.socket.writableLength > limits.maxUnsentBytes) {
      counters.tcpClosedUnread++;
      o.onLimit(
        'KMS_ERR_DNS_UNREAD_REPLIES',
        c.client,
        c.group,
        `more than dns.tcp.maxUnsentBytes (${limits.maxUnsentBytes}) of replies unread; connection closed`,
      );
      c.socket.destroy();
      return false;
    }
    return true;
  };

  /**
   * Reads and answers whole messages while every limit allows, then pauses or resumes reading.
   * Replies of one turn leave in one write (cork); a turn answers at most MESSAGES_PER_TURN, then
   * yields to the event loop so one pipelining client cannot hold it for a whole 64 KiB chunk.
   */
  const pump = (c: Connection): void => {
    if (c.closed || c.socket.destroyed) return;
    c.socket.cork();
    try {
      pumpTurn(c);
    } finally {
      if (!c.socket.destroyed) c.socket.uncork();
    }
  };

  const pumpTurn = (c: Connection): void => {
    for (let answered = 0; !c.closed && !c.throttled && !c.socket.destroyed; answered++) {
      const unread = c.socket.writableLength > limits.pauseUnsentBytes;
      if (unread || c.pending >= limits.maxPendingQueries) {
        // A finished query, or the replies leaving, call pump again.
        c.socket.pause();
        if (unread && !c.awaitingFlush) {
          counters.tcpBackpressure++;
          c.awaitingFlush = true;
          const again = (): void => {
            c.awaitingFlush = false;
            pump(c);
          };
          // 'drain' comes only past the socket's high-water mark; an empty write's callback
          // runs once everything before it has left, whatever the bound.
          if (c.socket.writableNeedDrain) c.socket.once('drain', again);
          else c.socket.write(EMPTY, again);
        }
        return;
      }
      if (!c.frames.hasMessage) {
        c.socket.resume();
        closeWhenDone(c);
        return;
      }
      if (answered >= MESSAGES_PER_TURN) {
        c.socket.pause();
        setImmediate(() => pump(c));
        return;
      }
      if (!o.limiter.allow(c.group, Date.now())) {
        counters.rateLimited++;
        o.onLimit('KMS_ERR_DNS_RATE_LIMITED', c.client, c.group, 'TCP queries slowed down: over dns.rateLimit');
        c.throttled = true;
        c.socket.pause();
        setTimeout(() => {
          c.throttled = false;
          pump(c);
        }, throttleMs()).unref();
        return;
      }
      const message = c.frames.next()!;
      c.lastProgress = Date.now();
      c.idleTimer.refresh();
      c.pending++;
      let reply: Buffer | null | Promise<Buffer | null>;
      try {
        reply = o.respond(message, c.client);
      } catch {
        reply = null; // the responder logs its own failures
      }
      if (reply instanceof Promise) {
        reply.then(
          (r) => {
            c.pending--;
            if (writeReply(c, r)) pump(c);
          },
          () => {
            c.pending--;
            writeReply(c, null);
          },
        );
      } else {
        c.pending--;
        if (!writeReply(c, reply)) return;
      }
    }
  };

  const onIdle = (c: Connection): void => {
    if (c.closed) return;
    if (c.frames.buffered > 0) {
      counters.tcpClosedDrip++;
      o.onLimit(
        'KMS_ERR_DNS_TCP_TIMEOUT',
        c.client,
        c.group,
        `no complete query within dns.tcp.idleTimeoutSeconds (${limits.idleTimeoutMs / 1000} s), ` +
          `${c.frames.buffered} bytes of one waiting; connection closed`,
      );
    } else if (c.socket.writableLength > 0) {
      counters.tcpClosedUnread++;
      o.onLimit(
        'KMS_ERR_DNS_UNREAD_REPLIES',
        c.client,
        c.group,
        `replies unread for dns.tcp.idleTimeoutSeconds (${limits.idleTimeoutMs / 1000} s); connection closed`,
      );
    }
    c.socket.destroy();
    forget(c);
  };

  const accept = (socket: net.Socket): void => {
    const client: DnsClient = { address: unmapIPv4(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0, transport: 'tcp' };
    const group = addressGroup(client.address);
    const mine = byGroup.get(group);
    if (mine && mine.size >= limits.maxConnectionsPerAddress) {
      counters.tcpConnectionsRefused++;
      o.onLimit(
        'KMS_ERR_DNS_CONNECTION_LIMIT',
        client,
        group,
        `dns.tcp.maxConnectionsPerAddress (${limits.maxConnectionsPerAddress}) reached; new connection closed`,
      );
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    if (all.size >= limits.maxConnections) evictOne();
    const c: Connection = new Connection(socket, client, group, () => onIdle(c), limits.idleTimeoutMs);
    all.add(c);
    if (mine) mine.add(c);
    else byGroup.set(group, new Set([c]));
    counters.tcpOpen++;
    socket.on('data', (chunk: Buffer) => {
      c.frames.push(chunk);
      pump(c);
    });
    socket.on('end', () => {
      c.peerEnded = true;
      closeWhenDone(c);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => forget(c));
  };

  return {
    // allowHalfOpen: a client may send its query and FIN at once and still get the answer.
    createServer: () => net.createServer({ allowHalfOpen: true, noDelay: true }, accept),
    destroyAll() {
      for (const c of all) {
        c.socket.destroy();
        forget(c);
      }
    },
  };
}
