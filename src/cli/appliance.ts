// Assembles the running appliance from a validated configuration: an ordered list of services
// (store, KMS listener, DNS responder, DNS registration, mDNS, admin snapshots, fleet reporting,
// admin page; src/cli/services/), started in order and closed in reverse. `serve` runs it; tests
// start it in-process on port 0. Reload asks each service to apply its own section, without
// dropping connections, and to name the keys that wait for a restart.
import os from 'node:os';
import net from 'node:net';
import { ConfigError } from '../errors';
import type { AppConfig } from '../config/defaults';
import { parseListenAddress, formatListenAddress, type ListenAddress } from '../config/listen-address';
import { loadCatalog } from '../catalog/load';
import type { Catalog } from '../catalog/catalog';
import type { Clock } from '../host/ports';
import type { SqliteStore } from '../store/sqlite-store';
import { databaseFile, resolveDataDir } from '../store/data-dir';
import type { BoundAddress } from '../server/kms-server';
import type { logActivation, Logger } from '../logging/logger';
import type { FleetHealth } from '../fleet/forwarder';
import type { AdminHandle } from '../admin/admin-service';
import { createApplianceMetrics, type ApplianceMetrics } from '../metrics/appliance-metrics';
import type { MetricSources } from '../metrics/sources';
import { ServiceStack } from './service';
import { storeService } from './services/store';
import { kmsService } from './services/kms';
import { settingsService } from './services/settings';
import { dnsService, mdnsService, registrationService } from './services/dns';
import { snapshotsService } from './services/snapshots';
import { fleetService } from './services/fleet';
import { adminService } from './services/admin';

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

interface ReloadReport {
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

/** The machine's own addresses, for SRV additional records and registration. */
function machineAddresses(): string[] {
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
export function kmsAddressesToPublish(
  bound: readonly { host: string; family: 4 | 6 }[],
  machine: () => string[] = machineAddresses,
): () => string[] {
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

export async function startAppliance(config: AppConfig, options: StartOptions): Promise<Appliance> {
  const { log } = options;
  const env = options.env ?? process.env;
  const clock: Clock = options.clock ?? { now: () => Date.now() };
  const kmsListen = parseAll(config.kms.listen, 'kms.listen');
  const dnsListen = parseAll(config.dns.listen, 'dns.listen');
  const adminListen = parseAll(config.admin.listen, 'admin.listen');

  const catalog = loadCatalog(config.catalog.file || undefined);
  // A hand-edited catalogue's dangling reference leaves a product group unserved: said at start.
  for (const w of catalog.warnings) log.warn({ event: 'catalog-warning', catalog: catalog.source }, w);
  const dataDir = resolveDataDir(config.store.dataDir, env);
  const services = new ServiceStack(config, log);
  try {
    const { store, facts: storeFacts } = await services.start(() => storeService(config, dataDir, log, clock));
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
    const { onOutcome } = options;
    const kms = await services.start(() => kmsService(config, kmsListen, { catalog, store, clock, log, metrics, onOutcome }));
    await services.start(() => settingsService(log));
    const hostName = os.hostname();
    const published = { kmsPort: kms.bound[0]!.port, hostName, addresses: kmsAddressesToPublish(kms.bound), log };
    const dns = await services.start(() => dnsService(config, dnsListen, published));
    const registration = await services.start(() => registrationService(config, published));
    await services.start(() => mdnsService(config, published));
    const { snapshots } = await services.start(() => snapshotsService(config, dataDir, log, () => clock.now()));
    const fleet = await services.start(() => fleetService(config, { store, catalog, log, clock, hostName }));
    sources = {
      kms: kms.facts,
      store: storeFacts,
      counts: () => snapshots.latestCounts(),
      ...(dns.facts ? { dns: dns.facts } : {}),
      ...(registration.facts ? { registration: registration.facts } : {}),
      ...(fleet.health ? { fleet: fleet.health } : {}),
    };
    const admin = await services.start(() =>
      adminService(config, adminListen, {
        dataDir,
        log,
        sources: sources!,
        metrics,
        snapshots,
        now: () => clock.now(),
        machineAddresses,
        facts: {
          databaseFile: databaseFile(dataDir),
          catalog: catalog.source,
          kmsListen: () => kms.addresses().map(formatListenAddress),
          dnsListen: () => dns.addresses().map(formatListenAddress),
        },
      }),
    );

    log.info(
      {
        event: 'listening',
        kms: kms.bound.map(formatListenAddress),
        dns: dns.addresses().map(formatListenAddress),
        admin: admin.addresses().map(formatListenAddress),
        database: databaseFile(dataDir),
        catalog: catalog.source,
        hostKeyGroups: kms.hostKeyGroupsInUse,
        mdns: config.dns.mdns.enabled
          ? 'announcing _vlmcs._tcp.local (for people and tools: Windows clients do not use mDNS to find a KMS host)'
          : 'off',
      },
      `KMS host listening on ${kms.bound.map(formatListenAddress).join(', ')}; database ${databaseFile(dataDir)}`,
    );

    let stopped = false;
    return {
      get config() {
        return services.config;
      },
      dataDir,
      databaseFile: databaseFile(dataDir),
      kmsAddresses: kms.bound,
      dnsAddresses: dns.addresses(),
      adminAddresses: admin.addresses(),
      admin: admin.handle,
      fleetHealth: () => fleet.health?.(),
      metrics,
      store,
      catalog,
      reload: (next) => services.reload(next),
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        await services.close();
      },
    };
  } catch (err) {
    await services.abandon();
    throw err;
  }
}
