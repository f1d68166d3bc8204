// `dns check`: discovers a KMS host the way a Windows client does (PROTOCOL.md §8.1) — SRV
// query for _vlmcs._tcp.<domain>, lowest priority first with a weighted random choice inside a
// priority (RFC 2782), the target's addresses, the next record on failure — and probes each
// chosen host with a real activation call. Every failure is explained with the code a client shows.
import { randomInt } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { ERRORS, HRESULT, formatHresult, type ErrorCode } from '../errors';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RCODE, RCODE_NAME, RR_CLASS, RR_TYPE, type RData } from '../protocol/dns/message';
import { sameName } from '../protocol/dns/names';
import { exchangeDns, parseServerAddress, type DnsServerAddress } from './dns-transport';
import { SRV_LABEL } from './srv-answers';

export type ProbeResult =
  | { readonly ok: true; readonly epid: string; readonly count: number }
  | { readonly ok: false; readonly code: string; readonly hresult?: number | undefined; readonly message: string };

export type Probe = (host: string, port: number) => Promise<ProbeResult>;

export interface SrvRecord {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

type Lookup<T> =
  | { readonly ok: true; readonly value: T /** What the answer also held that is worth a warning. */; readonly notes?: readonly string[] }
  | { readonly ok: false; readonly kind: 'nxdomain' | 'nodata' | 'refused' | 'unreachable'; readonly detail: string };

export interface DiscoveryResolver {
  /** Where it asks, for the report ("system resolver" or ADDR:PORT). */
  readonly description: string;
  srv(name: string): Promise<Lookup<SrvRecord[]>>;
  addresses(host: string): Promise<Lookup<string[]>>;
}

export interface CheckOptions {
  readonly domain: string;
  /** The port the KMS host listens on, when known: an SRV naming another port is pointed out. */
  readonly expectedPort?: number;
  /** Probe every record instead of stopping at the first that works, as a client does. */
  readonly all?: boolean;
  /** [0, 1) source for the weighted choice; Math.random by default. */
  readonly random?: () => number;
  /**
   * No further record or address is tried once the check has run this long (ms): a resolver
   * that answers the SRV query and then times out on every address lookup (each waits twice the
   * timeout), or hosts that never answer a probe, would otherwise hold the check for minutes.
   */
  readonly budgetMs?: number;
  /** Milliseconds clock for the budget; Date.now by default. */
  readonly now?: () => number;
}

interface AddressTry {
  readonly address: string;
  readonly result: ProbeResult;
}

export interface Attempt {
  readonly record: SrvRecord;
  readonly ok: boolean;
  readonly tries: readonly AddressTry[];
  readonly code?: string;
  readonly hresult?: number;
  /** What happened, in the admin's words. */
  readonly explain: string;
}

export interface DiscoveryReport {
  readonly domain: string;
  readonly srvName: string;
  readonly resolver: string;
  readonly records: readonly SrvRecord[];
  readonly attempts: readonly Attempt[];
  readonly ok: boolean;
  /** On failure: the registry code and the HRESULT a Windows client would show. */
  readonly code?: ErrorCode;
  readonly hresult?: number;
  readonly explain: string;
  readonly warnings: readonly string[];
}

/**
 * RFC 2782 order: ascending priority; inside one priority a weighted random pick, repeated
 * until the group is used up (zero weights first, so they are chosen only rarely).
 */
export function orderSrvRecords(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const out: SrvRecord[] = [];
  const priorities = [...new Set(records.map((r) => r.priority))].sort((a, b) => a - b);
  for (const p of priorities) {
    const group = records.filter((r) => r.priority === p).sort((a, b) => (a.weight === 0 ? 0 : 1) - (b.weight === 0 ? 0 : 1));
    while (group.length > 0) {
      const total = group.reduce((s, r) => s + r.weight, 0);
      const pick = Math.floor(random() * (total + 1)); // uniform in 0..total
      let running = 0;
      let index = group.length - 1;
      for (let i = 0; i < group.length; i++) {
        running += group[i]!.weight;
        if (running >= pick) {
          index = i;
          break;
        }
      }
      out.push(...group.splice(index, 1));
    }
  }
  return out;
}

/** The root as a target ("" from the resolver) shown as "." rather than as nothing. */
function targetName(r: SrvRecord): string {
  return isRootTarget(r) ? '"."' : r.target;
}

function isRootTarget(r: SrvRecord): boolean {
  return r.target === '' || r.target === '.';
}

function hostPort(r: SrvRecord, address?: string): string {
  const a = address && address.includes(':') ? `[${address}]` : address;
  return a && a !== r.target ? `${targetName(r)} port ${r.port} (${a})` : `${targetName(r)} port ${r.port}`;
}

/**
 * Records no client can use, told without resolving or probing them: the root as target (RFC
 * 2782: the service is decidedly not available), and port 0, which nothing can listen on.
 */
function brokenRecord(r: SrvRecord): { code: string; hresult: number; explain: string } | undefined {
  if (isRootTarget(r)) {
    return {
      code: 'KMS_ERR_DNS_NO_RECORDS',
      hresult: HRESULT.DNS_NO_RECORDS,
      explain:
        'the SRV target is ".", which RFC 2782 defines as "the service is decidedly not available in this domain"; ' +
        'clients find no KMS host through this record. Remove it, or point it at the KMS host.',
    };
  }
  if (r.port === 0) {
    return {
      code: 'KMS_ERR_CLIENT_CONNECT',
      hresult: HRESULT.RPC_SERVER_UNAVAILABLE,
      explain:
        `the SRV record for ${r.target} names port 0, on which no host can listen: clients cannot connect. ` +
        'Fix the port in the record.',
    };
  }
  return undefined;
}

function explainProbeFailure(
  r: SrvRecord,
  address: string,
  res: Extract<ProbeResult, { ok: false }>,
  expectedPort: number | undefined,
): string {
  const code = res.code;
  const hr = res.hresult === undefined ? '' : ` (${formatHresult(res.hresult)})`;
  const portHint =
    expectedPort !== undefined && r.port !== expectedPort
      ? ` The SRV record names port ${r.port}, but the KMS host listens on ${expectedPort}: fix the record.`
      : '';
  if (code === 'KMS_ERR_CLIENT_CONNECT') {
    return (
      `no TCP connection to ${hostPort(r, address)}${hr}: the host is down, nothing listens on port ${r.port} ` +
      `(wrong port in the SRV record?), or a firewall drops it.${portHint}`
    );
  }
  if (code === 'KMS_ERR_CLIENT_TIMEOUT')
    return `${hostPort(r, address)} accepted the connection but did not answer in time${hr}.${portHint}`;
  const known = code in ERRORS ? ERRORS[code as ErrorCode].explain : '';
  return `${hostPort(r, address)} did not activate${hr}: ${res.message}${known && known !== res.message ? ` — ${known}` : ''}${portHint}`;
}

function lookupFailure(
  kind: Exclude<Lookup<unknown>, { ok: true }>['kind'],
  srvName: string,
  resolver: string,
  detail: string,
): { code: ErrorCode; hresult: number; explain: string } {
  switch (kind) {
    case 'nxdomain':
      return {
        code: 'KMS_ERR_DNS_NO_SRV',
        hresult: HRESULT.DNS_NAME_NOT_FOUND,
        explain:
          `${srvName} does not exist in DNS (${resolver}): clients of this domain cannot find any KMS host. ` +
          'Register the appliance (dns.registration), let clients use its DNS responder (dns.zones), add the SRV record by hand, ' +
          'or configure clients with kms-appliance client-config.',
      };
    case 'nodata':
      return {
        code: 'KMS_ERR_DNS_NO_RECORDS',
        hresult: HRESULT.DNS_NO_RECORDS,
        explain: detail
          ? `${resolver} gives no SRV records for ${srvName}: ${detail}.`
          : `${srvName} exists but holds no SRV records (${resolver}); publish one for the appliance.`,
      };
    case 'refused':
      return {
        code: 'KMS_ERR_DNS_SERVER_UNREACHABLE',
        hresult: HRESULT.DNS_NAME_NOT_FOUND,
        explain:
          `the DNS server (${resolver}) refused to answer for ${srvName}: it is not authoritative for the domain ` +
          `and will not recurse for this machine (${detail}).`,
      };
    case 'unreachable':
      return {
        code: 'KMS_ERR_DNS_SERVER_UNREACHABLE',
        hresult: HRESULT.DNS_NAME_NOT_FOUND,
        explain: `the DNS server (${resolver}) gave no usable answer (${detail}); clients using it cannot discover any KMS host.`,
      };
  }
}

/**
 * Microsoft documents both behaviours: Windows 7 / Server 2008 R2 and later honour priority and
 * weight, older clients pick any record at random (PROTOCOL.md §8.1). A record layout that only
 * works with the first behaviour is pointed out.
 */
export function legacyClientWarnings(records: readonly SrvRecord[]): string[] {
  const warnings: string[] = [];
  const priorities = new Set(records.map((r) => r.priority));
  if (priorities.size > 1) {
    const lowest = Math.min(...priorities);
    const backups = records.filter((r) => r.priority !== lowest).map(targetName);
    const named = backups.length > 5 ? `${backups.slice(0, 5).join(', ')} and ${backups.length - 5} more` : backups.join(', ');
    warnings.push(
      'clients older than Windows 7 / Server 2008 R2 ignore SRV priority and pick any record at random, ' +
        `so ${named} (meant as backup) also get first requests; every listed host must be able to serve`,
    );
  } else if (new Set(records.map((r) => r.weight)).size > 1) {
    warnings.push('clients older than Windows 7 / Server 2008 R2 ignore SRV weight: they spread requests evenly over these records');
  }
  return warnings;
}

/**
 * What one check probes at most. Each probe can wait for a connect timeout, so a zone listing
 * hundreds of records (or a target with hundreds of addresses), wrong or hostile, would otherwise
 * keep `dns check` busy for hours; the rest are named in a warning.
 */
const MAX_PROBED_RECORDS = 16;
const MAX_PROBED_ADDRESSES = 8;

export async function checkDiscovery(
  options: CheckOptions,
  deps: { readonly resolver: DiscoveryResolver; readonly probe: Probe },
): Promise<DiscoveryReport> {
  const domain = options.domain.replace(/\.$/, '');
  const srvName = `${SRV_LABEL}.${domain}`;
  const base = { domain, srvName, resolver: deps.resolver.description };
  const warnings: string[] = [];
  const srv = await deps.resolver.srv(srvName);
  if (!srv.ok)
    return { ...base, records: [], attempts: [], ok: false, warnings, ...lookupFailure(srv.kind, srvName, base.resolver, srv.detail) };
  warnings.push(...(srv.notes ?? []));
  if (srv.value.length === 0)
    return { ...base, records: [], attempts: [], ok: false, warnings, ...lookupFailure('nodata', srvName, base.resolver, '') };
  if (options.expectedPort !== undefined) {
    const other = srv.value.filter((r) => r.port !== options.expectedPort);
    // One warning, however many records: a zone listing thousands must not flood the terminal.
    if (other.length > 3) {
      const some = other.slice(0, 3).map((r) => `${targetName(r)} port ${r.port}`);
      warnings.push(`${other.length} records name another port than ${options.expectedPort} (${some.join(', ')}, ...)`);
    } else {
      for (const r of other) warnings.push(`the record for ${targetName(r)} names port ${r.port}, not ${options.expectedPort}`);
    }
  }

  warnings.push(...legacyClientWarnings(srv.value));

  const ordered = orderSrvRecords(srv.value, options.random);
  if (ordered.length > MAX_PROBED_RECORDS) {
    warnings.push(
      `DNS lists ${ordered.length} KMS host records; only the first ${MAX_PROBED_RECORDS} in client order are checked ` +
        '(a site needs a few; this many points at a wrong or hostile zone)',
    );
  }
  const attempts: Attempt[] = [];
  let success: Attempt | undefined;
  const now = options.now ?? Date.now;
  const started = now();
  const spent = (): boolean => options.budgetMs !== undefined && now() - started >= options.budgetMs;
  const toCheck = ordered.slice(0, MAX_PROBED_RECORDS);
  let unchecked = 0;
  for (const [index, record] of toCheck.entries()) {
    if (spent()) {
      unchecked = toCheck.length - index;
      warnings.push(
        `the check stopped after ${Math.round((now() - started) / 1000)} s: ${unchecked} more record${unchecked === 1 ? '' : 's'} ` +
          'in client order not checked (a slow or silent DNS server; see --timeout)',
      );
      break;
    }
    const broken = brokenRecord(record);
    if (broken) {
      attempts.push({ record, ok: false, tries: [], ...broken });
      continue;
    }
    const addrs = await deps.resolver.addresses(record.target);
    if (!addrs.ok || addrs.value.length === 0) {
      const why = addrs.ok
        ? 'has no A or AAAA record'
        : addrs.kind === 'nxdomain'
          ? 'does not exist in DNS'
          : addrs.kind === 'nodata'
            ? `has no A or AAAA record${addrs.detail ? ` (${addrs.detail})` : ''}`
            : `could not be resolved (${addrs.detail})`;
      attempts.push({
        record,
        ok: false,
        tries: [],
        code: 'KMS_ERR_DNS_NO_RECORDS',
        hresult: HRESULT.DNS_NO_RECORDS,
        explain: `the SRV target ${record.target} ${why}; clients skip this record.`,
      });
      continue;
    }
    const tries: AddressTry[] = [];
    let attempt: Attempt | undefined;
    if (addrs.value.length > MAX_PROBED_ADDRESSES) {
      warnings.push(`${record.target} has ${addrs.value.length} addresses; only the first ${MAX_PROBED_ADDRESSES} are checked`);
    }
    for (const address of addrs.value.slice(0, MAX_PROBED_ADDRESSES)) {
      if (tries.length > 0 && spent()) break;
      const result = await deps.probe(address, record.port);
      tries.push({ address, result });
      if (result.ok) {
        attempt = {
          record,
          ok: true,
          tries,
          explain: `${hostPort(record, address)} activated: current count ${result.count}, ePID ${result.epid}.`,
        };
        break;
      }
    }
    if (!attempt) {
      const last = tries[tries.length - 1]!;
      const res = last.result as Extract<ProbeResult, { ok: false }>;
      attempt = {
        record,
        ok: false,
        tries,
        code: res.code,
        ...(res.hresult === undefined ? {} : { hresult: res.hresult }),
        explain: tries
          .map((x) => explainProbeFailure(record, x.address, x.result as Extract<ProbeResult, { ok: false }>, options.expectedPort))
          .join(' '),
      };
    }
    attempts.push(attempt);
    if (attempt.ok) {
      success ??= attempt;
      if (!options.all) break;
    }
  }
  if (success) {
    return {
      ...base,
      records: srv.value,
      attempts,
      ok: true,
      warnings,
      explain: `a Windows client in ${domain} would activate against ${hostPort(success.record)}.`,
    };
  }
  return {
    ...base,
    records: srv.value,
    attempts,
    ok: false,
    warnings,
    code: 'KMS_ERR_DNS_NO_HOST_REACHED',
    hresult: HRESULT.NO_KMS_HOST,
    explain:
      `DNS names ${srv.value.length} KMS host record(s) for ${domain}, but activation failed against every one` +
      `${unchecked > 0 ? ` checked (${attempts.length}; the check ran out of time)` : ''}` +
      `; a Windows client reports ${formatHresult(HRESULT.NO_KMS_HOST)} (no KMS host could be contacted).`,
  };
}

// ---------------------------------------------------------------- the real resolver

const MAX_CNAME_HOPS = 8;

type RDataOf<K> = Extract<RData, { kind: K }>;

/**
 * One query done here rather than by c-ares, which takes SRV records owned by any name as the
 * answer: only records of the name asked (or of the end of its CNAME chain) count, the others are
 * pointed out, and a CNAME loop is named. `kind` picks the records wanted from the answer.
 */
async function queryRecords<K extends RData['kind']>(
  server: DnsServerAddress,
  name: string,
  type: number,
  kind: K,
  timeoutMs: number,
): Promise<Lookup<RDataOf<K>[]>> {
  const typeName = type === RR_TYPE.SRV ? 'SRV' : type === RR_TYPE.AAAA ? 'AAAA' : 'A';
  let m;
  try {
    // A target from a hostile answer may be no name we can encode (a TypeError): no answer either.
    const query = encodeMessage({
      header: { ...EMPTY_HEADER, id: randomInt(0, 0x10000), rd: true },
      questions: [{ name, type, class: RR_CLASS.IN }],
      answers: [],
      authorities: [],
      additionals: [],
    });
    // An answer to another question (a late answer, a spoof) is passed over while the right one may still come.
    const check = (answer: Buffer): Error | null => {
      try {
        const q = decodeMessage(answer).questions;
        const same = q.length === 1 && sameName(q[0]!.name, name) && q[0]!.type === type;
        return same ? null : new Error(`it answered another question than ${name} ${typeName}`);
      } catch (err) {
        return new Error(`its answer does not parse (${(err as Error).message})`);
      }
    };
    m = decodeMessage((await exchangeDns(server, query, { timeoutMs, check })).response);
  } catch (err) {
    return { ok: false, kind: 'unreachable', detail: (err as Error).message };
  }
  const rcode = m.header.rcode;
  if (rcode === RCODE.NXDOMAIN) return { ok: false, kind: 'nxdomain', detail: 'NXDOMAIN' };
  if (rcode === RCODE.REFUSED) return { ok: false, kind: 'refused', detail: 'REFUSED' };
  if (rcode !== RCODE.NOERROR)
    return { ok: false, kind: 'unreachable', detail: `it answered ${RCODE_NAME.get(rcode) ?? `rcode ${rcode}`}` };
  const chain = [name];
  for (;;) {
    const owner = chain[chain.length - 1]!;
    const alias = m.answers.find((r) => r.type === RR_TYPE.CNAME && sameName(r.name, owner));
    if (alias?.data.kind !== 'name') break;
    const next = alias.data.target;
    if (chain.some((n) => sameName(n, next)))
      return { ok: false, kind: 'nodata', detail: `${name} is a CNAME loop (${[...chain, next].join(' → ')}); fix the aliases` };
    if (chain.length > MAX_CNAME_HOPS)
      return { ok: false, kind: 'nodata', detail: `${name} is a CNAME chain longer than ${MAX_CNAME_HOPS} (${chain.join(' → ')} → ...)` };
    chain.push(next);
  }
  const owner = chain[chain.length - 1]!;
  const value: RDataOf<K>[] = [];
  const foreign = new Set<string>();
  let foreignCount = 0;
  for (const r of m.answers) {
    if (r.type !== type || r.data.kind !== kind) continue;
    if (sameName(r.name, owner)) {
      value.push(r.data as RDataOf<K>);
    } else {
      foreignCount++;
      if (foreign.size < 3) foreign.add(r.name);
    }
  }
  const others = `${foreignCount} ${typeName} record${foreignCount === 1 ? '' : 's'} for another name (${[...foreign].join(', ')})`;
  if (value.length === 0 && foreignCount > 0)
    return { ok: false, kind: 'nodata', detail: `the answer holds only ${others}: a broken or spoofing DNS server` };
  const notes =
    foreignCount > 0 ? [`the DNS server also sent ${others}; ignored, as they do not answer ${owner} (a broken or spoofing server)`] : [];
  return { ok: true, value, notes };
}

/** The system's DNS servers, as c-ares read them from /etc/resolv.conf. */
function systemServers(): DnsServerAddress[] {
  const out: DnsServerAddress[] = [];
  for (const spec of new Resolver().getServers()) {
    const server = parseServerAddress(spec);
    if (server) out.push(server);
  }
  return out;
}

/** Queries of our own (UDP, TCP when truncated) to the system's DNS servers, or to one given server. */
export function createSystemResolver(options: { readonly server?: DnsServerAddress; readonly timeoutMs: number }): DiscoveryResolver {
  let description = 'the system resolver';
  if (options.server) {
    const { host, port } = options.server;
    description = `DNS server ${host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`}`;
  }
  // Each server in turn while they do not answer, as a Windows client tries its alternates;
  // each twice (a datagram may be lost).
  const ask = async <K extends RData['kind']>(name: string, type: number, kind: K): Promise<Lookup<RDataOf<K>[]>> => {
    const servers = options.server ? [options.server] : systemServers();
    let last: Lookup<RDataOf<K>[]> = { ok: false, kind: 'unreachable', detail: 'no DNS server configured' };
    for (const server of servers) {
      for (let attempt = 0; attempt < 2; attempt++) {
        last = await queryRecords(server, name, type, kind, options.timeoutMs);
        if (last.ok || last.kind !== 'unreachable') return last;
      }
    }
    return last;
  };
  return {
    description,
    async srv(name) {
      const found = await ask(name, RR_TYPE.SRV, 'srv');
      if (!found.ok) return found;
      const value = found.value.map((r) => ({ priority: r.priority, weight: r.weight, port: r.port, target: r.target }));
      return { ok: true, value, ...(found.notes ? { notes: found.notes } : {}) };
    },
    async addresses(host) {
      const [v6, v4] = await Promise.all([ask(host, RR_TYPE.AAAA, 'aaaa'), ask(host, RR_TYPE.A, 'a')]);
      const value = [...(v6.ok ? v6.value : []), ...(v4.ok ? v4.value : [])].map((r) => r.address);
      if (value.length > 0) return { ok: true, value };
      // Both failed or both empty: report the more telling of the two.
      const errors = [v6, v4].filter((r): r is Exclude<typeof r, { ok: true }> => !r.ok);
      return (
        errors.find((e) => e.kind === 'unreachable' || e.kind === 'refused') ??
        errors.find((e) => e.kind === 'nxdomain') ??
        errors.find((e) => e.detail !== '') ?? { ok: false, kind: 'nodata', detail: '' }
      );
    },
  };
}
