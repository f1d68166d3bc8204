// Discovery: the DNS responder, registration in the site's DNS (RFC 2136) and mDNS. Each is
// loaded only when enabled, so a host without them does not carry those modules; a disabled one
// still stands in the list, to say that enabling it takes a restart.
import type { AppConfig } from '../../config/defaults';
import type { ListenAddress } from '../../config/listen-address';
import type { Logger } from '../../logging/logger';
import type { DnsFacts, RegistrationFacts } from '../../metrics/sources';
import { changedKeys, restartOnChange, type Service } from '../service';

/** What discovery publishes: the KMS listener's real port, this host's name and reachable addresses. */
export interface Published {
  readonly kmsPort: number;
  readonly hostName: string;
  addresses(): string[];
  readonly log: Logger;
}

export interface DnsService extends Service {
  addresses(): readonly ListenAddress[];
  /** The responder's counters as /metrics reads them; absent while it is off. */
  readonly facts?: () => DnsFacts;
}

export interface RegistrationService extends Service {
  /** Registration's state as /metrics and /healthz read it; absent while it is off. */
  readonly facts?: () => RegistrationFacts;
}

/** The responder's own part of the dns section: registration and mDNS answer for theirs. */
const RESPONDER_KEYS = ['listen', 'zones', 'forwarding', 'rateLimit', 'tcp'] as const;

export async function dnsService(config: AppConfig, listen: readonly ListenAddress[], published: Published): Promise<DnsService> {
  const reload: Service['reload'] = (next, running) => ({
    applied: [],
    needsRestart: changedKeys('dns', running.dns, next.dns, RESPONDER_KEYS),
  });
  if (listen.length === 0) return { name: 'dns', addresses: () => [], reload, close: async () => undefined };
  const { startDnsServer } = require('../../dns/dns-server') as typeof import('../../dns/dns-server');
  const dns = await startDnsServer(config.dns, published, listen);
  return {
    name: 'dns',
    addresses: () => dns.addresses,
    facts: () => {
      const s = dns.stats();
      return { responsesByRcode: s.responsesByRcode, rateLimited: s.rateLimited, slipped: s.slipped, refused: s.refused };
    },
    reload,
    close: () => dns.close(),
  };
}

export function registrationService(config: AppConfig, published: Published): RegistrationService {
  const reload = restartOnChange('dns.registration', (c) => c.dns.registration);
  if (!config.dns.registration.enabled) return { name: 'dns registration', reload, close: async () => undefined };
  const { startRegistrar } = require('../../dns/registrar') as typeof import('../../dns/registrar');
  const registrar = startRegistrar(config.dns.registration, published);
  return {
    name: 'dns registration',
    facts: () => {
      const s = registrar.status();
      return { lastSuccessMs: s.lastSuccessMs, failures: s.failures, refreshMs: s.refreshMs, lastError: s.lastError ?? '' };
    },
    reload,
    close: async () => {
      await registrar.stop();
    },
  };
}

export function mdnsService(config: AppConfig, published: Published): Service {
  const reload = restartOnChange('dns.mdns', (c) => c.dns.mdns);
  if (!config.dns.mdns.enabled) return { name: 'mdns', reload, close: async () => undefined };
  const { startMdns } = require('../../dns/mdns') as typeof import('../../dns/mdns');
  const mdns = startMdns(config.dns.mdns, published);
  return { name: 'mdns', reload, close: () => mdns.stop() };
}
