// A host over a fake clock and a MemoryActivationStore, and a client that builds requests with the
// codec's test encoder and checks answers with its verifier: the activation tests' common setup.
import { randomBytes } from 'node:crypto';
import { loadCatalog } from '../../src/catalog/load';
import { processKmsMessage, type ActivationDeps, type ActivationResult, type HostSettings } from '../../src/host/activation';
import { loadHostIdentity, type HostIdentitySettings } from '../../src/host/host-identity';
import { MemoryActivationStore } from '../../src/host/memory-store';
import { buildProductPolicy, type ProductPolicyOptions } from '../../src/host/product-policy';
import { filetimeFromMs } from '../../src/protocol/filetime';
import { NIL_GUID } from '../../src/protocol/guid';
import { encodeKmsRequest, verifyKmsResponse } from '../../src/protocol/kms';
import type { KmsRequestBase, KmsVersion, SentKmsRequest, VerifiedKmsResponse } from '../../src/protocol/kms/types';
import { WIN10_ENTERPRISE_SKU } from '../ids';

export const catalog = loadCatalog();

export const T0 = Date.UTC(2026, 10, 24, 0, 26, 6);
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

const DEFAULT_SETTINGS: HostSettings = {
  activationIntervalMinutes: 120,
  renewalIntervalMinutes: 10080,
  checkRequestTime: true,
  maxClockSkewMinutes: 240,
  verifyV4Mac: true,
};

/** A KMS group of the catalogue by name, with its application. */
export function group(name: string): { id: string; app: string; nCountPolicy: number } {
  for (const app of catalog.applications) {
    const g = app.kmsGroups.find((x) => x.name === name);
    if (g) return { id: g.id, app: app.id, nCountPolicy: g.nCountPolicy };
  }
  throw new Error(`no KMS group named ${name}`);
}

export function cmid(n: number): string {
  return `7f2d1b56-3c4e-4a8b-9d10-${n.toString(16).padStart(12, '0')}`;
}

interface Exchange {
  readonly result: ActivationResult;
  readonly sent: SentKmsRequest;
  /** The verified response (served requests only). */
  readonly verified?: VerifiedKmsResponse;
}

export interface TestHost {
  readonly deps: ActivationDeps;
  readonly store: MemoryActivationStore;
  now: number;
  /** Builds a request (defaults: Windows 10/11 volume, v6, the host's current time), sends it, verifies the answer. */
  request(over?: Partial<KmsRequestBase> & { version?: KmsVersion; groupName?: string }): Exchange;
  send(message: Buffer): ActivationResult;
  /** The same store and clock, with the identity, policy and settings loaded again (a restart). */
  restart(): TestHost;
}

export interface TestHostOptions {
  readonly settings?: Partial<HostSettings>;
  readonly policy?: Partial<ProductPolicyOptions>;
  readonly identity?: Partial<HostIdentitySettings>;
  readonly store?: MemoryActivationStore;
  readonly now?: number;
}

export function makeHost(opts: TestHostOptions = {}): TestHost {
  const store = opts.store ?? new MemoryActivationStore();
  const host = {
    now: opts.now ?? T0,
    store,
  } as { now: number; store: MemoryActivationStore } & Partial<TestHost>;
  const clock = { now: () => host.now };
  const policy = buildProductPolicy(catalog, { hostKeyGroups: [], allowRetail: false, allowPreview: false, ...opts.policy });
  const identity = loadHostIdentity(
    { store, catalog, randomBytes, clock },
    { build: 20348, lcid: 1033, hwid: '', epids: {}, ndr64: true, ...opts.identity },
  );
  const deps: ActivationDeps = {
    catalog,
    policy,
    identity,
    store,
    clock,
    randomBytes,
    settings: { ...DEFAULT_SETTINGS, ...opts.settings },
  };
  const self = host as TestHost;
  Object.assign(host, {
    deps,
    send: (message: Buffer) => processKmsMessage(message, '192.0.2.10', deps),
    request(over: Partial<KmsRequestBase> & { version?: KmsVersion; groupName?: string } = {}): Exchange {
      const { version = 6, groupName = 'Windows 10/11 2015 (Volume)', ...fields } = over;
      const g = group(groupName);
      const base: KmsRequestBase = {
        majorVersion: version,
        minorVersion: 0,
        vmInfo: 0,
        licenseStatus: 2,
        bindingExpiration: 43200,
        applicationId: g.app,
        activationId: WIN10_ENTERPRISE_SKU,
        kmsCountedId: g.id,
        clientMachineId: cmid(1),
        requiredClientCount: g.nCountPolicy,
        requestTime: filetimeFromMs(self.now),
        previousClientMachineId: NIL_GUID,
        workstationName: 'client01.contoso.test',
        ...fields,
      };
      const sent = encodeKmsRequest(version, base, randomBytes);
      const result = self.send(sent.message);
      const verified = result.response === undefined ? undefined : verifyKmsResponse(result.response, sent);
      return verified === undefined ? { result, sent } : { result, sent, verified };
    },
    restart: () => makeHost({ ...opts, store, now: self.now }),
  });
  return self;
}
