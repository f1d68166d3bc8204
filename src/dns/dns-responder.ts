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
  encodingLength,
  readSimpleQuery,
  EMPTY_HEADER,
  HEADER_LENGTH,
  OPCODE,
  RCODE,
  RR_CLASS,
  RR_TYPE,
  type DecodedMessage,
  type DnsHeader,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  type SimpleQuery,
} from '../protocol/dns/message';
import { decodeName } from '../protocol/dns/names';
import { buildNetworkMatcher } from '../net/networks';
import { buildDnsAnswer, SRV_LABEL, type DnsAnswer } from './srv-answers';

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
const CLASSIC_UDP_LIMIT = 512;
// What we advertise and never exceed over UDP, whatever the client offers: the DNS Flag Day
// 2020 size, which avoids IP fragmentation on ordinary paths.
const MAX_UDP_PAYLOAD = 1232;
const EDNS_VERSION = 0;
// The longest message decoded in full. A real query is a header, one name (at most 255 octets),
// an OPT (padded to 468 bytes at most, RFC 8467) and a TSIG: well under this. Longer ones are
// answered FORMERR from the header alone: decoding a message of chained compression pointers
// costs time growing with the square of its length (about 30 ms for 64 KiB), and the rate limit
// counts messages, not bytes.
const MAX_DECODED_MESSAGE = 4096;

/** A reply now, silence (null), or a reply later (only forwarding waits for another server). */
export type DnsResponder = (raw: Buffer, client: DnsClient) => Buffer | null | Promise<Buffer | null>;

/** Logged once per event by the caller; carries the code and the reason. */
export interface ResponderEvent {
  readonly code: ErrorCode;
  readonly client: DnsClient;
  readonly reason: string;
  readonly details?: Record<string, unknown>;
}

// Encoded answers kept per (transport, UDP size, forwarding allowed, type, class, name). The set
// of names is the attacker's to choose, so the cache is bounded and simply starts over when full.
const ANSWER_CACHE_ENTRIES = 4096;
// How often the machine's addresses (published for targets without their own) are looked at.
const ADDRESS_CHECK_MS = 1000;

interface CachedAnswer {
  /** The reply with ID 0 and RD/CD clear; the question bytes are the client's, copied in. */
  readonly bytes: Buffer;
  /** Not ours to answer, and this client may use the forwarder: take the full path. */
  readonly forward: boolean;
  readonly refused: boolean;
}

export function createDnsResponder(
  settings: DnsResponderSettings,
  context: DnsResponderContext,
  deps: {
    readonly forward?: Forwarder;
    readonly serial?: number;
    readonly onEvent?: (e: ResponderEvent) => void;
    /** false: every query takes the full decode/encode path (tests compare both). */
    readonly answerCache?: boolean;
    readonly nowMs?: () => number;
  },
): DnsResponder {
  const nowMs = deps.nowMs ?? Date.now;
  const useCache = deps.answerCache ?? true;
  const mayForward = buildNetworkMatcher(
    settings.forwarding.enabled && settings.forwarding.upstream.length > 0 ? settings.forwarding.allowNetworks : [],
    'nobody',
  );
  // An upstream that forwards back to us would make a loop; its own queries are never forwarded.
  const upstreamHosts = new Set(
    settings.forwarding.upstream.map((u) => u.replace(/^\[([^\]]+)\].*$/, '$1').replace(/^([^:]+):\d+$/, '$1')),
  );
  const serial = deps.serial ?? 1;
  const report = deps.onEvent ?? (() => undefined);
  const canForwardFor = (client: DnsClient): boolean =>
    deps.forward !== undefined && mayForward(client.address) && !upstreamHosts.has(client.address);

  // By shape (UDP size, EDNS, forwarding allowed, type: a small integer), class, then name as read:
  // no key string is built per query (the concatenated key cost ~170 ns of a ~850 ns answer).
  const cache = new Map<number, Map<number, Map<string, CachedAnswer>>>();
  let cachedEntries = 0;
  const clearCache = (): void => {
    cache.clear();
    cachedEntries = 0;
  };
  let addresses = context.addresses();
  let addressesKey = addresses.join(' ');
  let addressesCheckedAt = nowMs();
  const currentAddresses = (): readonly string[] => {
    const now = nowMs();
    if (now - addressesCheckedAt >= ADDRESS_CHECK_MS) {
      addressesCheckedAt = now;
      const next = context.addresses();
      const key = next.join(' ');
      if (key !== addressesKey) {
        addresses = next;
        addressesKey = key;
        clearCache();
      }
    }
    return addresses;
  };

  const answerFromZones = (question: DnsQuestion): DnsAnswer =>
    buildDnsAnswer(settings.zones, question, {
      kmsPort: context.kmsPort,
      hostName: context.hostName,
      addresses: currentAddresses(),
      serial,
    });

  const reportRefused = (client: DnsClient, question: DnsQuestion, rd: boolean): void => {
    report({
      code: 'KMS_ERR_DNS_REFUSED',
      client,
      reason: `query for ${question.name} outside the configured zones`,
      details: { name: question.name, type: question.type, rd },
    });
  };

  /** The zone answer for one question, as it goes on the wire for this client. */
  const encodeAnswer = (
    query: DnsHeader,
    question: DnsQuestion,
    answer: DnsAnswer,
    edns: boolean,
    udpLimit: number,
    client: DnsClient,
    canForward: boolean,
    dnssecOk = false,
  ): Buffer => {
    const response: DnsMessage = {
      header: { ...responseHeader(query), aa: answer.authoritative && answer.rcode !== RCODE.REFUSED, ra: canForward, rcode: answer.rcode },
      questions: [question],
      answers: answer.answers,
      authorities: answer.authorities,
      additionals: edns ? [...answer.additionals, ourOpt(dnssecOk)] : answer.additionals,
    };
    return client.transport === 'udp' ? encodeForUdp(response, udpLimit) : encodeMessage(response);
  };

  /** The common query, answered from the cache: only the ID, RD/CD and the question's casing change. */
  const fromCache = (raw: Buffer, q: SimpleQuery, client: DnsClient): Buffer | undefined => {
    const canForward = canForwardFor(client);
    const udpLimit = q.udpPayloadSize === 0 ? CLASSIC_UDP_LIMIT : Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_LIMIT, q.udpPayloadSize));
    const shape =
      (((client.transport === 'udp' ? udpLimit : 0) * 2 + (q.udpPayloadSize === 0 ? 0 : 1)) * 2 + (canForward ? 1 : 0)) * 0x10000 + q.type;
    currentAddresses();
    let entry = cache.get(shape)?.get(q.class)?.get(q.nameKey);
    if (!entry) {
      const question: DnsQuestion = { name: decodeName(raw, HEADER_LENGTH).name, type: q.type, class: q.class };
      const answer = answerFromZones(question);
      const forward = !answer.authoritative && canForward && question.class !== RR_CLASS.CH;
      const bytes = forward
        ? Buffer.alloc(0)
        : encodeAnswer(EMPTY_HEADER, question, answer, q.udpPayloadSize !== 0, udpLimit, client, canForward);
      entry = { bytes, forward, refused: answer.rcode === RCODE.REFUSED && !answer.authoritative };
      if (cachedEntries >= ANSWER_CACHE_ENTRIES) clearCache();
      let byClass = cache.get(shape);
      if (!byClass) cache.set(shape, (byClass = new Map()));
      let byName = byClass.get(q.class);
      if (!byName) byClass.set(q.class, (byName = new Map()));
      byName.set(q.nameKey, entry);
      cachedEntries++;
    }
    if (entry.forward) return undefined;
    if (entry.refused)
      reportRefused(client, { name: decodeName(raw, HEADER_LENGTH).name, type: q.type, class: q.class }, (raw[2]! & 0x01) !== 0);
    // TypedArray set and a byte loop: cheaper than Buffer#copy's checks for these few bytes.
    const out = Buffer.allocUnsafe(entry.bytes.length);
    out.set(entry.bytes);
    out[0] = raw[0]!;
    out[1] = raw[1]!;
    out[2] = out[2]! | (raw[2]! & 0x01); // RD
    out[3] = out[3]! | (raw[3]! & 0x10); // CD
    for (let i = HEADER_LENGTH; i < q.questionEnd; i++) out[i] = raw[i]!;
    // RFC 3225 §3: DO copied from the query. Our OPT is the last record, with empty RDATA; the
    // query's is the record after the question.
    if (q.udpPayloadSize !== 0 && (raw[q.questionEnd + 7]! & 0x80) !== 0) out[out.length - 4] = out[out.length - 4]! | 0x80;
    return out;
  };

  // The question every client asks, encoded at start for each zone in the usual shapes (UDP
  // without EDNS and with 1232 bytes, TCP): the first client is answered from the cache too.
  if (useCache) {
    for (const zone of settings.zones) {
      for (const [transport, udpPayloadSize] of [
        ['udp', 0],
        ['udp', MAX_UDP_PAYLOAD],
        ['tcp', 0],
      ] as const) {
        const opt = udpPayloadSize === 0 ? [] : [buildOptRecord(udpPayloadSize)];
        const question = { name: `${SRV_LABEL}.${zone.domain}`, type: RR_TYPE.SRV, class: RR_CLASS.IN };
        try {
          const raw = encodeMessage({ header: EMPTY_HEADER, questions: [question], answers: [], authorities: [], additionals: opt });
          const simple = readSimpleQuery(raw);
          if (simple) fromCache(raw, simple, { address: '', port: 0, transport });
        } catch {
          // A zone name the codec cannot write is answered (refused) per query instead.
        }
      }
    }
  }

  return (raw, client) => {
    // Fewer than 12 bytes: there is no ID to answer to, so silence (RFC 1035 has no reply).
    if (raw.length < HEADER_LENGTH) {
      report({
        code: 'KMS_ERR_DNS_MALFORMED',
        client,
        reason: `${raw.length}-byte message, shorter than a DNS header`,
        details: { head: raw.toString('hex') },
      });
      return null;
    }
    // Never answer a response: that is how reflection loops between servers start.
    if ((raw[2]! & 0x80) !== 0) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'a DNS response (QR=1) sent to the responder; ignored' });
      return null;
    }
    if (useCache && ((raw[2]! >> 3) & 0xf) === OPCODE.QUERY && raw.length <= MAX_DECODED_MESSAGE) {
      const simple = readSimpleQuery(raw);
      // The OPT, when there is one, is last: its options are checked here, its header was.
      const optionsOk = !simple || simple.udpPayloadSize === 0 || ednsOptionsWellFormed(raw.subarray(simple.questionEnd + 11));
      const cached = simple && optionsOk ? fromCache(raw, simple, client) : undefined;
      if (cached) return cached;
    }
    return respondInFull(raw, client);
  };

  function respondInFull(raw: Buffer, client: DnsClient): Buffer | Promise<Buffer> {
    const header = decodeHeader(raw);
    if (raw.length > MAX_DECODED_MESSAGE) {
      report({
        code: 'KMS_ERR_DNS_MALFORMED',
        client,
        reason: `${raw.length}-byte message, longer than any query (${MAX_DECODED_MESSAGE} bytes); not decoded`,
        details: { head: raw.subarray(0, 32).toString('hex') },
      });
      return encodeMessage(errorResponse(header, RCODE.FORMERR));
    }
    let query: DecodedMessage;
    try {
      query = decodeMessage(raw);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      report({
        code: 'KMS_ERR_DNS_MALFORMED',
        client,
        reason: err.message,
        details: { ...err.details, head: raw.subarray(0, 32).toString('hex') },
      });
      return encodeMessage(errorResponse(header, RCODE.FORMERR));
    }
    const opts = query.additionals.filter((r) => r.type === RR_TYPE.OPT);
    const misplacedOpt = [...query.answers, ...query.authorities].some((r) => r.type === RR_TYPE.OPT);
    // RFC 6891 §7: a request with a (sound) OPT gets one in its response, errors included.
    const soundOpt = opts.length === 1 && !misplacedOpt && opts[0]!.name === '' ? opts[0] : undefined;
    const errorOpt: DnsRecord[] = soundOpt ? [ourOpt(ednsOf(soundOpt).dnssecOk)] : [];
    if (header.opcode !== OPCODE.QUERY) {
      return encodeMessage({ ...errorResponse(header, RCODE.NOTIMP), questions: query.questions.slice(0, 1), additionals: errorOpt });
    }
    // RFC 9619: a QUERY carries exactly one question.
    const question = query.questions[0];
    if (query.questions.length !== 1 || !question) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: `QUERY with ${query.questions.length} questions` });
      return encodeMessage({ ...errorResponse(header, RCODE.FORMERR), additionals: errorOpt });
    }
    // RFC 6891 §6.1.1: more than one OPT, or an OPT whose owner is not the root, is FORMERR.
    if ((!soundOpt && opts.length > 0) || misplacedOpt) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'bad EDNS OPT record (several, misplaced or not owned by the root)' });
      return encodeMessage({ ...errorResponse(header, RCODE.FORMERR), questions: [question] });
    }
    if (opts[0] && opts[0].data.kind === 'raw' && !ednsOptionsWellFormed(opts[0].data.bytes)) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'EDNS option whose length runs past the OPT RDATA' });
      return encodeMessage({ ...errorResponse(header, RCODE.FORMERR), questions: [question] });
    }
    const tsigs = [...query.answers, ...query.authorities, ...query.additionals].filter((r) => r.type === RR_TYPE.TSIG);
    const lastAdditional = query.additionals[query.additionals.length - 1];
    const lastTsig = lastAdditional?.type === RR_TYPE.TSIG ? lastAdditional : undefined;
    // RFC 8945 §5.2: one TSIG, the last additional record, with RDATA; anything else is FORMERR.
    if (tsigs.length > 1 || (tsigs.length === 1 && (!lastTsig || lastTsig.data.kind !== 'tsig'))) {
      report({ code: 'KMS_ERR_DNS_MALFORMED', client, reason: 'TSIG record that is not the last one, or several, or empty' });
      return encodeMessage({ ...errorResponse(header, RCODE.FORMERR), questions: [question], additionals: errorOpt });
    }
    const edns = opts[0] ? ednsOf(opts[0]) : undefined;
    const udpLimit = edns ? Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_LIMIT, edns.udpPayloadSize)) : CLASSIC_UDP_LIMIT;
    const optOut: DnsRecord[] = edns ? [ourOpt(edns.dnssecOk)] : [];
    if (edns && edns.version > EDNS_VERSION) {
      // RFC 6891 §6.1.3: BADVERS (16) = extended rcode 1 in the OPT, 0 in the header.
      return encodeMessage({
        header: { ...responseHeader(header), rcode: RCODE.BADVERS & 0xf },
        questions: [question],
        answers: [],
        authorities: [],
        additionals: [ourOpt(edns.dnssecOk, RCODE.BADVERS >> 4)],
      });
    }

    if (lastTsig?.data.kind === 'tsig') {
      // RFC 8945 §5.2.1: this responder holds no TSIG keys, so a signed request cannot be
      // authenticated: NOTAUTH with TSIG error BADKEY, unsigned (an empty MAC, §5.3.2).
      report({
        code: 'KMS_ERR_DNS_TSIG_BAD',
        client,
        reason: `query signed with TSIG key "${lastTsig.name}"; this responder knows no TSIG keys: answered NOTAUTH (BADKEY)`,
      });
      const t = lastTsig.data;
      const unsigned: DnsRecord = {
        name: lastTsig.name,
        type: RR_TYPE.TSIG,
        class: RR_CLASS.ANY,
        ttl: 0,
        data: { ...t, mac: Buffer.alloc(0), error: RCODE.BADKEY, other: Buffer.alloc(0) },
      };
      return encodeMessage({
        header: { ...responseHeader(header), rcode: RCODE.NOTAUTH },
        questions: [question],
        answers: [],
        authorities: [],
        additionals: [...optOut, unsigned],
      });
    }
    const answer = answerFromZones(question);
    const canForward = canForwardFor(client);
    if (!answer.authoritative && canForward && question.class !== RR_CLASS.CH)
      return forwardQuery(raw, client, header, question, udpLimit, optOut);
    if (answer.rcode === RCODE.REFUSED && !answer.authoritative) reportRefused(client, question, header.rd);
    return encodeAnswer(header, question, answer, edns !== undefined, udpLimit, client, canForward, edns?.dnssecOk);
  }

  async function forwardQuery(
    raw: Buffer,
    client: DnsClient,
    header: DnsHeader,
    question: DnsQuestion,
    udpLimit: number,
    optOut: DnsRecord[],
  ): Promise<Buffer> {
    try {
      const upstream = Buffer.from(await deps.forward!(raw, client));
      // We answer from another server's data: recursion available, not authoritative.
      if (upstream.length >= HEADER_LENGTH) upstream.writeUInt16BE((upstream.readUInt16BE(2) | 0x0080) & ~0x0400, 2);
      if (client.transport === 'tcp' || upstream.length <= udpLimit) return upstream;
      return encodeMessage({
        header: { ...responseHeader(header), tc: true, ra: true },
        questions: [question],
        answers: [],
        authorities: [],
        additionals: optOut,
      });
    } catch (err) {
      report({
        code: 'KMS_ERR_DNS_SERVER_UNREACHABLE',
        client,
        reason: `forwarding failed: ${err instanceof Error ? err.message : String(err)}`,
        details: { name: question.name },
      });
      return encodeMessage({
        header: { ...responseHeader(header), rcode: RCODE.SERVFAIL, ra: true },
        questions: [question],
        answers: [],
        authorities: [],
        additionals: optOut,
      });
    }
  }
}

function responseHeader(query: DnsHeader): DnsHeader {
  return { ...EMPTY_HEADER, id: query.id, qr: true, opcode: query.opcode, rd: query.rd, cd: query.cd };
}

function errorResponse(query: DnsHeader, rcode: number): DnsMessage {
  return { header: { ...responseHeader(query), rcode }, questions: [], answers: [], authorities: [], additionals: [] };
}

/** The OPT of our answers: the size we never exceed, and DO copied from the query (RFC 3225 §3). */
function ourOpt(dnssecOk: boolean, extendedRcode = 0): DnsRecord {
  const opt = buildOptRecord(MAX_UDP_PAYLOAD, extendedRcode);
  return dnssecOk ? { ...opt, ttl: (opt.ttl | 0x8000) >>> 0 } : opt;
}

/** RFC 6891 §6.1.2: the OPT RDATA is whole {code, length, data} options, none running past it. */
function ednsOptionsWellFormed(rdata: Buffer): boolean {
  let p = 0;
  while (p < rdata.length) {
    if (p + 4 > rdata.length) return false;
    p += 4 + rdata.readUInt16BE(p + 2);
  }
  return p === rdata.length;
}

/**
 * Fits an answer into `limit` bytes. Additional data may be dropped silently (RFC 2181 §9);
 * when the answer or authority section itself does not fit, the reply keeps only the question
 * (and OPT) and sets TC so the client asks again over TCP (RFC 1035 §4.2.1, RFC 7766 §5).
 */
function encodeForUdp(response: DnsMessage, limit: number): Buffer {
  if (encodingLength(response) <= limit) return encodeMessage(response);
  const opt = response.additionals.filter((r) => r.type === RR_TYPE.OPT);
  const noExtra: DnsMessage = { ...response, additionals: opt };
  if (encodingLength(noExtra) <= limit) return encodeMessage(noExtra);
  return encodeMessage({ ...response, header: { ...response.header, tc: true }, answers: [], authorities: [], additionals: opt });
}

/** For callers that must turn an unexpected error into a log line rather than a crash. */
export function describeError(err: unknown): { code: string; message: string } {
  if (err instanceof KmsError) return { code: err.code, message: err.message };
  return { code: 'UNEXPECTED', message: err instanceof Error ? err.message : String(err) };
}
