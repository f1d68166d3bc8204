// DNS over UDP on dns2's UDPServer (a dgram.Socket), through its typed API only: the socket type,
// listen(), close(), send() and handle(), the per-datagram entry point. handle() is overridden so
// the raw bytes go to our responder (strict codec, precomputed answers patched per query): dns2's
// own handle() runs its lenient Packet.parse on every datagram (~24 µs each here, more than twice
// our whole answer) and hides the bytes a FORMERR or a patched answer needs.
import type dgram from 'node:dgram';
import DNS from 'dns2';
import type { ErrorCode } from '../errors';
import { addressGroup } from '../net/address-group';
import type { DnsClient } from './dns-responder';
import { unmapIPv4 } from '../net/mapped-ipv4';
import type { RateLimiter } from './rate-limiter';
import { truncatedReply } from '../protocol/dns/truncated-reply';

export interface DnsUdpCounters {
  /** UDP replies not sent because the socket's send queue was full. */
  udpDropped: number;
  rateLimited: number;
  /** Of those, the ones answered with an empty truncated reply (dns.rateLimit.slip). */
  slipped: number;
}

export interface DnsUdpOptions {
  /** UDP's own limiter: a spoofed flood can drain it, so TCP has another (dns-server.ts). */
  readonly limiter: RateLimiter;
  /** Every slip-th query over the limit gets an empty truncated reply instead of silence; 0 never. */
  readonly slip: number;
  /** A reply now, silence (null) or a reply later; never throws. */
  respond(data: Buffer, client: DnsClient): Buffer | null | Promise<Buffer | null>;
  onReply(reply: Buffer): void;
  onLimit(code: ErrorCode, client: DnsClient, group: string, reason: string): void;
  readonly counters: DnsUdpCounters;
}

function limitedReason(slip: number): string {
  if (slip <= 0) return 'responses dropped: over dns.rateLimit';
  return (
    `responses dropped: over dns.rateLimit (one in ${slip} answered empty with TC set, ` +
    'so a client whose address a flood spoofs asks again over TCP)'
  );
}

// Datagrams waiting in the socket's send queue before replies are dropped (the kernel buffer is
// full: replying faster only grows memory).
const UDP_SEND_QUEUE_LIMIT = 1024;

export class DnsUdpServer extends DNS.UDPServer {
  readonly #options: DnsUdpOptions;
  #open = true;
  // The replies of one event-loop turn, sent together in its check phase. dns2's socket resolves
  // every destination with dns.lookup, which defers each send to a process.nextTick; queued per
  // datagram, that tick machinery ran once per query (~0.7 µs of a ~10 µs answer), sent together
  // it runs once per turn. A turn reads at most a few dozen datagrams per socket (libuv's batch).
  #answers: Buffer[] = [];
  /** Queries over the limit since the last truncated reply (dns.rateLimit.slip). */
  #sinceSlip = 0;
  /** Made once: a flood's every limited datagram passes it to onLimit. */
  readonly #limitedReason: string;
  #peers: dgram.RemoteInfo[] = [];
  readonly #sendBatch = (): void => {
    const answers = this.#answers;
    const peers = this.#peers;
    this.#answers = [];
    this.#peers = [];
    for (let i = 0; i < answers.length; i++) this.#reply(answers[i]!, peers[i]!);
  };

  constructor(type: 'udp4' | 'udp6', options: DnsUdpOptions) {
    super({ type });
    this.#options = options;
    this.#limitedReason = limitedReason(options.slip);
    this.once('close', () => {
      this.#open = false;
    });
  }

  override handle(data: Buffer, rinfo: dgram.RemoteInfo): void {
    const o = this.#options;
    const client: DnsClient = { address: unmapIPv4(rinfo.address), port: rinfo.port, transport: 'udp' };
    const group = addressGroup(client.address);
    if (rinfo.port === 0) {
      // RFC 768: source port 0 means "no reply"; only a raw socket sends it, and Node's send()
      // throws at once for port 0, which would escape the reply batch and end the process.
      o.onLimit('KMS_ERR_DNS_MALFORMED', client, group, 'datagram from source port 0 (a crafted packet); it cannot be answered, dropped');
      return;
    }
    if (!o.limiter.allow(group, Date.now())) {
      o.counters.rateLimited++;
      o.onLimit('KMS_ERR_DNS_RATE_LIMITED', client, group, this.#limitedReason);
      if (o.slip > 0 && ++this.#sinceSlip >= o.slip) {
        this.#sinceSlip = 0;
        const reply = truncatedReply(data);
        if (reply !== null) {
          o.counters.slipped++;
          this.#queue(reply, rinfo);
        }
      }
      return;
    }
    const answer = o.respond(data, client);
    if (answer instanceof Promise) void answer.then((a) => this.#reply(a, rinfo));
    else if (answer) this.#queue(answer, rinfo);
  }

  #queue(answer: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.#answers.length === 0) setImmediate(this.#sendBatch);
    this.#answers.push(answer);
    this.#peers.push(rinfo);
  }

  #reply(answer: Buffer | null, rinfo: dgram.RemoteInfo): void {
    // A forwarded answer may arrive after close().
    if (!answer || !this.#open) return;
    if (this.getSendQueueCount() >= UDP_SEND_QUEUE_LIMIT) {
      this.#options.counters.udpDropped++;
      return;
    }
    this.#options.onReply(answer);
    // To the address as received (a mapped one on a dual-stack socket), not the normalised one.
    // send() throws for what it cannot address; one peer's reply must not end the batch or the process.
    try {
      this.send(answer, rinfo.port, rinfo.address);
    } catch {
      this.#options.counters.udpDropped++;
    }
  }
}
