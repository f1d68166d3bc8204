// The interfaces host logic owns and the outer layers implement: a clock, randomness and the
// activation store. host/ never imports SQLite, sockets or the system clock directly.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export type RandomBytes = (n: number) => Buffer;

/** One served (or refused) request, as the store records it. */
export interface ClientObservation {
  readonly applicationId: string;
  readonly kmsCountedId: string;
  readonly activationId: string; // SKU
  readonly clientMachineId: string;
  readonly previousClientMachineId: string; // all-zero GUID when none
  readonly workstationName: string;
  readonly requiredClientCount: number;
  readonly licenseStatus: number;
  readonly vmInfo: number;
  readonly protocolVersion: number; // 4, 5 or 6
  readonly clientAddress: string; // IP address as text, '' when unknown
  readonly requestTimeMs: number; // the client's clock
}

/** The application's counting window after a request (PROTOCOL.md §7.2). */
export interface CountSnapshot {
  /**
   * Distinct client machine IDs of the application whose last counted request lies inside the
   * window, this client included. Exact up to 2 × maxRequiredClientCount; above that a store may
   * stop counting (the host never reports more than that cap).
   */
  readonly activeClients: number;
  /** Largest RequiredClientCount served for the application inside the window (≥ 1). */
  readonly maxRequiredClientCount: number;
}

export interface ActivationStore {
  /**
   * Record a served request and count it: upsert (application, CMID) with last counted = now;
   * when previousClientMachineId names a known CMID of the same application, that entry is
   * replaced (a re-imaged machine counts once). Returns the window snapshot including it.
   * Must not throw for a storage failure: it keeps the record in memory and retries later.
   */
  recordActivation(obs: ClientObservation, nowMs: number, windowMs: number): CountSnapshot;
  /**
   * Whether recordActivation can keep this request now. false only while the store cannot write
   * and its in-memory bound is reached: the host then refuses the request rather than acknowledge
   * an activation it could lose (PROTOCOL.md §7.1 step 7, 0xC004D104). Counting is unchanged.
   */
  acceptsActivation(obs: ClientObservation): boolean;
  /**
   * After acceptsActivation said no: which bound it was. Absent = the in-memory bound of an
   * unwritable store; KMS_ERR_STORE_MACHINE_CAP = store.maxMachines machines, all counted.
   */
  refusalCode?(): 'KMS_ERR_STORE_BACKLOG_FULL' | 'KMS_ERR_STORE_MACHINE_CAP';
  /** Record a refused request (event log and the machine's last result); never counted. */
  recordRefusal(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): void;
  /** Small persistent key/value settings: the host identity (ePIDs, HwId). */
  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;
}
