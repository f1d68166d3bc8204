// The admin side of a running appliance, assembled from its configuration: the exposure rule
// (only loopback without TLS and a password), the certificate, the login guard, the snapshot
// worker, the router and the listeners. The appliance hands it cheap getters and nothing else.
import os from 'node:os';
import net from 'node:net';
import type { AppConfig } from '../config/defaults';
import { formatListenAddress, type ListenAddress } from '../config/listen-address';
import { ConfigError } from '../errors';
import type { Entitlement } from '../store/compliance';
import type { ApplianceMetrics } from '../metrics/appliance-metrics';
import type { MetricSources } from '../metrics/sources';
import { checkHealth } from './health';
import { HostCheck, ownHostNames } from './host-check';
import { startAdminServer, type AdminServerHandle, type AdminServerLog } from './http-server';
import { LoginGuard } from './login';
import { LOCKED_PASSWORD } from './password';
import { watchPasswordFile } from './password-watch';
import { AdminRouter } from './router';
import { STATUS_WAIT_MS, type SnapshotService, waitAtMost } from './snapshot-service';
import type { AdminSnapshot } from './snapshot';
import type { CertificatePair } from './tls-certificate';
import { VERSION } from '../version';

interface AdminFacts {
  readonly databaseFile: string;
  readonly catalog: string;
  kmsListen(): string[];
  dnsListen(): string[];
}

export interface AdminDeps {
  readonly config: AppConfig;
  readonly dataDir: string;
  readonly log: AdminServerLog;
  readonly sources: MetricSources;
  readonly metrics: ApplianceMetrics;
  readonly facts: AdminFacts;
  readonly snapshots: SnapshotService;
  readonly now?: () => number;
  /** The machine's non-loopback addresses (certificate SANs for a wildcard listener). */
  readonly machineAddresses?: () => string[];
}

export interface AdminHandle {
  readonly addresses: readonly ListenAddress[];
  readonly tls: boolean;
  readonly router: AdminRouter;
  /** SIGHUP: re-reads the site's certificate files; returns what was applied. */
  reload(next: AppConfig): string[];
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return (net.isIPv4(host) && host.startsWith('127.')) || host === '::1';
}

/**
 * The exposure rule: an admin listener beyond loopback only with TLS and a password. Throws the
 * one line `serve` prints before exiting 2.
 */
export function checkAdminExposure(listen: readonly ListenAddress[], tlsEnabled: boolean, passwordSet: boolean, dataDir: string): void {
  const exposed = listen.filter((a) => !isLoopback(a.host));
  if (exposed.length === 0 || (tlsEnabled && passwordSet)) return;
  const missing = [
    tlsEnabled ? '' : 'admin.tls.enabled: true',
    passwordSet ? '' : `a password (kms-appliance admin set-password --data-dir ${dataDir})`,
  ]
    .filter(Boolean)
    .join(' and ');
  const msg =
    `admin listener ${exposed.map(formatListenAddress).join(', ')} is not on loopback: ` +
    `it needs ${missing}, or listen on 127.0.0.1/[::1] only`;
  throw new ConfigError('KMS_ERR_CONFIG_ADMIN_EXPOSED', msg, { errors: [msg] });
}

/** node-forge is loaded only by a listener that serves TLS: a plain loopback page does not carry it. */
function tlsCertificates(): typeof import('./tls-certificate') {
  return require('./tls-certificate') as typeof import('./tls-certificate');
}

/** The certificate the listeners serve: the site's (checked) or the generated self-signed one. */
async function adminCertificate(
  config: AppConfig,
  dataDir: string,
  hostName: string,
  addresses: readonly string[],
): Promise<CertificatePair & { source: string; created?: boolean; replaced?: string }> {
  const { loadOrCreateSelfSigned, readSitePair } = tlsCertificates();
  const t = config.admin.tls;
  if (t.certFile) {
    let pair;
    try {
      pair = readSitePair(t.certFile, t.keyFile);
    } catch (err) {
      const msg = `admin.tls: ${(err as Error).message}`;
      throw new ConfigError('KMS_ERR_CONFIG_ADMIN_TLS', msg, { errors: [msg] });
    }
    if (pair.errors.length > 0) {
      const lines = pair.errors.map((e) => `admin.tls.certFile ${t.certFile}: ${e}`);
      throw new ConfigError('KMS_ERR_CONFIG_ADMIN_TLS', lines[0], { errors: lines });
    }
    return { certPem: pair.certPem, keyPem: pair.keyPem, source: t.certFile };
  }
  const made = await loadOrCreateSelfSigned(dataDir, hostName, addresses);
  return { ...made, source: 'self-signed (kms-appliance admin cert)' };
}

export async function startAdmin(listen: readonly ListenAddress[], deps: AdminDeps): Promise<AdminHandle> {
  const { config, dataDir, log, sources } = deps;
  const now = deps.now ?? Date.now;
  const passwordOf = watchPasswordFile(dataDir, log);
  const exposed = listen.some((a) => !isLoopback(a.host));
  checkAdminExposure(listen, config.admin.tls.enabled, passwordOf() !== undefined, dataDir);
  const hostName = os.hostname();
  let tls: CertificatePair | undefined;
  if (config.admin.tls.enabled) {
    const own = listen.filter((a) => a.host !== '0.0.0.0' && a.host !== '::').map((a) => a.host);
    const wildcard = own.length < listen.length;
    const cert = await adminCertificate(config, dataDir, hostName, [
      ...own,
      ...(wildcard ? (deps.machineAddresses?.() ?? []) : []),
      '127.0.0.1',
      '::1',
    ]);
    if (cert.replaced !== undefined)
      log.warn(
        { event: 'admin-certificate', dataDir, reason: cert.replaced },
        `admin: the generated certificate (admin-tls.crt, admin-tls.key in ${dataDir}) could not be used: ${cert.replaced}; ` +
          'made a new self-signed certificate (the old files are kept as *.old); ' +
          'its fingerprint changed: `kms-appliance admin cert` prints it',
      );
    else if (cert.created)
      log.info(
        { event: 'admin-certificate' },
        'admin: generated a self-signed certificate; `kms-appliance admin cert` prints its fingerprint',
      );
    tls = cert;
  }
  // A listener beyond loopback never falls open: with the password file gone, nobody gets in.
  const login = new LoginGuard(exposed ? () => passwordOf() ?? LOCKED_PASSWORD : passwordOf, log, now);
  let entitlements: readonly Entitlement[] = config.entitlements;
  const health = () => checkHealth(sources, now());
  const snapshot = async (): Promise<AdminSnapshot> => {
    const inventory = await waitAtMost(
      deps.snapshots.inventory(entitlements),
      STATUS_WAIT_MS,
      'the figures are still being computed (a big database takes a while the first time); try again in a minute',
    );
    return {
      generatedAt: new Date(now()).toISOString(),
      version: VERSION,
      databaseFile: deps.facts.databaseFile,
      catalog: deps.facts.catalog,
      kmsListen: deps.facts.kmsListen(),
      dnsListen: deps.facts.dnsListen(),
      health: health(),
      inventory,
    };
  };
  const router = new AdminRouter({
    hostCheck: new HostCheck(ownHostNames(hostName, config.admin.hostNames)),
    login,
    health,
    snapshot,
    machines: (q) => deps.snapshots.machines(q),
    metrics: () => deps.metrics.scrape(),
    log,
    onLoginFailure: () => deps.metrics.recordLoginFailure(),
  });
  const server: AdminServerHandle = await startAdminServer({
    listen,
    ...(tls ? { tls } : {}),
    maxConnections: config.admin.maxConnections,
    router,
    log,
  });
  return {
    addresses: server.addresses,
    tls: server.tls,
    router,
    reload(next) {
      entitlements = next.entitlements;
      const applied = ['admin entitlements'];
      const t = next.admin.tls;
      if (server.tls && t.enabled && t.certFile) {
        // A bad renewal must not stop the rest of the reload: it is logged and the running certificate stays.
        let problems: readonly string[];
        try {
          const pair = tlsCertificates().readSitePair(t.certFile, t.keyFile);
          problems = pair.errors;
          if (problems.length === 0) server.setCertificate(pair);
        } catch (err) {
          problems = [(err as Error).message];
        }
        if (problems.length === 0) {
          applied.push('admin.tls certificate');
        } else {
          log.error(
            { event: 'reload', code: 'KMS_ERR_CONFIG_ADMIN_TLS', certFile: t.certFile, errors: problems },
            `admin.tls.certFile ${t.certFile}: ${problems[0]}; the running certificate stays`,
          );
        }
      }
      return applied;
    },
    close: () => server.close(),
  };
}
