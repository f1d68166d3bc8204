// What /metrics and /healthz read: cheap getters over counters the servers already keep, so a
// scrape never queries the database or walks a table on the KMS event loop. The appliance adapts
// each server's own stats to these shapes; any of them may be absent (DNS off, for instance).

export interface KmsConnectionFacts {
  /** Whether every configured KMS listener is bound and accepting. */
  readonly listening: boolean;
  readonly open: number;
  /** Connections refused or closed early, by reason (a fixed, small set of words). */
  readonly refusedByReason: Readonly<Record<string, number>>;
}

export interface StoreFacts {
  /** store.maxMachines machines are stored, all counted in the window: new machines are refused. */
  readonly machineCapReached?: boolean;
  /** Machines whose answered activations are not yet in the database file. */
  readonly pendingWrites: number;
  /** Event-log rows not yet in the file. */
  readonly pendingEvents?: number;
  /** The last write error while not writable (SQLite code and message). */
  readonly lastError?: string;
  readonly writeFailures: number;
  /** False while the last write failed (full disk, read-only file system). */
  readonly writable: boolean;
  /** Whether the request journal makes group commits durable (absent: not reported). */
  readonly journalInUse?: boolean;
  /** fsyncs of the database or its -wal file that failed since start. */
  readonly syncFailures?: number;
  /** The last fsync failure while none has succeeded since ("EIO on <file>"); empty or absent once one has. */
  readonly lastSyncError?: string;
}

export interface DnsFacts {
  readonly responsesByRcode: Readonly<Record<string, number>>;
  readonly rateLimited: number;
  /** Of the rate-limited UDP queries, those answered with an empty truncated reply (dns.rateLimit.slip). */
  readonly slipped: number;
  readonly refused: number;
}

export interface RegistrationFacts {
  /** Host time of the last successful registration of every domain; null = not yet. */
  readonly lastSuccessMs: number | null;
  readonly failures: number;
  /** How often it re-registers (dns.registration.refreshMinutes). */
  readonly refreshMs: number;
  /** Why the last attempt failed, in the admin's words; empty when it succeeded. */
  readonly lastError: string;
}

/** Per application: distinct machines counted in the window and the threshold clients need. */
export interface CountFacts {
  readonly applications: readonly { readonly name: string; readonly count: number; readonly threshold: number }[];
  /** Machines (CMIDs) counted in the window, whatever they activated. */
  readonly distinctMachines: number;
  /** Host time the figures were read. */
  readonly asOfMs: number;
}

export interface MetricSources {
  kms(): KmsConnectionFacts;
  store(): StoreFacts;
  dns?(): DnsFacts;
  registration?(): RegistrationFacts;
  /** The latest counts, refreshed off the event loop; undefined until the first refresh. */
  counts(): CountFacts | undefined;
  /** Fleet reporting's problems in the admin's words (fleet.postgres enabled only). */
  fleet?(): { readonly problems: readonly string[] };
}
