// Dynamic DNS registration (dns.registration): publishes this appliance's SRV and A/AAAA records
// in the site's DNS with TSIG-signed RFC 2136 updates on start, every refreshMinutes and when
// the machine's addresses change, and removes them on shutdown. Each result is logged with the
// Windows KMS host's event ids: 12294 (published) and 12293 (publishing failed).
import fs from 'node:fs';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import type { DnsRegistrationConfig } from '../config/defaults';
import { ConfigError, KmsError, type ErrorCode } from '../errors';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RCODE, RCODE_NAME, RR_CLASS, RR_TYPE, type DnsMessage } from '../protocol/dns/message';
import { canonicalName, sameName } from '../protocol/dns/names';
import type { DnsLog } from './dns-responder';
import { exchangeDns, parseServerAddress, type DnsServerAddress } from './dns-transport';
import { buildRegisterUpdate, buildRemoveUpdate, type SrvData, type SrvPublication } from './rfc2136-update';
import { selfTargetIn, SRV_LABEL } from './srv-answers';
import { parseTsigSecret, signMessage, verifyResponse, TSIG_ALGORITHM_HMAC_SHA256, type TsigKey } from './tsig';

export const EVENT_PUBLISH_OK = 12294;
export const EVENT_PUBLISH_FAILED = 12293;

export interface RegistrarContext {
  /** The port the KMS listener actually uses (C35). */
  readonly kmsPort: number;
  readonly hostName: string;
  /** The machine's current addresses; polled to notice changes. */
  addresses(): string[];
  readonly log: DnsLog;
  /** Seconds since the epoch, for TSIG; the system clock by default. */
  nowSeconds?(): number;
}

export interface RegistrarOptions {
  /** How often to look for address changes (ms); 0 = never. Default 60 s. */
  readonly addressPollMs?: number;
  /** Per-exchange timeout (ms). Default 5 s. */
  readonly timeoutMs?: number;
  /** Delay before the first retry of a failed registration (ms), doubling after each failed round. Default 30 s. */
  readonly retryMs?: number;
  /** How long stop() waits for the round in flight and the removals (ms). Default 10 s. */
  readonly stopDeadlineMs?: number;
}

export interface RegistrationResult {
  readonly domain: string;
  readonly action: 'register' | 'remove';
  readonly ok: boolean;
  /** 12294 or 12293 for registrations; absent for removals. */
  readonly event?: number;
  readonly code?: ErrorCode;
  readonly reason?: string;
  readonly target: string;
  readonly port: number;
  readonly addresses: readonly string[];
}

/** How registration is going, for the metrics endpoint and health checks. */
interface RegistrarStatus {
  /** When a registration round last succeeded for every domain (ms since the epoch); null = never yet. */
  readonly lastSuccessMs: number | null;
  /** Failed registrations (one per domain and attempt) since start: a counter. */
  readonly failures: number;
  /** Why the latest round failed; null when it succeeded (or none ran yet). */
  readonly lastError: string | null;
  /** The interval between successful rounds (dns.registration.refreshMinutes). */
  readonly refreshMs: number;
  /** After a failed round, the delay before the next attempt (ms); null after a success. */
  readonly retryDelayMs: number | null;
}

export interface RegistrarHandle {
  /** Registers every domain now (also what the timers do). */
  registerNow(): Promise<RegistrationResult[]>;
  status(): RegistrarStatus;
  /** Stops the timers and, when removeOnShutdown, removes the records. */
  stop(): Promise<RegistrationResult[]>;
}

const DEFAULT_POLL_MS = 60_000;
const DEFAULT_TIMEOUT_MS = 5_000;
const FIRST_RETRY_MS = 30_000;
// Shutdown (and every service stopped after this one, the store last) waits no longer than this
// for a DNS server: systemd kills the service 90 s after asking it to stop.
const STOP_DEADLINE_MS = 10_000;
// SRV records naming our target that one update deletes (a changed port leaves one stale record;
// a server listing thousands would make an update no datagram can carry).
const MAX_STALE_SRV = 32;
const MAX_RETRY_MS = 15 * 60_000;

/** Addresses worth publishing: no loopback, link-local or unspecified addresses. */
export function publishableAddresses(list: readonly string[]): string[] {
  const out = new Set<string>();
  for (const a of list) {
    const plain = a.replace(/%.*$/, '');
    if (net.isIPv4(plain) && !/^(127\.|0\.|169\.254\.)/.test(plain)) out.add(plain);
    if (net.isIPv6(plain) && !/^(::1?$|fe[89ab][0-9a-f]:)/i.test(plain)) out.add(plain.toLowerCase());
  }
  return [...out].sort();
}

function readKey(config: DnsRegistrationConfig): TsigKey {
  const tsig = config.tsig;
  if (!tsig.keyName) throw new ConfigError('KMS_ERR_CONFIG_INVALID', 'dns.registration.tsig.keyName is empty');
  if (tsig.algorithm !== TSIG_ALGORITHM_HMAC_SHA256)
    throw new ConfigError('KMS_ERR_CONFIG_INVALID', `dns.registration.tsig.algorithm must be ${TSIG_ALGORITHM_HMAC_SHA256}`);
  let text = tsig.secretBase64;
  if (!text && tsig.secretFile) {
    try {
      text = fs.readFileSync(tsig.secretFile, 'utf8');
    } catch (err) {
      throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', `dns.registration.tsig.secretFile ${tsig.secretFile}: ${(err as Error).message}`);
    }
  }
  const secret = parseTsigSecret(text);
  if (!secret) throw new ConfigError('KMS_ERR_CONFIG_INVALID', 'dns.registration.tsig: no base64 secret in secretBase64 or secretFile');
  return { name: tsig.keyName, algorithm: TSIG_ALGORITHM_HMAC_SHA256, secret };
}

/** The admin's words for a refusal from the DNS server. */
function explainRcode(rcode: number, zone: string, key: string): string {
  switch (rcode) {
    case RCODE.REFUSED:
      return `the DNS server refused the update: its update policy for zone ${zone} does not allow key "${key}" to change these names`;
    case RCODE.NOTAUTH:
      return `the DNS server is not authoritative (primary) for zone ${zone}; send updates to the zone's primary server`;
    case RCODE.NOTZONE:
      return `a published name is not inside zone ${zone}; check dns.registration.hostName`;
    case RCODE.SERVFAIL:
      return 'the DNS server failed while applying the update; its own log says why';
    case RCODE.NOTIMP:
      return 'the DNS server does not accept dynamic updates at all';
    case RCODE.FORMERR:
      return 'the DNS server could not parse the update';
    case RCODE.NXDOMAIN:
      return (
        `the DNS server answered NXDOMAIN: zone ${zone} does not exist there; check the domain in dns.registration.domains ` +
        'and that dns.registration.server is its primary server'
      );
    case RCODE.YXDOMAIN:
    case RCODE.YXRRSET:
    case RCODE.NXRRSET:
      // Our updates carry no prerequisites (RFC 2136 §3.2): nothing could have failed one.
      return (
        `the DNS server answered ${RCODE_NAME.get(rcode)}, a failed prerequisite, but the update carries none: it does not ` +
        'process RFC 2136 updates correctly; check that dns.registration.server is the primary DNS server of the zone'
      );
    default:
      return `the DNS server answered rcode ${rcode}${RCODE_NAME.has(rcode) ? ` (${RCODE_NAME.get(rcode)})` : ''}; its own log says why`;
  }
}

/** RFC 8945 §5.2.3: a BADTIME answer carries the server's clock in its 6-byte other data. */
function clockGap(other: Buffer | undefined, nowSeconds: number): string {
  if (!other || other.length !== 6) return '';
  const serverSeconds = other.readUInt16BE(0) * 2 ** 32 + other.readUInt32BE(2);
  const gap = Math.round(serverSeconds - nowSeconds);
  const date = new Date(serverSeconds * 1000);
  if (Number.isNaN(date.getTime())) return ''; // 48 bits reach past what a Date holds
  const when = date.toISOString();
  return `: the DNS server's clock reads ${when}, ${Math.abs(gap)} s ${gap > 0 ? 'ahead of' : 'behind'} ours`;
}

function explainTsigError(tsigError: number, key: string, other?: Buffer, nowSeconds = Date.now() / 1000): string {
  if (tsigError === RCODE.BADKEY) return `the DNS server does not know the TSIG key "${key}" (or not with HMAC-SHA256)`;
  if (tsigError === RCODE.BADTIME)
    return `the clocks of this appliance and the DNS server are more than 5 minutes apart (check NTP)${clockGap(other, nowSeconds)}`;
  return `the TSIG secret of key "${key}" does not match the DNS server's`;
}

class UpdateFailure extends KmsError {}

/**
 * Why an answer to our signed update cannot be trusted (unparseable, unsigned, a TSIG error, a
 * MAC that does not verify); null for an answer signed with our key. RFC 8945 §5.4: such an
 * answer may be spoofed, so it is discarded and a signed one awaited; its words are reported
 * only when none came before the timeout.
 */
function untrusted(response: Buffer, key: TsigKey, requestMac: Buffer, zone: string, nowSeconds: number): UpdateFailure | null {
  let decoded;
  try {
    decoded = decodeMessage(response);
  } catch (err) {
    return new UpdateFailure('KMS_ERR_DNS_UPDATE_FAILED', `the DNS server's answer does not parse (${(err as Error).message})`);
  }
  const tsig = decoded.additionals.find((r) => r.type === RR_TYPE.TSIG);
  if (tsig && tsig.data.kind === 'tsig' && tsig.data.error !== 0) {
    return new UpdateFailure('KMS_ERR_DNS_TSIG_BAD', explainTsigError(tsig.data.error, key.name, tsig.data.other, nowSeconds), {
      tsigError: tsig.data.error,
    });
  }
  if (!tsig) {
    // Unsigned: how servers without the key (or without TSIG) say no, or a spoofer.
    const rcode = decoded.header.rcode;
    if (rcode === RCODE.NOTAUTH)
      return new UpdateFailure(
        'KMS_ERR_DNS_TSIG_BAD',
        `${explainTsigError(RCODE.BADKEY, key.name)}, or it is not the primary server of zone ${zone} ` +
          '(an unsigned NOTAUTH says no more)',
        { rcode },
      );
    if (rcode !== RCODE.NOERROR) return new UpdateFailure('KMS_ERR_DNS_UPDATE_FAILED', explainRcode(rcode, zone, key.name), { rcode });
    return new UpdateFailure('KMS_ERR_DNS_TSIG_BAD', 'the DNS server answered without a TSIG signature; the answer cannot be trusted');
  }
  let check;
  try {
    check = verifyResponse(response, key, requestMac, nowSeconds);
  } catch (err) {
    return new UpdateFailure('KMS_ERR_DNS_TSIG_BAD', `the DNS server's TSIG signature cannot be checked (${(err as Error).message})`);
  }
  if (check.ok) return null;
  return new UpdateFailure(
    'KMS_ERR_DNS_TSIG_BAD',
    check.problem === 'time'
      ? explainTsigError(RCODE.BADTIME, key.name)
      : "the DNS server's answer carries a TSIG signature that does not verify with our key",
  );
}

/** Sends a signed update; resolves when the server's signed answer says NOERROR. */
async function sendSignedUpdate(
  server: DnsServerAddress,
  message: DnsMessage,
  key: TsigKey,
  zone: string,
  nowSeconds: number,
  timeoutMs: number,
): Promise<void> {
  const { signed, mac } = signMessage(encodeMessage(message), key, nowSeconds);
  const { response } = await exchangeDns(server, signed, {
    timeoutMs,
    check: (answer) => untrusted(answer, key, mac, zone, nowSeconds),
  });
  const rcode = decodeMessage(response).header.rcode; // signed and verified: it parses
  if (rcode !== RCODE.NOERROR) throw new UpdateFailure('KMS_ERR_DNS_UPDATE_FAILED', explainRcode(rcode, zone, key.name), { rcode });
}

/** The SRV records the server holds now, to find our stale ones; [] when it will not say. */
async function currentSrv(server: DnsServerAddress, name: string, timeoutMs: number): Promise<SrvData[]> {
  const query = encodeMessage({
    header: { ...EMPTY_HEADER, id: randomInt(0, 0x10000) },
    questions: [{ name, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  try {
    const { response } = await exchangeDns(server, query, { timeoutMs });
    const m = decodeMessage(response);
    const out: SrvData[] = [];
    for (const rr of m.answers) if (rr.data.kind === 'srv' && sameName(rr.name, name)) out.push(rr.data);
    return out;
  } catch {
    return [];
  }
}

export function startRegistrar(
  config: DnsRegistrationConfig,
  context: RegistrarContext,
  options: RegistrarOptions = {},
): RegistrarHandle & { readonly ready: Promise<RegistrationResult[]> } {
  const key = readKey(config);
  const server = parseServerAddress(config.server);
  if (!server) throw new ConfigError('KMS_ERR_CONFIG_INVALID', `dns.registration.server "${config.server}" is not ADDR or ADDR:PORT`);
  if (config.domains.length === 0) throw new ConfigError('KMS_ERR_CONFIG_INVALID', 'dns.registration.domains is empty');
  const log = context.log;
  const now = context.nowSeconds ?? (() => Date.now() / 1000);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const refreshMs = Math.max(1, config.refreshMinutes) * 60_000;
  // A failed round is retried soon (a server restarting, the network not up yet at boot), then
  // less and less often, with jitter so the sites of one DNS server do not retry in step.
  const firstRetryMs = options.retryMs ?? FIRST_RETRY_MS;
  const maxRetryMs = Math.max(firstRetryMs, Math.min(refreshMs, MAX_RETRY_MS));
  let failedRounds = 0;
  let retryDelayMs: number | null = null;
  const nextRetryMs = (): number =>
    Math.round(Math.min(maxRetryMs, firstRetryMs * 2 ** Math.min(failedRounds - 1, 30) * (0.9 + 0.2 * Math.random())));
  const currentAddresses = (): string[] =>
    config.addresses.length > 0 ? [...config.addresses] : publishableAddresses(context.addresses());

  const publications = (addresses: readonly string[]): SrvPublication[] =>
    config.domains.map((d) => {
      const zone = canonicalName(d.domain);
      const target = config.hostName
        ? config.hostName.includes('.')
          ? canonicalName(config.hostName)
          : `${canonicalName(config.hostName)}.${zone}`
        : selfTargetIn(zone, context.hostName);
      return {
        zone,
        srvName: `${SRV_LABEL}.${zone}`,
        target,
        port: context.kmsPort,
        priority: d.priority,
        weight: d.weight,
        ttl: config.ttlSeconds,
        addresses,
      };
    });

  let published: SrvPublication[] = [];
  let lastSuccessMs: number | null = null;
  let failures = 0;
  let lastError: string | null = null;
  let lastAddresses = currentAddresses();
  let stopped = false;
  let stopping: Promise<RegistrationResult[]> | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  // Runs one registration round at a time: timers and address changes never overlap.
  const serialize = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  };

  const runOne = async (p: SrvPublication, action: 'register' | 'remove'): Promise<RegistrationResult> => {
    const base = { domain: p.zone, action, target: p.target, port: p.port, addresses: p.addresses };
    try {
      const naming = (await currentSrv(server, p.srvName, timeoutMs)).filter((r) => sameName(r.target, p.target));
      const existing = naming.slice(0, MAX_STALE_SRV);
      if (naming.length > MAX_STALE_SRV)
        log.warn(
          { domain: p.zone, server: server.host, target: p.target, found: naming.length },
          `DNS lists ${naming.length} SRV records for ${p.target} in the '${p.zone}' domain; ` +
            `each registration deletes at most ${MAX_STALE_SRV} stale ones.`,
        );
      const id = randomInt(0, 0x10000);
      const message = action === 'register' ? buildRegisterUpdate(p, id, existing) : buildRemoveUpdate(p, id, existing);
      await sendSignedUpdate(server, message, key, p.zone, now(), timeoutMs);
      if (action === 'register') {
        log.info(
          {
            event: EVENT_PUBLISH_OK,
            domain: p.zone,
            server: server.host,
            serverPort: server.port,
            target: p.target,
            port: p.port,
            addresses: p.addresses,
          },
          `Publishing the Key Management Service (KMS) to DNS in the '${p.zone}' domain was successful.`,
        );
        return { ...base, ok: true, event: EVENT_PUBLISH_OK };
      }
      log.info(
        { domain: p.zone, server: server.host, target: p.target },
        `Removed the Key Management Service (KMS) SRV record from DNS in the '${p.zone}' domain.`,
      );
      return { ...base, ok: true };
    } catch (err) {
      const code: ErrorCode = err instanceof KmsError ? err.code : 'KMS_ERR_DNS_UPDATE_FAILED';
      const reason =
        err instanceof KmsError && err.code === 'KMS_ERR_DNS_SERVER_UNREACHABLE'
          ? `the DNS server ${config.server} did not answer (${err.message})`
          : err instanceof Error
            ? err.message
            : String(err);
      if (action === 'register') {
        log.warn(
          { event: EVENT_PUBLISH_FAILED, code, domain: p.zone, server: server.host, serverPort: server.port, reason },
          `Publishing the Key Management Service (KMS) to DNS in the '${p.zone}' domain failed: ${reason}.`,
        );
        return { ...base, ok: false, event: EVENT_PUBLISH_FAILED, code, reason };
      }
      log.warn(
        { code, domain: p.zone, server: server.host, reason },
        `Removing the KMS SRV record from DNS in the '${p.zone}' domain failed: ${reason}.`,
      );
      return { ...base, ok: false, code, reason };
    }
  };

  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number): void => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void registerNow(), ms);
    timer.unref();
  };

  // A round asked for while one waits its turn joins it (it reads the addresses when it starts):
  // address polls during a round stuck on a silent server queued one round each, which then ran
  // back to back, past the retry backoff.
  let waiting: Promise<RegistrationResult[]> | undefined;
  const registerNow = (): Promise<RegistrationResult[]> => (waiting ??= queueRound());
  const queueRound = (): Promise<RegistrationResult[]> =>
    serialize(async () => {
      waiting = undefined;
      if (stopped) return [];
      const addresses = currentAddresses();
      lastAddresses = addresses;
      const pubs = publications(addresses);
      const results: RegistrationResult[] = [];
      for (const p of pubs) {
        if (stopped) return results; // shutdown came: the removal takes over
        results.push(await runOne(p, 'register'));
      }
      published = pubs;
      const failed = results.filter((r) => !r.ok);
      failures += failed.length;
      lastError = failed.length > 0 ? failed.map((r) => `${r.domain}: ${r.reason ?? r.code}`).join('; ') : null;
      if (failed.length === 0) {
        lastSuccessMs = Date.now();
        failedRounds = 0;
        retryDelayMs = null;
        schedule(refreshMs);
      } else {
        failedRounds++;
        retryDelayMs = nextRetryMs();
        schedule(retryDelayMs);
      }
      return results;
    });

  const pollMs = options.addressPollMs ?? DEFAULT_POLL_MS;
  const poller =
    pollMs > 0 && config.addresses.length === 0
      ? setInterval(() => {
          const now = currentAddresses();
          if (now.join(',') !== lastAddresses.join(',')) {
            log.info({ previous: lastAddresses, current: now }, "the machine's addresses changed; publishing them in DNS again");
            void registerNow();
          }
        }, pollMs)
      : undefined;
  poller?.unref();

  const ready = registerNow();
  return {
    ready,
    registerNow,
    status: () => ({ lastSuccessMs, failures, lastError, refreshMs, retryDelayMs }),
    stop: () => (stopping ??= stopWithin(options.stopDeadlineMs ?? STOP_DEADLINE_MS)),
  };

  function stopWithin(deadlineMs: number): Promise<RegistrationResult[]> {
    stopped = true;
    clearTimeout(timer);
    if (poller) clearInterval(poller);
    if (!config.removeOnShutdown) return Promise.resolve([]);
    const toRemove = (): SrvPublication[] => (published.length > 0 ? published : publications(lastAddresses));
    const results: RegistrationResult[] = [];
    let late = false;
    const removal = serialize(async () => {
      for (const p of toRemove()) {
        if (late) return;
        results.push(await runOne(p, 'remove'));
      }
    });
    let deadline: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => {
      deadline = setTimeout(() => resolve(true), deadlineMs);
    });
    return Promise.race([removal.then(() => false), expired]).then((wasLate) => {
      clearTimeout(deadline);
      if (!wasLate) return results;
      late = true;
      // A removal still in flight may finish later: the caller gets this moment's copy.
      const finished = [...results];
      const done = new Set(finished.map((r) => r.domain));
      const left = toRemove().filter((p) => !done.has(p.zone));
      const reason =
        `not removed: the DNS server ${config.server} had not answered after ${deadlineMs / 1000} s and shutdown does not wait ` +
        'longer; the records stay in DNS until the next start replaces them';
      log.warn(
        { code: 'KMS_ERR_DNS_SERVER_UNREACHABLE', server: config.server, domains: left.map((p) => p.zone) },
        `DNS registration: shutdown did not wait for the DNS server; the KMS SRV records of ${left.length} domain(s) may be left in DNS.`,
      );
      for (const p of left) {
        finished.push({
          domain: p.zone,
          action: 'remove',
          ok: false,
          code: 'KMS_ERR_DNS_SERVER_UNREACHABLE',
          reason,
          target: p.target,
          port: p.port,
          addresses: p.addresses,
        });
      }
      return finished;
    });
  }
}
