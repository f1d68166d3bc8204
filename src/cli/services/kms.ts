// The KMS listener and what answers on it: product policy, host identity, the group-commit gate.
// A reload swaps settings and the request handler for new connections without dropping any.
import { randomBytes } from 'node:crypto';
import type { Catalog } from '../../catalog/catalog';
import type { AppConfig } from '../../config/defaults';
import type { ListenAddress } from '../../config/listen-address';
import { processKmsMessage, type ActivationDeps, type HostSettings } from '../../host/activation';
import { loadHostIdentity } from '../../host/host-identity';
import type { ActivationOutcome } from '../../host/outcome';
import type { Clock } from '../../host/ports';
import { buildProductPolicy } from '../../host/product-policy';
import { unusualThresholdLogger } from '../../host/unusual-thresholds';
import { logActivation, type Logger } from '../../logging/logger';
import type { ApplianceMetrics } from '../../metrics/appliance-metrics';
import type { KmsConnectionFacts } from '../../metrics/sources';
import { KmsServer, type BoundAddress } from '../../server/kms-server';
import { pooledRandomBytes } from '../../server/random-pool';
import { GroupCommitGate } from '../../server/reply-gate';
import type { KmsServerSettings } from '../../server/types';
import type { SqliteStore } from '../../store/sqlite-store';
import { changedKeys, type Service } from '../service';

export interface KmsServiceDeps {
  readonly catalog: Catalog;
  readonly store: SqliteStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: ApplianceMetrics;
  /** Records every request outcome (tests); the log line is written either way. */
  readonly onOutcome?: ((o: ActivationOutcome) => void) | undefined;
}

export interface KmsService extends Service {
  /** Where it listens, as bound at start (port 0 resolved). */
  readonly bound: readonly BoundAddress[];
  /** Host-key groups served at start, for the start-up line. */
  readonly hostKeyGroupsInUse: number;
  addresses(): readonly ListenAddress[];
  /** The listener's counters as /metrics and /healthz read them. */
  facts(): KmsConnectionFacts;
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

const APPLIED = ['kms (intervals, checks, limits, allowlist, NDR64/BTFN for new connections)', 'host'];

export async function kmsService(config: AppConfig, listen: readonly ListenAddress[], deps: KmsServiceDeps): Promise<KmsService> {
  const { catalog, store, clock, log, metrics, onOutcome } = deps;
  const requestRandom = pooledRandomBytes();
  // One for the process: a reload does not log the same odd threshold again.
  const onUnusualThreshold = unusualThresholdLogger(log);
  const buildDeps = (cfg: AppConfig): ActivationDeps => {
    const { hostKeyGroups } = cfg.host;
    const policy = buildProductPolicy(catalog, { hostKeyGroups, allowRetail: cfg.kms.allowRetail, allowPreview: cfg.kms.allowPreview });
    const identity = loadHostIdentity(
      { store, catalog, randomBytes, clock },
      { build: cfg.host.build, lcid: cfg.host.lcid, hwid: cfg.host.hwid, epids: cfg.host.epids, ndr64: cfg.kms.ndr64 },
    );
    // Generate (or check) every ePID now, so a host-key group that cannot form one fails at start.
    for (const h of policy.hostKeyGroupsInUse) identity.epidFor(h.id);
    return { catalog, policy, identity, store, clock, randomBytes: requestRandom, settings: hostSettings(cfg), onUnusualThreshold };
  };
  const initial = buildDeps(config);
  const gate = new GroupCommitGate(store);
  const handlerFor = (d: ActivationDeps) => (message: Buffer, clientAddress: string) => {
    gate.enter();
    return processKmsMessage(message, clientAddress, d);
  };
  const server = new KmsServer({
    listen,
    settings: serverSettings(config),
    handler: handlerFor(initial),
    gate,
    log,
    onOutcome: (o) => {
      logActivation(log, o);
      metrics.recordOutcome(o);
      onOutcome?.(o);
    },
  });
  const bound = await server.start();
  return {
    name: 'kms',
    bound,
    hostKeyGroupsInUse: initial.policy.hostKeyGroupsInUse.length,
    addresses: () => server.addresses(),
    facts: () => {
      const s = server.stats();
      return { listening: server.addresses().length > 0, open: s.open, refusedByReason: s.refusedByReason };
    },
    reload(next, running) {
      // The catalogue is read once at start; the listener's sockets stay as they are.
      const needsRestart = [
        ...changedKeys('kms', running.kms, next.kms, ['listen']),
        ...changedKeys('catalog', running.catalog, next.catalog),
      ];
      // Build everything first: an exception here leaves the running configuration untouched.
      // (NDR64 and the ePID build change together, C26: the schema refused a file where they
      // disagree, and both apply to the next connection.)
      const nextDeps = buildDeps(next);
      server.reconfigure(serverSettings(next), handlerFor(nextDeps));
      return { applied: APPLIED, needsRestart };
    },
    async close() {
      await server.close();
      gate.flush();
    },
  };
}
