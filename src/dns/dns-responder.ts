// One DNS message in, one answer (or silence) out: the policy of the DNS responder without its
// sockets. Decoding errors, opcodes, EDNS(0), forwarding ACL and UDP truncation are decided here
// so they can be tested byte for byte; dns-server.ts only moves datagrams and TCP frames.
import type { DnsZoneConfig } from '../config/defaults';
import { KmsError, ProtocolError, type ErrorCode } from '../errors';
import {
  buildOptRecord,
  decodeHeader,
  decodeMessage,
  ednsOf,
  encodeMessage,
  EMPTY_HEADER,
  HEADER_LENGTH,
  OPCODE,
  RCODE,
  RR_CLASS,
  RR_TYPE,
  type DecodedMessage,
  type DnsHeader,
  type DnsMessage,
  type DnsRecord,
} from './dns-message';
import { buildAddressMatcher } from './networks';
import { buildDnsAnswer } from './srv-answers';

/** The subset of a pino logger the DNS modules use. */
export interface DnsLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface DnsClient {
  readonly address: string;
  readonly port: number;
  readonly transport: 'udp' | 'tcp';
}

/** What the responder needs from the appliance: its KMS port, its name and its addresses. */
export interface DnsResponderContext {
  readonly kmsPort: number;
  readonly hostName: string;
  addresses(): string[];
  readonly log: DnsLog;
}

export interface DnsResponderSettings {
  readonly zones: readonly DnsZoneConfig[];
  readonly forwarding: { readonly enabled: boolean; readonly upstream: readonly string[]; readonly allowNetworks: readonly string[] };
}

/** Sends the raw query upstream and returns the raw answer, or throws. */
export type Forwarder = (query: Buffer, client: DnsClient) => Promise<Buffer>;

// RFC 1035 §4.2.1: without EDNS a UDP answer is at most 512 bytes.
export const CLASSIC_UDP_LIMIT = 512;
// What we advertise and never exceed over UDP, whatever the client offers: the DNS Flag Day
// 2020 size, which avoids IP fragmentation on ordinary paths.
export const MAX_UDP_PAYLOAD = 1232;
const EDNS_VERSION = 0;

export type DnsResponder = (raw: Buffer, client: DnsClient) => Promise<Buffer | null>;

/** Logged once per event by the caller; carries the code and the reason. */
export interface ResponderEvent {
  readonly code: ErrorCode;
  readonly client: DnsClient;
  readonly reason: string;
  readonly details?: Record<string, unknown>;
}

export function createDnsResponder(
  settings: DnsResponderSettings,
  context: DnsResponderContext,
  deps: { readonly forward?: Forwarder; readonly serial?: number; readonly onEvent?: (e: ResponderEvent) => void },
): DnsResponder {
  const mayForward = buildAddressMatcher(settings.forwarding.enabled && settings.forwarding.upstream.length > 0 ? settings.forwarding.allowNetworks : []);
  // An upstream that forwards back to us would make a loop; its own queries are never forwarded.
  const upstreamHosts = new Set(settings.forwarding.upstream.map((u) => u.replace(/^\[([^\]]+)\].*$/, '$1').replace(/^([^:]+):\d+$/, '$1')));
  const serial = deps.serial ?? 1;
  const report = deps.onEvent ?? (() => undefined);

  return async (raw, client) => {
    // Fewer than 12 bytes: there is no ID to answer to, so silence (RFC 1035 has no reply).
    if (raw.length < HEADER_LENGTH) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: `${raw.length}-byte datagram, shorter than a DNS header`, details: { head: raw.toString('hex') } });
      return null;
    }
    const header = decodeHeader(raw);
    // Never answer a response: that is how reflection loops between servers start.
    if (header.qr) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'a DNS response (QR=1) sent to the responder; ignored' });
      return null;
    }
    let query: DecodedMessage;
    try {
      query = decodeMessage(raw);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: err.message, details: { ...err.details, head: raw.subarray(0, 32).toString('hex') } });
      return encodeMessage(errorResponse(header, RCODE.FORMERR));
    }
    if (header.opcode !== OPCODE.QUERY) {
      return encodeMessage({ ...errorResponse(header, RCODE.NOTIMP), questions: query.questions.slice(0, 1) });
    }
    // RFC 9619: a QUERY carries exactly one question.
    const question = query.questions[0];
    if (query.questions.length !== 1 || !question) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: `QUERY with ${query.questions.length} questions` });
      return encodeMessage(errorResponse(header, RCODE.FORMERR));
    }
    const opts = query.additionals.filter((r) => r.type === RR_TYPE.OPT);
    const misplacedOpt = [...query.answers, ...query.authorities].some((r) => r.type === RR_TYPE.OPT);
    // RFC 6891 §6.1.1: more than one OPT, or an OPT whose owner is not the root, is FORMERR.
    if (opts.length > 1 || misplacedOpt || (opts[0] && opts[0].name !== '')) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'bad EDNS OPT record (several, misplaced or not owned by the root)' });
      return encodeMessage({ ...errorResponse(header, RCODE.FORMERR), questions: [question] });
    }
    const edns = opts[0] ? ednsOf(opts[0]) : undefined;
    const udpLimit = edns ? Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_LIMIT, edns.udpPayloadSize)) : CLASSIC_UDP_LIMIT;
    const optOut: DnsRecord[] = edns ? [buildOptRecord(MAX_UDP_PAYLOAD)] : [];
    if (edns && edns.version > EDNS_VERSION) {
      // RFC 6891 §6.1.3: BADVERS (16) = extended rcode 1 in the OPT, 0 in the header.
      return encodeMessage({
        header: { ...responseHeader(header), rcode: RCODE.BADVERS & 0xf },
        questions: [question],
        answers: [],
        authorities: [],
        additionals: [buildOptRecord(MAX_UDP_PAYLOAD, RCODE.BADVERS >> 4)],
      });
    }

    const answer = buildDnsAnswer(settings.zones, question, { kmsPort: context.kmsPort, hostName: context.hostName, addresses: context.addresses(), serial });
    const canForward = deps.forward !== undefined && mayForward(client.address) && !upstreamHosts.has(client.address);
    if (!answer.authoritative && canForward && question.class !== RR_CLASS.CH) {
      try {
        const upstream = Buffer.from(await deps.forward!(raw, client));
        // We answer from another server's data: recursion available, not authoritative.
        if (upstream.length >= HEADER_LENGTH) upstream.writeUInt16BE((upstream.readUInt16BE(2) | 0x0080) & ~0x0400, 2);
        if (client.transport === 'tcp' || upstream.length <= udpLimit) return upstream;
        return encodeMessage({ header: { ...responseHeader(header), tc: true, ra: true }, questions: [question], answers: [], authorities: [], additionals: optOut });
      } catch (err) {
        report({ code: 'KMS_ERR_DNS_SERVER_UNREACHABLE', client, reason: `forwarding failed: ${err instanceof Error ? err.message : String(err)}`, details: { name: question.name } });
        return encodeMessage({ header: { ...responseHeader(header), rcode: RCODE.SERVFAIL, ra: true }, questions: [question], answers: [], authorities: [], additionals: optOut });
      }
    }
    if (answer.rcode === RCODE.REFUSED && !answer.authoritative) {
      report({ code: 'KMS_ERR_DNS_REFUSED', client, reason: `query for ${question.name} outside the configured zones`, details: { name: question.name, type: question.type, rd: header.rd } });
    }
    const response: DnsMessage = {
      header: { ...responseHeader(header), aa: answer.authoritative && answer.rcode !== RCODE.REFUSED, ra: canForward, rcode: answer.rcode },
      questions: [question],
      answers: answer.answers,
      authorities: answer.authorities,
      additionals: [...answer.additionals, ...optOut],
    };
    return client.transport === 'udp' ? encodeForUdp(response, udpLimit) : encodeMessage(response);
  };
}

function responseHeader(query: DnsHeader): DnsHeader {
  return { ...EMPTY_HEADER, id: query.id, qr: true, opcode: query.opcode, rd: query.rd, cd: query.cd };
}

function errorResponse(query: DnsHeader, rcode: number): DnsMessage {
  return { header: { ...responseHeader(query), rcode }, questions: [], answers: [], authorities: [], additionals: [] };
}

/**
 * Fits an answer into `limit` bytes. Additional data may be dropped silently (RFC 2181 §9);
 * when the answer or authority section itself does not fit, the reply keeps only the question
 * (and OPT) and sets TC so the client asks again over TCP (RFC 1035 §4.2.1, RFC 7766 §5).
 */
export function encodeForUdp(response: DnsMessage, limit: number): Buffer {
  const full = encodeMessage(response);
  if (full.length <= limit) return full;
  const opt = response.additionals.filter((r) => r.type === RR_TYPE.OPT);
  const noExtra = encodeMessage({ ...response, additionals: opt });
  if (noExtra.length <= limit) return noExtra;
  return encodeMessage({ ...response, header: { ...response.header, tc: true }, answers: [], authorities: [], additionals: opt });
}

/** For callers that must turn an unexpected error into a log line rather than a crash. */
export function describeError(err: unknown): { code: string; message: string } {
  if (err instanceof KmsError) return { code: err.code, message: err.message };
  return { code: 'UNEXPECTED', message: err instanceof Error ? err.message : String(err) };
}
