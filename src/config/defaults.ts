// Every configuration default, in one place. The schema (schema.ts) refers to these values and
// `kms-appliance config defaults` prints them as a commented example. Units are in the names.

export interface SrvTarget {
  /** Host name clients connect to (the SRV target). */
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
  /** Addresses of the target, sent as A/AAAA additional records; empty = this machine's own. */
  readonly addresses: readonly string[];
}

export interface DnsZoneConfig {
  /** The client DNS domain: clients ask for `_vlmcs._tcp.<domain>`. */
  readonly domain: string;
  readonly ttlSeconds: number;
  /** SRV records answered for the zone; empty = this appliance on its KMS port. */
  readonly hosts: readonly SrvTarget[];
}

export interface DnsRegistrationConfig {
  readonly enabled: boolean;
  /** The site DNS server that accepts RFC 2136 updates, "ADDR" or "ADDR:PORT" ("[v6]:PORT"). */
  readonly server: string;
  /** Zones (domains) to publish `_vlmcs._tcp` into; like a KMS host's DnsDomainPublishList. */
  readonly domains: readonly { readonly domain: string; readonly priority: number; readonly weight: number }[];
  /** The name published as SRV target; empty = the machine's host name inside the domain. */
  readonly hostName: string;
  /** Addresses published as A/AAAA for hostName; empty = this machine's non-loopback addresses. */
  readonly addresses: readonly string[];
  readonly ttlSeconds: number;
  readonly tsig: {
    readonly keyName: string;
    readonly algorithm: 'hmac-sha256';
    readonly secretBase64: string;
    readonly secretFile: string;
  };
  readonly refreshMinutes: number;
  /** Remove the records on shutdown. */
  readonly removeOnShutdown: boolean;
}

export interface AppConfig {
  readonly kms: {
    /** "ADDR:PORT" with IPv6 in brackets, e.g. "0.0.0.0:1688", "[::]:1688". */
    readonly listen: readonly string[];
    readonly activationIntervalMinutes: number;
    readonly renewalIntervalMinutes: number;
    readonly maxPduBytes: number;
    readonly maxStubBytes: number;
    readonly maxConnections: number;
    readonly maxConnectionsPerAddress: number;
    readonly ipv6GroupPrefixLength: number;
    readonly idleTimeoutSeconds: number;
    readonly maxConnectionSeconds: number;
    readonly maxContextsPerConnection: number;
    readonly ndr64: boolean;
    readonly btfn: boolean;
    readonly checkRequestTime: boolean;
    readonly maxClockSkewMinutes: number;
    readonly verifyV4Mac: boolean;
    readonly allowRetail: boolean;
    readonly allowPreview: boolean;
    /** CIDRs allowed to connect; empty = everyone. */
    readonly clientNetworks: readonly string[];
  };
  readonly host: {
    /** Host OS build named in the ePIDs; must be ≥ 9200 exactly when kms.ndr64 is on. */
    readonly build: number;
    readonly lcid: number;
    /** 16 hex digits; empty = generated once and kept in the store. */
    readonly hwid: string;
    /** Host-key group names or ids to serve; empty = every usable one in the catalogue (§7.4). */
    readonly hostKeyGroups: readonly string[];
    /** Pinned ePIDs by host-key group name or id. */
    readonly epids: Readonly<Record<string, string>>;
  };
  readonly store: {
    /** Where the database lives; empty = $STATE_DIRECTORY, else $XDG_STATE_HOME/kms-appliance, else ~/.local/state/kms-appliance. */
    readonly dataDir: string;
    readonly eventRetentionDays: number;
    /** Event-log rows kept at most, whatever their age. */
    readonly maxEvents: number;
    /** Machine rows kept at most: a client inventing machine ids must not fill the disk. */
    readonly maxMachines: number;
    /** Distinct machines whose writes may wait in memory while the disk is full. */
    readonly pendingMachines: number;
    /** Event-log rows that may wait in memory while the disk is full. */
    readonly pendingEvents: number;
  };
  readonly catalog: {
    /** An updated product catalogue file; empty = the one shipped with the appliance. */
    readonly file: string;
  };
  /** Licences the site bought, for `kms-appliance report`. */
  readonly entitlements: readonly { readonly product: string; readonly licenses: number }[];
  readonly dns: {
    /** Where the DNS responder answers; empty = it is off. */
    readonly listen: readonly string[];
    readonly zones: readonly DnsZoneConfig[];
    readonly forwarding: {
      readonly enabled: boolean;
      readonly upstream: readonly string[];
      /** CIDRs that may use forwarding; never an open resolver. */
      readonly allowNetworks: readonly string[];
    };
    readonly rateLimit: {
      readonly responsesPerSecond: number;
      readonly burst: number;
      /** Every slip-th UDP query over the limit gets an empty truncated reply (TC); 0 never. */
      readonly slip: number;
    };
    /** Bounds on DNS over TCP, so one client cannot exhaust memory or connection slots. */
    readonly tcp: {
      readonly maxConnections: number;
      /** Per IPv4 address or IPv6 /64. */
      readonly maxConnectionsPerAddress: number;
      readonly idleTimeoutSeconds: number;
      readonly maxPendingQueries: number;
      readonly pauseUnsentBytes: number;
      readonly maxUnsentBytes: number;
    };
    readonly registration: DnsRegistrationConfig;
    readonly mdns: { readonly enabled: boolean; readonly instanceName: string };
  };
  readonly admin: {
    /** Where the admin web page and JSON API listen; empty = off. */
    readonly listen: readonly string[];
    /** Names (Host header) the page is reached by besides the host name, localhost and listen addresses. */
    readonly hostNames: readonly string[];
    readonly tls: {
      /** Serve HTTPS; without certFile a self-signed certificate is generated in the data directory. */
      readonly enabled: boolean;
      readonly certFile: string;
      readonly keyFile: string;
    };
    /** Open admin connections at once, all listeners together. */
    readonly maxConnections: number;
  };
  readonly log: {
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  };
  readonly fleet: FleetConfig;
}

/** Reporting into the organisation's PostgreSQL (src/fleet); nothing leaves the box unless enabled. */
export interface FleetConfig {
  /** This site's name in the fleet database; empty = the machine's host name. */
  readonly siteName: string;
  /** `fleet report`: a site that has not reported for this long is listed as silent. */
  readonly silentAfterHours: number;
  readonly postgres: {
    readonly enabled: boolean;
    readonly host: string;
    readonly port: number;
    readonly database: string;
    readonly user: string;
    /** File holding the password; must not be readable by group or others. */
    readonly passwordFile: string;
    /** PEM of the CA(s) that signed the server's certificate; always verified. */
    readonly caFile: string;
    /** Name the server certificate must carry; empty = host. */
    readonly serverName: string;
    readonly connectTimeoutSeconds: number;
    readonly sendIntervalSeconds: number;
    /** Machines or events per transaction; each table's rows also stop at about 1 MiB (fleet/forwarder.ts). */
    readonly batchSize: number;
    /** Unsent events kept at most; older ones are not sent (machines and counting are unaffected). */
    readonly maxBacklogEvents: number;
  };
}

export const DEFAULTS: AppConfig = deepFreeze({
  kms: {
    listen: ['0.0.0.0:1688', '[::]:1688'],
    activationIntervalMinutes: 120, // 2 h (§7.3)
    renewalIntervalMinutes: 10080, // 7 days
    maxPduBytes: 4096, // legal KMS PDUs are ≤ 344 bytes (§2.1)
    maxStubBytes: 4096, // reassembly limit for fragmented requests (§2.10)
    maxConnections: 1000,
    maxConnectionsPerAddress: 64, // a client opens one; NAT gateways carry a few dozen machines
    ipv6GroupPrefixLength: 64, // one IPv6 client owns a whole /64
    idleTimeoutSeconds: 30, // like Microsoft's RPC runtime (§1.4)
    maxConnectionSeconds: 300, // a KMS exchange takes milliseconds; clients reconnect as needed
    maxContextsPerConnection: 16, // Windows clients use two (NDR32 + NDR64)
    ndr64: true,
    btfn: true,
    checkRequestTime: true,
    maxClockSkewMinutes: 240, // ±4 h (§7.1 step 5)
    verifyV4Mac: true,
    allowRetail: false,
    allowPreview: false,
    clientNetworks: [],
  },
  host: {
    build: 20348, // Windows Server 2022; ≥ 9200 because NDR64 is on
    lcid: 1033,
    hwid: '',
    hostKeyGroups: [],
    epids: {},
  },
  store: {
    dataDir: '',
    eventRetentionDays: 400,
    maxEvents: 2_000_000, // about 600 MB of events at the most
    maxMachines: 100_000, // about 100 MB with their index entries; a branch office has hundreds to a few thousand
    pendingMachines: 20_000, // about 1 KB each (20 MB) while the disk is full
    pendingEvents: 10_000,
  },
  catalog: {
    file: '',
  },
  entitlements: [],
  dns: {
    listen: [],
    zones: [],
    forwarding: { enabled: false, upstream: [], allowNetworks: [] },
    rateLimit: { responsesPerSecond: 50, burst: 100, slip: 2 },
    tcp: {
      maxConnections: 256,
      maxConnectionsPerAddress: 16, // an IPv6 /64 counts as one address
      idleTimeoutSeconds: 10, // RFC 7766 §6.2.3; only complete queries restart it, not single bytes
      maxPendingQueries: 32, // queries read but not answered yet, per connection
      pauseUnsentBytes: 16384, // stop reading a connection's queries while this much of its replies waits unsent
      maxUnsentBytes: 131072, // and close it past this: the client does not read its replies
    },
    registration: {
      enabled: false,
      server: '',
      domains: [],
      hostName: '',
      addresses: [],
      ttlSeconds: 900,
      tsig: { keyName: '', algorithm: 'hmac-sha256', secretBase64: '', secretFile: '' },
      refreshMinutes: 1440, // a Windows host re-publishes about daily
      removeOnShutdown: true,
    },
    mdns: { enabled: false, instanceName: '' },
  },
  admin: {
    listen: ['127.0.0.1:8688', '[::1]:8688'], // loopback: other addresses need tls.enabled and a password
    hostNames: [],
    tls: { enabled: false, certFile: '', keyFile: '' },
    maxConnections: 64, // a few browsers and a Prometheus scraper
  },
  log: {
    level: 'info',
  },
  fleet: {
    siteName: '',
    silentAfterHours: 24, // a box reports every sendIntervalSeconds while the database is reachable
    postgres: {
      enabled: false,
      host: '',
      port: 5432,
      database: 'kms_fleet',
      user: 'kms_appliance',
      passwordFile: '',
      caFile: '',
      serverName: '',
      connectTimeoutSeconds: 10,
      sendIntervalSeconds: 60,
      batchSize: 1000,
      maxBacklogEvents: 1_000_000, // weeks of a busy site; bounded so a dead database cannot fill the disk
    },
  },
});

/** The store's internal timings and sizes: tuned, not configuration. */
export const STORE_TUNING = deepFreeze({
  busyTimeoutMs: 5000, // another process's lock (a backup, the CLI) before a write fails
  retryIntervalMs: 1000, // at most one retry per second triggered by new writes during an outage
  retryTimerMs: 5000, // and one every 5 s without requests
  pruneIntervalMs: 3_600_000, // event-log pruning, hourly
  // WAL checkpoints (store/wal-checkpoints.ts): at least every second while anything was written,
  // and every this many writes, which bounds what one copy holds the event loop for (its fsyncs run
  // off the loop). With 1 KiB pages a copy of 256 writes took 1.0–1.5 ms at 12,000 activations/s
  // (1.3–1.9 ms at 512, 2.7–3.6 ms at 2048; the p99 of 16 paced connections 4.0–4.8 ms at 256
  // against 5.2–5.6 ms at 512). With 2 KiB pages, at 15,000/s: 0.6–0.8 ms at 256, 0.8–0.9 ms at
  // 512, 1.2–1.4 ms at 1024. Fewer copies copy a page rewritten often once, and make fewer fsyncs.
  checkpointIntervalMs: 1000,
  checkpointWrites: 512,
  walTruncateBytes: 8 * 1024 * 1024, // a -wal file this large is truncated once a checkpoint has all of it on disk
  // SQLite's page cache per writing connection (better-sqlite3 builds SQLite with 16 MB; the server
  // checkpoints on its own connection, so nothing else empties it).
  cacheKiB: 2048,
  // Page size of a new database file (an existing one keeps its own). Every dirty page of a commit
  // is appended whole to the WAL (two write calls) and copied again by the next checkpoint (two
  // more). Under load a 10 ms commit holds about a hundred requests at random places in the clients
  // table: 2 KiB pages need fewer of those calls than 1 KiB ones (a 1 KiB page holds two or three
  // clients) and copy fewer bytes than 4 KiB ones. Measured alternated under two sequential C
  // clients: 2 KiB 0.4–8.4 µs (median 5) less per activation than 1 KiB, 4 KiB in between. A lone
  // activation writes three or four pages either way.
  pageSizeBytes: 2048,
  // With the request journal (store/request-journal.ts) a group of requests is durable once its
  // lines are appended there; the SQLite transaction collects the writes of this many ms (other
  // processes, the CLI and the admin page's reader, see them at the commit) and the journal is
  // emptied after it. A crash loses nothing: the next start replays the journal.
  journalCommitMs: 10,
});

/** Defaults of the fields inside list entries, which DEFAULTS (whose lists are empty) cannot show. */

export const ITEM_DEFAULTS = deepFreeze({
  zone: { ttlSeconds: 900, hosts: [] as readonly SrvTarget[] },
  srvTarget: { port: 1688, priority: 0, weight: 0, addresses: [] as readonly string[] },
  publishedDomain: { priority: 0, weight: 0 }, // like a DnsDomainPublishList entry without them (§8.1)
});

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}
