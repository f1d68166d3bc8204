// What the host decided for one KMS request: the fields a Windows host writes to event 12290
// (PROTOCOL.md §7.1), plus the names an administrator reads instead of GUIDs. The server logs one
// record of this per request (C32) and the store keeps it in the event log.

export interface ActivationOutcome {
  readonly result: 'activated' | 'below-threshold' | 'refused';
  /** 0 when served; the refusal HRESULT otherwise. */
  readonly hresult: number;
  /** Registered error code (src/errors.ts) of a refusal. */
  readonly code?: string;
  readonly clientAddress: string;
  readonly protocolVersion?: number; // 4, 5, 6 (absent when the version itself was bad)
  readonly clientMachineId?: string;
  readonly previousClientMachineId?: string;
  readonly workstationName?: string;
  readonly applicationId?: string;
  readonly applicationName?: string;
  readonly kmsCountedId?: string;
  readonly productGroupName?: string;
  readonly activationId?: string;
  /** SKU name, or a description naming the group when the SKU is not in the catalogue. */
  readonly skuName?: string;
  readonly requiredClientCount?: number;
  /** The client's clock (ms since 1970; logged in ISO 8601 when Date can show it). */
  readonly requestTimeMs?: number;
  readonly vm?: boolean;
  readonly licenseStatus?: number;
  readonly licenseStatusName?: string;
  readonly bindingExpirationMinutes?: number;
  /** Count returned to the client (served requests only). */
  readonly currentCount?: number;
  readonly epid?: string;
  /** For refusals and low counts: what the client shows and what the admin can change. */
  readonly explanation?: string;
}
