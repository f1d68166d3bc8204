// The KMS message fields as the codecs hand them to the host (PROTOCOL.md §4.2, §4.3).
// GUIDs are lowercase strings; times are FILETIME bigints exactly as on the wire.

export type KmsVersion = 4 | 5 | 6;

/** The 236-byte request base (§4.2), decrypted for v5/v6. */
export interface KmsRequestBase {
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly vmInfo: number;
  readonly licenseStatus: number;
  readonly bindingExpiration: number; // minutes until the client's current licence state ends
  readonly applicationId: string;
  readonly activationId: string; // the SKU
  readonly kmsCountedId: string; // the KMS product group the host decides on
  readonly clientMachineId: string; // CMID
  readonly requiredClientCount: number; // the client's activation threshold (NCountPolicy)
  readonly requestTime: bigint; // client clock, FILETIME UTC
  readonly previousClientMachineId: string;
  readonly workstationName: string;
}

/** A request as decoded by the host: the base plus what the response construction needs. */
export interface DecodedKmsRequest {
  readonly version: KmsVersion;
  readonly base: KmsRequestBase;
  /** v5/v6: the request's wire IV (v5 responses echo it). */
  readonly iv?: Buffer;
  /** v5/v6: Dreq = D_K(IV), the decrypted request IV (§6.2). */
  readonly dreq?: Buffer;
}

/** The response base (§4.3). */
export interface KmsResponseBase {
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly epid: string;
  readonly clientMachineId: string; // echoed
  readonly clientTime: bigint; // echoed RequestTime
  readonly currentCount: number;
  readonly activationInterval: number; // minutes
  readonly renewalInterval: number; // minutes
}

/** Host secrets and randomness the response encoder needs. */
export interface ResponseMaterial {
  /** v6: the host's 8-byte hardware id (§7.5). */
  readonly hwid: Buffer;
  /** Cryptographic random bytes (§7.7). */
  readonly randomBytes: (n: number) => Buffer;
}

/** A response a client has decrypted and verified (what `activate` prints). */
export interface VerifiedKmsResponse {
  readonly version: KmsVersion;
  readonly base: KmsResponseBase;
  readonly hwid?: Buffer; // v6 only
}

/** What a client keeps of the request it sent, to verify the response against. */
export interface SentKmsRequest {
  readonly version: KmsVersion;
  readonly base: KmsRequestBase;
  readonly message: Buffer; // the bytes sent
  readonly iv?: Buffer;
  readonly dreq?: Buffer;
}
