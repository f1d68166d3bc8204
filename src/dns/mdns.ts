// mDNS / DNS-SD (RFC 6762, RFC 6763) with multicast-dns: announces `_vlmcs._tcp.local` (PTR,
// SRV, TXT, A/AAAA), answers queries for it and withdraws it (TTL 0) on shutdown. Windows
// clients never use mDNS to find a KMS host (they query DNS SRV, PROTOCOL.md §8.1): this is
// for people and tools (avahi-browse, dns-sd, network scanners) looking for the appliance.
import dgram, { type RemoteInfo } from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import makeMdns from 'multicast-dns';
import type { Answer, Question } from 'dns-packet';
import type { AppConfig } from '../config/defaults';
import { ProtocolError } from '../errors';
import { decodeMessage } from '../protocol/dns/message';
import { addressGroup } from '../net/address-group';
import { buildNetworkMatcher, type NetworkMatcher } from '../net/networks';
import type { DnsLog } from './dns-responder';
import { createRateLimiter } from './rate-limiter';

export const MDNS_SERVICE = '_vlmcs._tcp.local';
const SERVICES_ENUMERATION = '_services._dns-sd._udp.local'; // RFC 6763 §9
const MDNS_PORT = 5353;
// RFC 6762 §10: host-bound records 120 s, the others 75 minutes.
const HOST_TTL = 120;
const SERVICE_TTL = 4500;
// RFC 6762 §6.7: answers to legacy (non-5353) queriers carry TTLs of at most 10 s.
const LEGACY_UNICAST_TTL = 10;
// RFC 6762 §6: the same records are multicast at most once a second, however often they are asked
// for; unicast replies (legacy queriers, QU questions) are rate-limited per source like the DNS
// responder's, so a flood of queries is not turned into a flood of replies on the link.
const MULTICAST_MIN_INTERVAL_MS = 1000;
// RFC 6762 §6: the one exception, a probe for a name we hold, is answered if the record was not
// multicast in the last 250 ms: a prober takes a name nobody defended within its 750 ms of probes.
const PROBE_ANSWER_MIN_INTERVAL_MS = 250;
const UNICAST_RATE = { responsesPerSecond: 10, burst: 20 };
// Unicast replies in all: every address of a local /16 (spoofed sources on the link) at 10 a second
// each would still reflect tens of thousands of replies a second; multicast queriers (every real
// mDNS browser) are answered whatever this says.
const UNICAST_TOTAL_RATE = { responsesPerSecond: 50, burst: 100 };
// Another host claiming our names is logged at most this often per name.
const CONFLICT_LOG_INTERVAL_MS = 10 * 60_000;
const CLASS_IN_QU = 0x8001; // IN with the unicast-response bit
const CLASS_ANY_QU = 0x80ff;
/** Question classes our (IN) records answer, as dns-packet names them. */
const IN_OR_ANY = new Set(['IN', 'ANY', `UNKNOWN_${CLASS_IN_QU}`, `UNKNOWN_${CLASS_ANY_QU}`]);
// How long the list of directly connected networks is trusted before it is read again.
const LINK_CHECK_MS = 5000;
// RFC 6762 §17: an mDNS packet never exceeds 9000 bytes, IP and UDP headers included.
const MAX_MDNS_PACKET = 9000;

/**
 * Why a datagram is not worth multicast-dns's decoder, or null. That decoder follows compression
 * pointers without a bound: one 64 KiB datagram of pointers to pointers held the event loop half
 * a second. Our strict codec (linear, a bounded pointer walk) looks first.
 */
function rejectPacket(msg: Buffer): string | null {
  if (msg.length > MAX_MDNS_PACKET) return `${msg.length}-byte datagram, longer than an mDNS packet may be (RFC 6762 §17)`;
  try {
    decodeMessage(msg);
    return null;
  } catch (err) {
    if (err instanceof ProtocolError) return err.message;
    throw err;
  }
}

/** Drops the datagrams rejectPacket refuses before any 'message' listener (multicast-dns's) sees them. */
function guardIncoming(socket: dgram.Socket, log: DnsLog): void {
  const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
  (socket as { emit: typeof emit }).emit = (event, ...args) => {
    if (event === 'message' && Buffer.isBuffer(args[0])) {
      const why = rejectPacket(args[0]);
      if (why) {
        const from = args[1] as RemoteInfo | undefined;
        log.debug({ code: 'KMS_ERR_DNS_MALFORMED', client: from?.address, reason: why }, 'mDNS packet ignored');
        return false;
      }
    }
    return emit(event, ...args);
  };
}

/** What identifies a record's data, for known answers (RFC 6762 §7.1) and conflicts (§9). */
function recordKey(r: Pick<Answer, 'name' | 'type'> & { data?: unknown }): string {
  const d = r.data as unknown;
  let data: string;
  if (typeof d === 'string') data = r.type === 'PTR' ? d.toLowerCase() : d;
  else if (Array.isArray(d)) data = d.map((x) => String(x)).join('\u0000');
  else if (d !== null && typeof d === 'object' && 'target' in d) {
    const srv = d as { priority?: number; weight?: number; port?: number; target?: string };
    data = `${srv.priority} ${srv.weight} ${srv.port} ${String(srv.target).toLowerCase()}`;
  } else data = String(d);
  return `${r.name.toLowerCase()} ${r.type} ${data}`;
}

/**
 * RFC 6762 §7.1: a querier lists the answers it already holds; one of ours held with at least half
 * its TTL left is not sent again.
 */
function knownAnswers(query: makeMdns.QueryPacket): Map<string, number> {
  const known = new Map<string, number>(); // record → the longest TTL the querier holds it with
  for (const a of (query as { answers?: Answer[] }).answers ?? []) {
    const key = recordKey(a);
    known.set(key, Math.max(known.get(key) ?? 0, (a as { ttl?: number }).ttl ?? 0));
  }
  return known;
}

function isKnown(r: Answer, known: ReadonlyMap<string, number>): boolean {
  return known.size > 0 && (known.get(recordKey(r)) ?? -1) >= ((r as { ttl?: number }).ttl ?? HOST_TTL) / 2;
}

/**
 * RFC 6762 §11: unicast replies only to sources on a directly connected network (the interfaces'
 * subnets, link-local addresses), or the responder reflects queries from anywhere UDP 5353 reaches.
 */
function onLinkChecker(): (address: string) => boolean {
  let matcher: NetworkMatcher = () => false;
  let readAt = -Infinity;
  return (address) => {
    const now = Date.now();
    if (now - readAt >= LINK_CHECK_MS) {
      readAt = now;
      const cidrs = ['fe80::/10', '169.254.0.0/16']; // link-local: on the link by definition
      for (const list of Object.values(os.networkInterfaces()))
        for (const i of list ?? []) if (i.cidr) cidrs.push(i.cidr.replace(/%[^/]*/, ''));
      try {
        matcher = buildNetworkMatcher(cidrs, 'nobody');
      } catch {
        matcher = buildNetworkMatcher(['fe80::/10', '169.254.0.0/16'], 'nobody');
      }
    }
    return matcher(address);
  };
}

export interface MdnsContext {
  readonly kmsPort: number;
  readonly hostName: string;
  addresses(): string[];
  readonly log: DnsLog;
}

export interface MdnsOptions {
  /** multicast-dns socket options; tests bind to 127.0.0.1 with `multicast: false`. */
  readonly socket?: makeMdns.Options;
  /** Where unsolicited announcements go; the mDNS group by default. */
  readonly announceTo?: { readonly address: string; readonly port: number };
  /** Delays of the announcements after start (RFC 6762 §8.3: two, one second apart). */
  readonly announceDelaysMs?: readonly number[];
  /** The clock of the rate limits (tests freeze it). */
  readonly now?: () => number;
}

export interface MdnsHandle {
  readonly instance: string;
  /** True once bound and announcing; false (and a log line) when the socket could not bind. */
  readonly ready: Promise<boolean>;
  /** Sends the goodbye (TTL 0) and closes the socket. */
  stop(): Promise<void>;
}

export interface MdnsNames {
  readonly instance: string;
  readonly host: string;
}

/** The DNS-SD instance and host names; dots are not allowed inside our labels. */
export function mdnsNames(instanceName: string, hostName: string): MdnsNames {
  const short = (hostName.split('.')[0] || 'kms-appliance').replace(/[^A-Za-z0-9-]/g, '-');
  const label = (instanceName || `KMS on ${short}`).replace(/\./g, '-');
  return { instance: `${label}.${MDNS_SERVICE}`, host: `${short}.local` };
}

/** Every record this appliance publishes; `ttl` overrides all TTLs (0 = goodbye). */
export function buildMdnsRecords(names: MdnsNames, port: number, addresses: readonly string[], ttl?: number): Answer[] {
  const t = (d: number): number => (ttl === undefined ? d : ttl);
  const records: Answer[] = [
    { name: MDNS_SERVICE, type: 'PTR', ttl: t(SERVICE_TTL), data: names.instance },
    { name: SERVICES_ENUMERATION, type: 'PTR', ttl: t(SERVICE_TTL), data: MDNS_SERVICE },
    { name: names.instance, type: 'SRV', ttl: t(HOST_TTL), flush: true, data: { priority: 0, weight: 0, port, target: names.host } },
    { name: names.instance, type: 'TXT', ttl: t(SERVICE_TTL), flush: true, data: ['txtvers=1', `port=${port}`] },
  ];
  for (const a of addresses) {
    if (net.isIPv4(a)) records.push({ name: names.host, type: 'A', ttl: t(HOST_TTL), flush: true, data: a });
    else if (net.isIPv6(a)) records.push({ name: names.host, type: 'AAAA', ttl: t(HOST_TTL), flush: true, data: a.replace(/%.*$/, '') });
  }
  return records;
}

/** Answers and additional records for one question (RFC 6763 §12 says what to add). */
export function answerMdnsQuestion(
  q: Pick<Question, 'name' | 'type'>,
  records: readonly Answer[],
): { answers: Answer[]; additionals: Answer[] } {
  const name = q.name.toLowerCase();
  const answers = records.filter((r) => r.name.toLowerCase() === name && ((q.type as string) === 'ANY' || r.type === q.type));
  const additionals: Answer[] = [];
  const add = (r: Answer): void => {
    if (!answers.includes(r) && !additionals.includes(r)) additionals.push(r);
  };
  for (const a of answers) {
    if (a.type === 'PTR' && a.name.toLowerCase() === MDNS_SERVICE) {
      for (const r of records) if (r.name === a.data && (r.type === 'SRV' || r.type === 'TXT')) add(r);
    }
  }
  for (const a of [...answers, ...additionals]) {
    if (a.type === 'SRV') for (const r of records) if ((r.type === 'A' || r.type === 'AAAA') && r.name === a.data.target) add(r);
  }
  return { answers, additionals };
}

/** Starts at once; `ready` says whether the socket bound. Never throws for socket errors. */
export function startMdns(config: AppConfig['dns']['mdns'], context: MdnsContext, options: MdnsOptions = {}): MdnsHandle {
  const names = mdnsNames(config.instanceName, context.hostName);
  const records = (): Answer[] => buildMdnsRecords(names, context.kmsPort, context.addresses());
  // Queries are answered from a record set read at most once per LINK_CHECK_MS: reading the
  // machine's addresses costs several times a packet, and any host on the link can send packets.
  let answerSet: { readonly at: number; readonly records: Answer[] } | undefined;
  const recordsForAnswers = (): Answer[] => {
    const now = Date.now();
    if (!answerSet || now - answerSet.at >= LINK_CHECK_MS) answerSet = { at: now, records: records() };
    return answerSet.records;
  };
  const log = context.log;
  const socketOptions = options.socket ?? {};
  const socket =
    socketOptions.socket ?? dgram.createSocket({ type: socketOptions.type ?? 'udp4', reuseAddr: socketOptions.reuseAddr !== false });
  guardIncoming(socket, log);
  const mdns = makeMdns({ ...socketOptions, socket });
  const announceTarget = options.announceTo ? { port: options.announceTo.port, address: options.announceTo.address } : undefined;
  const timers: NodeJS.Timeout[] = [];
  let state: 'starting' | 'up' | 'failed' | 'stopped' = 'starting';

  const sendAnnouncement = (answers: Answer[], cb?: () => void): void => {
    const done = (err: Error | null): void => {
      if (err) log.warn({ reason: err.message }, 'mDNS announcement not sent');
      cb?.();
    };
    if (announceTarget) mdns.respond({ answers }, announceTarget, done);
    else mdns.respond({ answers }, done);
  };

  mdns.on('warning', (err: Error) => log.debug({ code: 'KMS_ERR_DNS_MALFORMED', reason: err.message }, 'mDNS packet ignored'));
  const clock = options.now ?? Date.now;
  const unicastLimiter = createRateLimiter(UNICAST_RATE);
  const unicastTotal = createRateLimiter(UNICAST_TOTAL_RATE, 1);
  const onLink = onLinkChecker();
  // RFC 6762 §6: per record, not per responder: one querier asking for one record every second
  // must not silence the answers to everyone asking for the others. Keys are our own records only.
  const lastMulticast = new Map<string, number>();
  const multicastable = (r: Answer, now: number, minInterval: number): boolean =>
    now - (lastMulticast.get(recordKey(r)) ?? -Infinity) >= minInterval;
  const conflictLoggedAt = new Map<string, number>();
  mdns.on('response', (response: makeMdns.ResponsePacket, rinfo: RemoteInfo) => {
    if (state !== 'up') return;
    const ours = recordsForAnswers();
    const names = new Set(ours.map((r) => r.name.toLowerCase()));
    const keys = new Set(ours.map(recordKey));
    for (const r of [...(response.answers ?? []), ...(response.additionals ?? [])]) {
      const name = r.name.toLowerCase();
      const unique = r.type === 'SRV' || r.type === 'TXT' || r.type === 'A' || r.type === 'AAAA';
      if (!unique || !names.has(name) || (r as { ttl?: number }).ttl === 0 || keys.has(recordKey(r))) continue;
      // RFC 6762 §9 would have us rename; a single spoofed packet could then make the box change its
      // name at will (and flap). It keeps its records and answers, and the admin reads who else uses it.
      const now = clock();
      if (now - (conflictLoggedAt.get(name) ?? -Infinity) < CONFLICT_LOG_INTERVAL_MS) continue;
      if (conflictLoggedAt.size > 64) conflictLoggedAt.clear();
      conflictLoggedAt.set(name, now);
      log.warn(
        { code: 'KMS_ERR_MDNS_CONFLICT', name: r.name, type: r.type, other: rinfo.address },
        `mDNS: ${rinfo.address} also announces ${r.name} (${r.type}) with other data; this box keeps answering for it. ` +
          'If that host is real, give one of the two another name (dns.mdns.instanceName, or the host name)',
      );
    }
  });
  mdns.on('query', (query: makeMdns.QueryPacket, rinfo: RemoteInfo) => {
    if (state !== 'up') return;
    if (rinfo.port === 0) {
      // Only a raw socket sends from port 0; multicast-dns would throw sending the reply there.
      log.debug({ code: 'KMS_ERR_DNS_MALFORMED', client: rinfo.address }, 'mDNS query from source port 0 ignored');
      return;
    }
    const all = recordsForAnswers();
    const known = knownAnswers(query);
    const answers: Answer[] = [];
    const additionals: Answer[] = [];
    // The questions answered, once each: the only ones a legacy reply repeats. Echoing all of them
    // turned a query of compressed repeats into a reply many times its size (amplification).
    const answered = new Map<string, Question>();
    let unicast = rinfo.port !== MDNS_PORT;
    for (const q of query.questions) {
      const klass = q.class as unknown;
      // Our records are of class IN: a question of another class (CH, HS, …) is not about them.
      if (!IN_OR_ANY.has(String(klass))) continue;
      if (String(klass).startsWith('UNKNOWN_')) unicast = true; // dns-packet names the QU bit this way
      const r = answerMdnsQuestion(q, all);
      r.answers = r.answers.filter((a) => !isKnown(a, known));
      if (r.answers.length > 0) answered.set(`${q.name.toLowerCase()} ${q.type} ${String(klass)}`, q);
      for (const a of r.answers) if (!answers.includes(a)) answers.push(a);
      for (const a of r.additionals) if (!additionals.includes(a) && !answers.includes(a)) additionals.push(a);
    }
    if (answers.length === 0) return; // mDNS responders stay silent when they know nothing (RFC 6762 §6)
    if (unicast && !onLink(rinfo.address)) {
      log.debug(
        { code: 'KMS_ERR_DNS_REFUSED', client: rinfo.address },
        'mDNS query from outside the local networks ignored (RFC 6762 §11)',
      );
      return;
    }
    const now = clock();
    if (unicast) {
      if (!unicastLimiter.allow(addressGroup(rinfo.address), now) || !unicastTotal.allow('all', now)) return;
    } else {
      // A probe (proposed records in the authority section, RFC 6762 §8.1) for a name we hold is
      // answered sooner: silence would hand the name to the prober.
      const interval = (query.authorities ?? []).length > 0 ? PROBE_ANSWER_MIN_INTERVAL_MS : MULTICAST_MIN_INTERVAL_MS;
      const fresh = (list: Answer[]): Answer[] => list.filter((a) => multicastable(a, now, interval));
      const due = fresh(answers);
      if (due.length === 0) return;
      answers.splice(0, answers.length, ...due);
      additionals.splice(0, additionals.length, ...fresh(additionals));
      for (const a of [...answers, ...additionals]) lastMulticast.set(recordKey(a), now);
      if (lastMulticast.size > 256) lastMulticast.clear(); // our record set changed many times over
    }
    if (unicast) {
      const cap = (a: Answer): Answer =>
        ({ ...a, ttl: Math.min((a as { ttl?: number }).ttl ?? HOST_TTL, LEGACY_UNICAST_TTL), flush: false }) as Answer;
      // RFC 6762 §6.7: a legacy querier gets its ID and question back, by unicast.
      mdns.respond(
        { id: query.id, questions: [...answered.values()], answers: answers.map(cap), additionals: additionals.map(cap) },
        { port: rinfo.port, address: rinfo.address },
      );
    } else if (announceTarget) {
      mdns.respond({ answers, additionals }, announceTarget);
    } else {
      mdns.respond({ answers, additionals });
    }
  });

  const ready = new Promise<boolean>((resolve) => {
    mdns.on('error', (err: Error) => {
      if (state === 'starting') {
        state = 'failed';
        log.warn(
          { code: 'KMS_ERR_DNS_LISTEN', reason: err.message },
          'mDNS responder could not bind its socket; _vlmcs._tcp.local is not announced',
        );
        resolve(false);
      } else {
        log.warn({ reason: err.message }, 'mDNS socket error');
      }
    });
    mdns.once('ready', () => {
      if (state !== 'starting') return resolve(false);
      state = 'up';
      log.info(
        { service: MDNS_SERVICE, instance: names.instance, host: names.host, port: context.kmsPort },
        'mDNS: announcing the KMS host as _vlmcs._tcp.local for people and tools; Windows clients do not use mDNS to find a KMS host ' +
          '(they query DNS SRV)',
      );
      for (const delay of options.announceDelaysMs ?? [0, 1000]) {
        const timer = setTimeout(() => sendAnnouncement(records()), delay);
        timer.unref();
        timers.push(timer);
      }
      resolve(true);
    });
  });

  let stopping: Promise<void> | undefined;
  return {
    instance: names.instance,
    ready,
    stop: () =>
      (stopping ??= new Promise<void>((done) => {
        for (const timer of timers) clearTimeout(timer);
        const wasUp = state === 'up';
        state = 'stopped';
        if (!wasUp) return mdns.destroy(() => done());
        // RFC 6762 §10.1: a goodbye is the records again with TTL 0.
        sendAnnouncement(buildMdnsRecords(names, context.kmsPort, context.addresses(), 0), () => mdns.destroy(() => done()));
      })),
  };
}
