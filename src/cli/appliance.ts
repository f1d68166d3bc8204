// Assembles the running appliance from a validated configuration: store, catalogue, host identity,
// the KMS listener, the DNS responder, DNS registration, mDNS and the admin page. `serve` runs it;
// tests start it in-process on port 0. Reload swaps what can change without dropping connections.
import os from 'node:os';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../errors';
import { STORE_TUNING, type AppConfig } from '../config/defaults';
import { parseListenAddress, formatListenAddress, type ListenAddress } from '../config/listen-address';
import { loadCatalog } from '../catalog/load';
import type { Catalog } from '../catalog/catalog';
import { buildProductPolicy } from '../host/product-policy';
import { loadHostIdentity } from '../host/host-identity';
import { processKmsMessage, type ActivationDeps, type HostSettings } from '../host/activation';
import type { Clock } from '../host/ports';
import { SqliteStore } from '../store/sqlite-store';
import { databaseFile, resolveDataDir } from '../store/data-dir';
import { KmsServer, type BoundAddress } from '../server/kms-server';
import type { KmsServerSettings } from '../server/types';
import { GroupCommitGate } from '../server/reply-gate';
import { pooledRandomBytes } from '../server/random-pool';
import { logActivation, type Logger } from '../logging/logger';
import type { DnsServerHandle } from '../dns/dns-server';
import type { RegistrarHandle } from '../dns/registrar';
import type { MdnsHandle } from '../dns/mdns';
import type { FleetForwarder, FleetHealth } from '../fleet/forwarder';
import type { AdminHandle } from '../admin/admin-service';
import { createApplianceMetrics, type ApplianceMetrics } from '../metrics/appliance-metrics';
import type { DnsFacts, MetricSources, RegistrationFacts } from '../metrics/sources';


export interface ApplianceOverrides {
  readonly listen?: readonly string[];
  readonly dnsListen?: readonly string[];
  readonly dataDir?: string;
  readonly adminListen?: readonly string[];
}

export interface StartOptions {
  readonly log: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly clock?: Clock;
  /** Records every KMS request outcome (tests); the log line is written either way. */
  readonly onOutcome?: Parameters<typeof logActivation>[1] extends infer O ? (o: O) => void : never;
}

export interface ReloadReport {
  readonly applied: readonly string[];
  readonly needsRestart: readonly string[];
}

export interface Appliance {
  readonly config: AppConfig;
  readonly dataDir: string;
  readonly databaseFile: string;
  readonly kmsAddresses: readonly BoundAddress[];
  readonly dnsAddresses: readonly ListenAddress[];
  readonly adminAddresses: readonly ListenAddress[];
  /** The admin listeners' router (tests inject requests without sockets); absent when admin.listen is empty. */
  readonly admin: AdminHandle | undefined;
  /** Fleet reporting's state for /healthz and status; undefined while fleet.postgres.enabled is false. */
  fleetHealth(): FleetHealth | undefined;
  readonly metrics: ApplianceMetrics;
  readonly store: SqliteStore;
  readonly catalog: Catalog;
  reload(next: AppConfig): ReloadReport;
  stop(): Promise<void>;
}

/** Applies command-line overrides; listen specs are checked here so a typo is a usage error. */
export function applyOverrides(config: AppConfig, o: ApplianceOverrides): AppConfig {
  const next = structuredClone(config) as { -readonly [K in keyof AppConfig]: any };
  if (o.listen && o.listen.length > 0) next.kms.listen = [...o.listen];
  if (o.dnsListen && o.dnsListen.length > 0) next.dns.listen = [...o.dnsListen];
  if (o.dataDir) next.store.dataDir = o.dataDir;
  if (o.adminListen && o.adminListen.length > 0) next.admin.listen = [...o.adminListen];
  return next as AppConfig;
}

function parseAll(specs: readonly string[], what: string): ListenAddress[] {
  return specs.map((spec) => {
    const a = parseListenAddress(spec);
    if ('error' in a) throw new ConfigError('KMS_ERR_CONFIG_INVALID', `${what}: ${a.error}`, { errors: [`${what}: ${a.error}`] });
    return a;
  });
}

function hostSettings(config: AppConfig): HostSettings {
  const k = config.kms;
  return {
    activationIntervalMinutes: k.activationIntervalMinutes,
    renewalIntervalMinutes: k.renewalIntervalMinutes,
    checkRequestTime: k.checkRequestTime,
    maxClockSkewMinutes: k.maxClockSkewMinutes,
    verifyV4Mac: k.verifyV4Mac,
  };
}

function serverSettings(config: AppConfig): KmsServerSettings {
  const k = config.kms;
  return {
    ndr64: k.ndr64,
    btfn: k.btfn,
    maxPduBytes: k.maxPduBytes,
    maxStubBytes: k.maxStubBytes,
    maxConnections: k.maxConnections,
    maxConnectionsPerAddress: k.maxConnectionsPerAddress,
    ipv6GroupPrefixLength: k.ipv6GroupPrefixLength,
    idleTimeoutMs: k.idleTimeoutSeconds * 1000,
    maxConnectionLifetimeMs: k.maxConnectionSeconds * 1000,
    maxContextsPerConnection: k.maxContextsPerConnection,
    clientNetworks: k.clientNetworks,
  };
}

/** The machine's own addresses, for SRV additional records and registration. */
export function machineAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(a.address);
  }
  return out;
}

/**
 * The addresses clients can reach the KMS listener on: a specific listen address as it is, a
 * wildcard as the machine's addresses of that family. Publishing an interface the listener does
 * not serve would send clients to a closed port.
 */
export function kmsAddressesToPublish(bound: readonly { host: string; family: 4 | 6 }[], machine: () => string[] = machineAddresses): () => string[] {
  return () => {
    const out = new Set<string>();
    for (const b of bound) {
      if (b.host === '0.0.0.0' || b.host === '::') {
        // Link-local addresses mean nothing outside their link: never published.
        for (const a of machine()) if (net.isIP(a) === b.family && !/^(fe[89ab][0-9a-f]:|169\.254\.)/i.test(a)) out.add(a);
      } else {
        out.add(b.host);
      }
    }
    return [...out];
  };
}

/** The DNS responder's counters as /metrics reads them. */
function dnsFacts(dns: DnsServerHandle): () => DnsFacts {
  return () => {
    const s = dns.stats();
    return { responsesByRcode: s.responsesByRcode, rateLimited: s.rateLimited, refused: s.refused };
  };
}

/** Registration's state as /metrics and /healthz read it. */
function registrationFacts(registrar: RegistrarHandle): () => RegistrationFacts {
  return () => {
    const s = registrar.status();
    return { lastSuccessMs: s.lastSuccessMs, failures: s.failures, refreshMs: s.refreshMs, lastError: s.lastError ?? '' };
  };
}

export async function startAppliance(config: AppConfig, options: StartOptions): Promise<Appliance> {
  const { log } = options;
  const env = options.env ?? process.env;
  const clock: Clock = options.clock ?? { now: () => Date.now() };
  const kmsListen = parseAll(config.kms.listen, 'kms.listen');
  const dnsListen = parseAll(config.dns.listen, 'dns.listen');
  const adminListen = parseAll(config.admin.listen, 'admin.listen');

  const catalog = loadCatalog(config.catalog.file || undefined);
  const dataDir = resolveDataDir(config.store.dataDir, env);
  const store = SqliteStore.open(dataDir, {
    log,
    eventRetentionDays: config.store.eventRetentionDays,
    maxEvents: config.store.maxEvents,
    pendingLimits: { maxMachines: config.store.pendingMachines, maxEvents: config.store.pendingEvents },
    backgroundCheckpointMs: STORE_TUNING.checkpointIntervalMs,
  });
  const cleanup: (() => Promise<void> | void)[] = [() => store.close()];
  try {
    const requestRandom = pooledRandomBytes();
    const buildDeps = (cfg: AppConfig): ActivationDeps => {
      const policy = buildProductPolicy(catalog, { hostKeyGroups: cfg.host.hostKeyGroups, allowRetail: cfg.kms.allowRetail, allowPreview: cfg.kms.allowPreview });
      const identity = loadHostIdentity(
        { store, catalog, randomBytes, clock },
        { build: cfg.host.build, lcid: cfg.host.lcid, hwid: cfg.host.hwid, epids: cfg.host.epids, ndr64: cfg.kms.ndr64 },
      );
      // Generate (or check) every ePID now, so a host-key group that cannot form one fails at start.
      for (const h of policy.hostKeyGroupsInUse) identity.epidFor(h.id);
      return { catalog, policy, identity, store, clock, randomBytes: requestRandom, settings: hostSettings(cfg) };
    };
    const deps = buildDeps(config);
    const gate = new GroupCommitGate(store);
    const handlerFor = (d: ActivationDeps) => (message: Buffer, clientAddress: string) => {
      gate.enter();
      return processKmsMessage(message, clientAddress, d);
    };
    const onOutcome = options.onOutcome;
    // Filled in once the servers exist; /metrics and /healthz read them through these getters.
    let sources: MetricSources | undefined;
    const metrics = createApplianceMetrics(
      {
        kms: () => sources!.kms(),
        store: () => sources!.store(),
        counts: () => sources!.counts(),
        ...(dnsListen.length > 0 ? { dns: () => sources!.dns!() } : {}),
        ...(config.dns.registration.enabled ? { registration: () => sources!.registration!() } : {}),
      },
      { knownApplication: (id) => catalog.applicationById(id)?.name },
    );
    const kms = new KmsServer({
      listen: kmsListen,
      settings: serverSettings(config),
      handler: handlerFor(deps),
      gate,
      log,
      onOutcome: (o) => {
        logActivation(log, o);
        metrics.recordOutcome(o);
        onOutcome?.(o);
      },
    });
    const kmsAddresses = await kms.start();
    cleanup.unshift(async () => {
      await kms.close();
      gate.flush();
    });
    const kmsPort = kmsAddresses[0]!.port;
    const hostName = os.hostname();
    const publish = kmsAddressesToPublish(kmsAddresses);

    let dns: DnsServerHandle | undefined;
    if (dnsListen.length > 0) {
      // Loaded only when used: a host without DNS or mDNS does not carry those modules.
      const { startDnsServer } = require('../dns/dns-server') as typeof import('../dns/dns-server');
      dns = await startDnsServer(config.dns, { kmsPort, hostName, addresses: publish, log }, dnsListen);
      const d = dns;
      cleanup.unshift(() => d.close());
    }
    let registrar: RegistrarHandle | undefined;
    if (config.dns.registration.enabled) {
      const { startRegistrar } = require('../dns/registrar') as typeof import('../dns/registrar');
      registrar = startRegistrar(config.dns.registration, { kmsPort, hostName, addresses: publish, log });
      const r = registrar;
      cleanup.unshift(async () => {
        await r.stop();
      });
    }
    let mdns: MdnsHandle | undefined;
    if (config.dns.mdns.enabled) {
      const { startMdns } = require('../dns/mdns') as typeof import('../dns/mdns');
      mdns = startMdns(config.dns.mdns, { kmsPort, hostName, addresses: publish, log });
      const m = mdns;
      cleanup.unshift(() => m.stop());
    }
    // The admin page reads the database in a worker thread with its own connection, never on
    // this event loop (a million clients take seconds to summarise).
    const { SnapshotService } = require('../admin/snapshot-service') as typeof import('../admin/snapshot-service');
    const snapshots = new SnapshotService({ dataDir, catalogFile: config.catalog.file }, log, () => clock.now());
    cleanup.unshift(() => snapshots.close());
    sources = {
      kms: () => {
        const s = kms.stats();
        return { listening: kms.addresses().length > 0, open: s.open, refusedByReason: s.refusedByReason };
      },
      store: () => {
        const s = store.stats();
        return { pendingWrites: s.pendingMachines, pendingEvents: s.pendingEvents, writeFailures: s.writeFailures, writable: s.writable, lastError: s.lastWriteError ?? '' };
      },
      counts: () => snapshots.latestCounts(),
      ...(dns ? { dns: dnsFacts(dns) } : {}),
      ...(registrar ? { registration: registrationFacts(registrar) } : {}),
    };
    let fleet: FleetForwarder | undefined;
    if (config.fleet.postgres.enabled) {
      // Loaded only when used: a box that does not report never loads pg. The forwarder works on
      // a timer, off the request path; a database that is down or slow costs clients nothing.
      const { FleetForwarder: Forwarder } = require('../fleet/forwarder') as typeof import('../fleet/forwarder');
      const { catalogNames } = require('../catalog/names') as typeof import('../catalog/names');
      const { VERSION } = require('../version') as typeof import('../version');
      fleet = new Forwarder({ outbox: store.fleetOutbox(), fleet: config.fleet, log, names: catalogNames(catalog), softwareVersion: VERSION, clock, hostName });
      fleet.start();
      const f = fleet;
      cleanup.unshift(() => f.stop());
      sources = { ...sources, fleet: () => f.health() };
    }
    let admin: AdminHandle | undefined;
    if (adminListen.length > 0) {
      const { startAdmin } = require('../admin/admin-service') as typeof import('../admin/admin-service');
      admin = await startAdmin(adminListen, {
        config,
        dataDir,
        log,
        sources,
        metrics,
        snapshots,
        now: () => clock.now(),
        machineAddresses,
        facts: {
          databaseFile: databaseFile(dataDir),
          catalog: catalog.source,
          kmsListen: () => kms.addresses().map(formatListenAddress),
          dnsListen: () => (dns?.addresses ?? []).map(formatListenAddress),
        },
      });
      const a = admin;
      cleanup.unshift(() => a.close());
    }

    let current = config;
    log.info(
      {
        event: 'listening',
        kms: kmsAddresses.map(formatListenAddress),
        dns: (dns?.addresses ?? []).map(formatListenAddress),
        admin: (admin?.addresses ?? []).map(formatListenAddress),
        database: databaseFile(dataDir),
        catalog: catalog.source,
        hostKeyGroups: deps.policy.hostKeyGroupsInUse.length,
        mdns: config.dns.mdns.enabled ? 'announcing _vlmcs._tcp.local (for people and tools: Windows clients do not use mDNS to find a KMS host)' : 'off',
      },
      `KMS host listening on ${kmsAddresses.map(formatListenAddress).join(', ')}; database ${databaseFile(dataDir)}`,
    );

    let stopped = false;
    return {
      get config() {
        return current;
      },
      dataDir,
      databaseFile: databaseFile(dataDir),
      kmsAddresses,
      dnsAddresses: dns?.addresses ?? [],
      adminAddresses: admin?.addresses ?? [],
      admin,
      fleetHealth: () => fleet?.health(),
      metrics,
      store,
      catalog,
      reload(next: AppConfig): ReloadReport {
        const needsRestart: string[] = [];
        const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
        if (!same(next.kms.listen, current.kms.listen)) needsRestart.push('kms.listen');
        if (!same(next.dns, current.dns)) needsRestart.push('dns');
        if (!same(next.admin, current.admin)) needsRestart.push('admin');
        if (!same(next.fleet, current.fleet)) needsRestart.push('fleet');
        if (!same(next.store, current.store)) needsRestart.push('store');
        if (!same(next.catalog, current.catalog)) needsRestart.push('catalog');
        // Build everything first: an exception here leaves the running configuration untouched.
        // (NDR64 and the ePID build change together, C26: the schema refused a file where they
        // disagree, and both apply to the next connection.)
        const nextDeps = buildDeps(next);
        kms.reconfigure(serverSettings(next), handlerFor(nextDeps));
        log.level = next.log.level;
        const applied = ['kms (intervals, checks, limits, allowlist, NDR64/BTFN for new connections)', 'host', 'entitlements', 'log.level', ...(admin?.reload(next) ?? [])];
        current = next;
        return { applied, needsRestart };
      },
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        for (const step of cleanup) {
          try {
            await step();
          } catch (err) {
            log.error({ err }, 'error while stopping');
          }
        }
      },
    };
  } catch (err) {
    for (const step of cleanup) {
      try {
        await step();
      } catch {
        // already failing; the first error is the one worth reporting
      }
    }
    throw err;
  }
}
