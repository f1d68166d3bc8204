// Types the KMS TCP server shares with its callers (the serve command, tests, the benchmark).
import type { ActivationOutcome } from '../host/outcome';

/** The subset of a pino logger the servers use. */
export interface ServerLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface KmsServerSettings {
  readonly ndr64: boolean;
  readonly btfn: boolean;
  readonly maxPduBytes: number;
  readonly maxStubBytes: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  /** IPv6 clients count against maxConnectionsPerAddress per network of this prefix length. */
  readonly ipv6GroupPrefixLength: number;
  /** Closed after this long without progress (a bind/alter_context that added a context, or a served request). */
  readonly idleTimeoutMs: number;
  /** Closed after this long whatever it does, so no client holds a slot forever. */
  readonly maxConnectionLifetimeMs: number;
  readonly maxContextsPerConnection: number;
  readonly clientNetworks: readonly string[];
}

/** The host's request pipeline as the server sees it (src/host/activation.ts processKmsMessage). */
export type ActivationHandler = (
  kmsMessage: Buffer,
  clientAddress: string,
) => { readonly response?: Buffer; readonly hresult: number; readonly outcome: ActivationOutcome };

export const SILENT_LOG: ServerLog = { info() {}, warn() {}, error() {}, debug() {} };
