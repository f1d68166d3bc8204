// The KMS listener's settings for tests that start a KmsServer directly: the defaults' shape with
// roomy limits, and the field under test changed by the caller.
import type { KmsServerSettings } from '../../src/server/types';

export function testServerSettings(edit: Partial<KmsServerSettings> = {}): KmsServerSettings {
  return {
    ndr64: true,
    btfn: true,
    maxPduBytes: 4096,
    maxStubBytes: 4096,
    maxConnections: 100,
    maxConnectionsPerAddress: 64,
    ipv6GroupPrefixLength: 64,
    idleTimeoutMs: 30_000,
    maxConnectionLifetimeMs: 300_000,
    maxContextsPerConnection: 16,
    clientNetworks: [],
    ...edit,
  };
}
