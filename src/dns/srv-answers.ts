// The authoritative answer for the configured zones, as a pure function of the configuration
// and one question: the `_vlmcs._tcp` SRV records clients look for (PROTOCOL.md §8.1, C34),
// the targets' A/AAAA, SOA and NS at the apex, and RFC 2308 negative answers. No sockets.
import { isIpv4, isIpv6 } from '../protocol/dns/addresses';
import type { DnsZoneConfig, SrvTarget } from '../config/defaults';
import { RCODE, RR_CLASS, RR_TYPE, type DnsQuestion, type DnsRecord } from '../protocol/dns/message';
import { canonicalName, isInZone } from '../protocol/dns/names';

export const SRV_LABEL = '_vlmcs._tcp';

export interface DnsAnswerOptions {
  /** The port the KMS listener actually uses (C35): published for a zone without hosts. */
  readonly kmsPort: number;
  /** This appliance's host name (short or fully qualified). */
  readonly hostName: string;
  /** This appliance's addresses, published for targets that list none. */
  readonly addresses: readonly string[];
  /** SOA serial; a value that grows with each start keeps secondaries honest. */
  readonly serial?: number;
}

export interface DnsAnswer {
  readonly rcode: number;
  /** True when the name lies inside one of our zones (we are authoritative for it). */
  readonly authoritative: boolean;
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
}

const SOA_REFRESH_SECONDS = 3600;
const SOA_RETRY_SECONDS = 600;
const SOA_EXPIRE_SECONDS = 604800;

/** The name this appliance is published under inside `zone`: its first label below the apex. */
export function selfTargetIn(zone: string, hostName: string): string {
  const host = canonicalName(hostName);
  if (host !== '' && isInZone(host, zone) && host !== canonicalName(zone)) return host;
  const first = host.split('.')[0] || 'kms';
  return `${first}.${canonicalName(zone)}`;
}

interface ZoneData {
  readonly apex: string;
  readonly ttl: number;
  readonly srvName: string;
  readonly nsName: string;
  readonly srv: readonly SrvTarget[];
  /** canonical name → its addresses (targets and the name server). */
  readonly addresses: ReadonlyMap<string, readonly string[]>;
  /** canonical names that exist, including empty non-terminals (RFC 8020). */
  readonly names: ReadonlySet<string>;
}

function zoneData(zone: DnsZoneConfig, o: DnsAnswerOptions): ZoneData {
  const apex = canonicalName(zone.domain);
  const self = selfTargetIn(apex, o.hostName);
  const srv: SrvTarget[] =
    zone.hosts.length > 0
      ? zone.hosts.map((h) => ({ ...h, target: canonicalName(h.target) }))
      : [{ target: self, port: o.kmsPort, priority: 0, weight: 0, addresses: [] }];
  const addresses = new Map<string, readonly string[]>();
  for (const h of srv) {
    const list = h.addresses.length > 0 ? h.addresses : o.addresses;
    addresses.set(h.target, [...new Set([...(addresses.get(h.target) ?? []), ...list])]);
  }
  if (!addresses.has(self)) addresses.set(self, o.addresses);
  const srvName = `${SRV_LABEL}.${apex}`;
  const names = new Set<string>();
  const addWithParents = (n: string): void => {
    if (!isInZone(n, apex)) return;
    let cur = n;
    while (cur.length > apex.length) {
      names.add(cur);
      cur = cur.slice(cur.indexOf('.') + 1);
    }
    names.add(apex);
  };
  addWithParents(srvName);
  for (const n of addresses.keys()) addWithParents(n);
  return { apex, ttl: zone.ttlSeconds, srvName, nsName: self, srv, addresses, names };
}

function addressRecords(name: string, list: readonly string[], type: number, ttl: number): DnsRecord[] {
  const out: DnsRecord[] = [];
  for (const a of list) {
    if (type === RR_TYPE.A && isIpv4(a)) out.push({ name, type, class: RR_CLASS.IN, ttl, data: { kind: 'a', address: a } });
    if (type === RR_TYPE.AAAA && isIpv6(a)) out.push({ name, type, class: RR_CLASS.IN, ttl, data: { kind: 'aaaa', address: a } });
  }
  return out;
}

function soaRecord(z: ZoneData, serial: number): DnsRecord {
  return {
    name: z.apex,
    type: RR_TYPE.SOA,
    class: RR_CLASS.IN,
    ttl: z.ttl,
    data: {
      kind: 'soa',
      mname: z.nsName,
      rname: `hostmaster.${z.apex}`,
      serial,
      refresh: SOA_REFRESH_SECONDS,
      retry: SOA_RETRY_SECONDS,
      expire: SOA_EXPIRE_SECONDS,
      minimum: z.ttl, // RFC 2308 §4: the negative-caching TTL
    },
  };
}

/** Records of `type` owned by canonical name `key`; `owner` is the spelling to answer with. */
function recordsAt(z: ZoneData, key: string, owner: string, type: number, serial: number): DnsRecord[] {
  const out: DnsRecord[] = [];
  const want = (t: number): boolean => type === t || type === RR_TYPE.ANY;
  if (key === z.apex) {
    if (want(RR_TYPE.SOA)) out.push({ ...soaRecord(z, serial), name: owner });
    if (want(RR_TYPE.NS))
      out.push({ name: owner, type: RR_TYPE.NS, class: RR_CLASS.IN, ttl: z.ttl, data: { kind: 'name', target: z.nsName } });
  }
  if (key === z.srvName && want(RR_TYPE.SRV)) {
    for (const h of z.srv) {
      out.push({
        name: owner,
        type: RR_TYPE.SRV,
        class: RR_CLASS.IN,
        ttl: z.ttl,
        data: { kind: 'srv', priority: h.priority, weight: h.weight, port: h.port, target: h.target },
      });
    }
  }
  const addrs = isInZone(key, z.apex) ? z.addresses.get(key) : undefined;
  if (addrs) {
    if (want(RR_TYPE.A)) out.push(...addressRecords(owner, addrs, RR_TYPE.A, z.ttl));
    if (want(RR_TYPE.AAAA)) out.push(...addressRecords(owner, addrs, RR_TYPE.AAAA, z.ttl));
  }
  return out;
}

/** A/AAAA for the names an answer points at (SRV targets, NS names), as additional data. */
function additionalFor(z: ZoneData, answers: readonly DnsRecord[]): DnsRecord[] {
  const targets: string[] = [];
  for (const rr of answers) {
    if (rr.data.kind === 'srv' || (rr.data.kind === 'name' && rr.type === RR_TYPE.NS)) {
      const t = canonicalName(rr.data.target);
      if (!targets.includes(t)) targets.push(t);
    }
  }
  const out: DnsRecord[] = [];
  for (const t of targets) {
    const addrs = z.addresses.get(t) ?? [];
    out.push(...addressRecords(t, addrs, RR_TYPE.A, z.ttl), ...addressRecords(t, addrs, RR_TYPE.AAAA, z.ttl));
  }
  return out;
}

const REFUSED: DnsAnswer = Object.freeze({ rcode: RCODE.REFUSED, authoritative: false, answers: [], authorities: [], additionals: [] });

/**
 * Answers one question from the zones. A name outside every zone, or a class other than IN/ANY,
 * gets REFUSED with authoritative = false (the server may forward it, PROTOCOL.md §8.1).
 */
export function buildDnsAnswer(zones: readonly DnsZoneConfig[], question: DnsQuestion, options: DnsAnswerOptions): DnsAnswer {
  if (question.class !== RR_CLASS.IN && question.class !== RR_CLASS.ANY) return REFUSED;
  const key = canonicalName(question.name);
  let zone: DnsZoneConfig | undefined;
  for (const z of zones) {
    if (isInZone(key, z.domain) && (!zone || canonicalName(z.domain).length > canonicalName(zone.domain).length)) zone = z;
  }
  if (!zone) return REFUSED;
  const z = zoneData(zone, options);
  const serial = options.serial ?? 1;
  const negative = (rcode: number): DnsAnswer => ({
    rcode,
    authoritative: true,
    answers: [],
    authorities: [soaRecord(z, serial)],
    additionals: [],
  });
  if (question.type === RR_TYPE.AXFR || question.type === RR_TYPE.IXFR) {
    // Zone transfers are not offered: the data is configuration, not a zone file.
    return { ...REFUSED, authoritative: true };
  }
  if (!z.names.has(key)) return negative(RCODE.NXDOMAIN);
  const answers = recordsAt(z, key, question.name, question.type, serial);
  if (answers.length === 0) return negative(RCODE.NOERROR); // NODATA (RFC 2308 §2.2)
  return { rcode: RCODE.NOERROR, authoritative: true, answers, authorities: [], additionals: additionalFor(z, answers) };
}
