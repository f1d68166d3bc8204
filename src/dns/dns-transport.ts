// Sends one DNS message to one server and returns the raw answer: UDP first, TCP when the
// answer comes back truncated (RFC 7766 §5). Used by the forwarder and the RFC 2136 registrar.
import dgram from 'node:dgram';
import net from 'node:net';
import { KmsError } from '../errors';
import { DnsFrameReader } from '../protocol/dns/tcp-framing';

export interface DnsServerAddress {
  readonly host: string;
  readonly port: number;
}

/** "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address; null when it is none of these. */
export function parseServerAddress(spec: string, defaultPort = 53): DnsServerAddress | null {
  const s = spec.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracketed) {
    const port = bracketed[2] === undefined ? defaultPort : Number(bracketed[2]);
    return net.isIPv6(bracketed[1]!) && port > 0 && port <= 65535 ? { host: bracketed[1]!, port } : null;
  }
  if (net.isIPv6(s)) return { host: s, port: defaultPort };
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m || !net.isIPv4(m[1]!)) return null;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  return port > 0 && port <= 65535 ? { host: m[1]!, port } : null;
}

function unreachable(server: DnsServerAddress, reason: string, cause?: unknown): KmsError {
  return new KmsError(
    'KMS_ERR_DNS_SERVER_UNREACHABLE',
    `DNS server ${server.host} port ${server.port}: ${reason}`,
    { server: server.host, port: server.port },
    { cause },
  );
}

/** Why a message that came back is not the answer to `id`; null when it is. */
function notTheAnswer(msg: Buffer, id: number): 'short' | 'id' | 'query' | null {
  if (msg.length < 12) return 'short';
  if (msg.readUInt16BE(0) !== id) return 'id';
  return (msg[2]! & 0x80) === 0 ? 'query' : null;
}

/**
 * Judges an answer beyond its ID: null accepts it; an Error discards it. Over UDP the exchange
 * then waits on for another answer (RFC 8945 §5.4: an unsigned or unverifiable answer to a signed
 * request may be spoofed) and fails with the last such Error at its timeout; over TCP, where the
 * one answer of the connection came, it fails with it at once.
 */
type AnswerCheck = (answer: Buffer) => Error | null;

/**
 * One UDP exchange; datagrams from other ports, with another ID, or that are not responses are
 * ignored (anyone can send them), and counted so a timeout can say what came instead.
 */
function exchangeUdp(server: DnsServerAddress, query: Buffer, timeoutMs: number, check?: AnswerCheck): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    const id = query.readUInt16BE(0);
    const ignored = { short: 0, id: 0, query: 0 };
    const whatCame = (): string => {
      const parts = [
        ignored.id > 0 ? `${ignored.id} with another message ID` : '',
        ignored.query > 0 ? `${ignored.query} not a response (QR=0: the query sent back?)` : '',
        ignored.short > 0 ? `${ignored.short} shorter than a DNS header` : '',
      ].filter((p) => p !== '');
      return parts.length === 0 ? '' : `; datagrams ignored: ${parts.join(', ')}`;
    };
    let done = false;
    const finish = (err: Error | null, answer?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(answer!);
    };
    let refused: Error | undefined;
    const timer = setTimeout(() => finish(refused ?? unreachable(server, `no answer within ${timeoutMs} ms${whatCame()}`)), timeoutMs);
    socket.on('error', (err) => finish(unreachable(server, err.message, err)));
    socket.on('message', (msg, rinfo) => {
      if (rinfo.port !== server.port) return;
      const wrong = notTheAnswer(msg, id);
      if (wrong) {
        ignored[wrong]++;
        return;
      }
      // A truncated answer only says "ask over TCP"; the TCP answer is the one judged.
      const truncated = (msg.readUInt16BE(2) & 0x0200) !== 0;
      const bad = check && !truncated ? check(msg) : null;
      if (bad) refused = bad;
      else finish(null, msg);
    });
    socket.connect(server.port, server.host, () => {
      socket.send(query, (err) => {
        if (err) finish(unreachable(server, err.message, err));
      });
    });
  });
}

/** One TCP exchange with the 2-byte length prefix (RFC 1035 §4.2.2). */
function exchangeTcp(server: DnsServerAddress, query: Buffer, timeoutMs: number, check?: AnswerCheck): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // The length prefix has 16 bits; writing a longer one would throw in the 'connect' handler.
    if (query.length > 0xffff)
      return reject(new KmsError('KMS_ERR_DNS_MALFORMED', `a ${query.length}-byte DNS message cannot be sent over TCP`, {}));
    const socket = net.connect({ host: server.host, port: server.port });
    const id = query.readUInt16BE(0);
    // Grows by doubling: appending each chunk to all the bytes before it cost the square of the
    // answer's length when a server dripped it.
    const frames = new DnsFrameReader();
    let done = false;
    const finish = (err: Error | null, answer?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => finish(unreachable(server, `no answer over TCP within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(unreachable(server, err.message, err)));
    socket.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      socket.write(Buffer.concat([len, query]));
    });
    socket.on('data', (chunk) => {
      frames.push(chunk);
      const message = frames.next();
      if (!message) return;
      const answer = Buffer.from(message);
      const n = answer.length;
      // One query per connection: whatever comes first on the stream must be its answer.
      const wrong = notTheAnswer(answer, id);
      if (!wrong) return finish(check?.(answer) ?? null, answer);
      const what =
        wrong === 'id'
          ? `answered over TCP with message ID ${answer.readUInt16BE(0)}, not ${id} (an answer to another query)`
          : wrong === 'query'
            ? 'sent back over TCP a message that is not a response (QR=0: the query sent back?)'
            : `sent ${n} bytes over TCP, shorter than a DNS header`;
      finish(new KmsError('KMS_ERR_DNS_MALFORMED', `DNS server ${server.host} port ${server.port} ${what}`, { server: server.host }));
    });
    socket.on('end', () => finish(unreachable(server, 'connection closed before a full answer')));
  });
}

/** UDP with TCP fallback on TC; `tcpOnly` skips UDP (for answers known to be large). */
export async function exchangeDns(
  server: DnsServerAddress,
  query: Buffer,
  options: { readonly timeoutMs: number; readonly tcpOnly?: boolean; readonly check?: AnswerCheck },
): Promise<{ readonly response: Buffer; readonly transport: 'udp' | 'tcp' }> {
  if (!options.tcpOnly) {
    const response = await exchangeUdp(server, query, options.timeoutMs, options.check);
    const truncated = (response.readUInt16BE(2) & 0x0200) !== 0;
    if (!truncated) return { response, transport: 'udp' };
  }
  return { response: await exchangeTcp(server, query, options.timeoutMs, options.check), transport: 'tcp' };
}
