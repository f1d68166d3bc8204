// The one JSON schema (ajv) of the configuration file: every field of AppConfig with its type,
// range and meaning, and the rules that tie fields together. Defaults come from DEFAULTS
// (defaults.ts); the `description`s feed `kms-appliance config defaults` (example.ts).
//
// Why YAML and not JSON: the file is edited by hand on a box nobody watches for years, so it
// needs comments (which setting was changed, why, by whom), and every error must point at a line
// — the `yaml` parser keeps each value's position, which JSON.parse does not. YAML is read with
// the 1.2 core schema, so `yes`/`on` are strings, not booleans, and nothing is silently coerced.
//
// Annotations ajv does not evaluate: `x-message` replaces the generic error text where a rule
// needs the admin's words, `x-related` lists other fields whose line an error may point at when
// the failing field itself is not in the file (cross-field rules).
import { DEFAULTS, ITEM_DEFAULTS } from './defaults';

type Schema = Record<string, unknown>;

/** Windows hosts accept 15 … 43200 minutes for both intervals (PROTOCOL.md §7.3). */
const INTERVAL_MINUTES = Object.freeze({ min: 15, max: 43200 });
/** NDR64 arrived with build 9200 (Windows 8 / Server 2012); the build and RPC behaviour must agree (§7.4). */
const NDR64_MIN_BUILD = 9200;
/** ePID shape (PROTOCOL.md §7.4). */
const EPID_PATTERN = '^[0-9]{5}-[0-9]{5}-[0-9]{3}-[0-9]{6}-03-[0-9]{4,5}-[0-9]{4,5}\\.0000-[0-9]{7}$';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

const obj = (description: string, properties: Record<string, Schema>, extra: Schema = {}): Schema => ({
  type: 'object',
  description,
  additionalProperties: false,
  properties,
  ...extra,
});

const int = (description: string, min: number, max: number, def?: number, extra: Schema = {}): Schema => ({
  type: 'integer',
  description,
  minimum: min,
  maximum: max,
  ...(def === undefined ? {} : { default: def }),
  ...extra,
});

const bool = (description: string, def: boolean): Schema => ({ type: 'boolean', description, default: def });

const str = (description: string, def: string | undefined, extra: Schema = {}): Schema => ({
  type: 'string',
  description,
  ...(def === undefined ? {} : { default: def }),
  ...extra,
});

const list = (description: string, items: Schema, def: readonly unknown[] | undefined, extra: Schema = {}): Schema => ({
  type: 'array',
  description,
  items,
  ...(def === undefined ? {} : { default: def }),
  ...extra,
});

const port = (description: string, def?: number): Schema => int(description, 1, 65535, def);
const listenSpec: Schema = { type: 'string', minLength: 1, format: 'listen-address' };
const ipAddress: Schema = { type: 'string', minLength: 1, format: 'ip-address' };
const cidr: Schema = { type: 'string', minLength: 1, format: 'cidr' };
const absolutePathOrEmpty = (description: string, def: string, empty: string): Schema =>
  str(description, def, { pattern: '^(/.*)?$', 'x-message': `must be an absolute path (or empty for ${empty})` });

const D = DEFAULTS;
const I = ITEM_DEFAULTS;

const srvTarget = obj(
  'One SRV record of the zone: a KMS host clients may pick.',
  {
    target: str('Host name clients connect to (the SRV target).', undefined, { minLength: 1, format: 'dns-name' }),
    port: port('TCP port of that KMS host.', I.srvTarget.port),
    priority: int('SRV priority: clients try the lowest first.', 0, 65535, I.srvTarget.priority),
    weight: int('SRV weight: share among records of equal priority.', 0, 65535, I.srvTarget.weight),
    addresses: list("Addresses of the target sent as A/AAAA; empty = this machine's own.", ipAddress, I.srvTarget.addresses),
  },
  { required: ['target'] },
);

const zone = obj(
  'A DNS domain whose clients the responder answers.',
  {
    domain: str('The client DNS domain: clients ask for _vlmcs._tcp.<domain>.', undefined, { minLength: 1, format: 'dns-name' }),
    ttlSeconds: int('TTL of the answers, seconds.', 1, 86400, I.zone.ttlSeconds),
    hosts: list('SRV records answered; empty = this appliance on its KMS port.', srvTarget, I.zone.hosts),
  },
  { required: ['domain'] },
);

const publishedDomain = obj(
  'A domain to publish _vlmcs._tcp into (like an entry of DnsDomainPublishList, PROTOCOL.md §8.1).',
  {
    domain: str('The DNS zone to update.', undefined, { minLength: 1, format: 'dns-name' }),
    priority: int('SRV priority published.', 0, 65535, I.publishedDomain.priority),
    weight: int('SRV weight published.', 0, 65535, I.publishedDomain.weight),
  },
  { required: ['domain'] },
);

const R = D.dns.registration;

/** Fields required once dns.registration is switched on. */
const registrationRules: Schema = {
  if: { type: 'object', properties: { enabled: { const: true } } },
  then: {
    type: 'object',
    properties: {
      server: {
        type: 'string',
        minLength: 1,
        'x-message': 'must be set when dns.registration.enabled is true',
        'x-related': ['/dns/registration/enabled'],
      },
      domains: {
        type: 'array',
        minItems: 1,
        'x-message': 'must list at least one domain when dns.registration.enabled is true',
        'x-related': ['/dns/registration/enabled'],
      },
      tsig: {
        type: 'object',
        properties: {
          keyName: {
            type: 'string',
            minLength: 1,
            'x-message': 'must be set when dns.registration.enabled is true (updates are signed with TSIG)',
            'x-related': ['/dns/registration/enabled'],
          },
        },
        if: { type: 'object', properties: { secretFile: { const: '' } } },
        then: {
          type: 'object',
          properties: {
            secretBase64: {
              type: 'string',
              minLength: 1,
              'x-message': 'must be set, or dns.registration.tsig.secretFile, when dns.registration.enabled is true',
              'x-related': ['/dns/registration/enabled'],
            },
          },
        },
      },
    },
  },
};

const tsigOneSecret: Schema = {
  if: { type: 'object', properties: { secretFile: { type: 'string', minLength: 1 } } },
  then: {
    type: 'object',
    properties: {
      secretBase64: {
        type: 'string',
        maxLength: 0,
        'x-message': 'must be empty when dns.registration.tsig.secretFile is set (give the secret one way only)',
        'x-related': ['/dns/registration/tsig/secretFile'],
      },
    },
  },
};

const adminTlsPair: Schema = {
  if: { type: 'object', properties: { certFile: { type: 'string', minLength: 1 } } },
  then: {
    type: 'object',
    properties: {
      keyFile: {
        type: 'string',
        minLength: 1,
        'x-message': 'must be set when admin.tls.certFile is set',
        'x-related': ['/admin/tls/certFile'],
      },
    },
  },
  else: {
    type: 'object',
    properties: {
      keyFile: {
        type: 'string',
        maxLength: 0,
        'x-message': 'must be empty unless admin.tls.certFile is set',
        'x-related': ['/admin/tls/certFile'],
      },
    },
  },
};

const forwardingRules: Schema = {
  if: { type: 'object', properties: { enabled: { const: true } } },
  then: {
    type: 'object',
    properties: {
      upstream: {
        type: 'array',
        minItems: 1,
        'x-message': 'must list at least one resolver when dns.forwarding.enabled is true',
        'x-related': ['/dns/forwarding/enabled'],
      },
      allowNetworks: {
        type: 'array',
        minItems: 1,
        'x-message':
          'must list the client networks allowed to forward when dns.forwarding.enabled is true (the appliance is never an open resolver)',
        'x-related': ['/dns/forwarding/enabled'],
      },
    },
  },
};

const FP = D.fleet.postgres;
const hostName: Schema = {
  pattern: '^[A-Za-z0-9.:_-]*$',
  maxLength: 253,
  'x-message': 'must be a host name or an IP address (no scheme, port or path)',
};

/** Where to connect and how to trust it, once fleet.postgres.enabled is switched on. */
const fleetRules: Schema = {
  if: { type: 'object', properties: { enabled: { const: true } } },
  then: {
    type: 'object',
    properties: {
      host: {
        type: 'string',
        minLength: 1,
        'x-message': 'must be set when fleet.postgres.enabled is true',
        'x-related': ['/fleet/postgres/enabled'],
      },
      passwordFile: {
        type: 'string',
        minLength: 1,
        'x-message': 'must be set when fleet.postgres.enabled is true (the password is read from a file readable by the service only)',
        'x-related': ['/fleet/postgres/enabled'],
      },
      caFile: {
        type: 'string',
        minLength: 1,
        'x-message': 'must be set when fleet.postgres.enabled is true (the server certificate is always verified)',
        'x-related': ['/fleet/postgres/enabled'],
      },
    },
  },
};

/** Build ≥ 9200 exactly when NDR64 is on (PROTOCOL.md §7.4: "builds ≥ 9200 ↔ NDR64 accepted"). */
const buildMatchesNdr64: Schema = {
  if: { type: 'object', properties: { kms: { type: 'object', properties: { ndr64: { const: false } } } } },
  then: {
    type: 'object',
    properties: {
      host: {
        type: 'object',
        properties: {
          build: {
            type: 'integer',
            maximum: NDR64_MIN_BUILD - 1,
            'x-message': `must be below ${NDR64_MIN_BUILD} when kms.ndr64 is false (NDR64 arrived with build ${NDR64_MIN_BUILD})`,
            'x-related': ['/kms/ndr64'],
          },
        },
      },
    },
  },
  else: {
    type: 'object',
    properties: {
      host: {
        type: 'object',
        properties: {
          build: {
            type: 'integer',
            minimum: NDR64_MIN_BUILD,
            'x-message': `must be ${NDR64_MIN_BUILD} or higher while kms.ndr64 is true (older hosts do not speak NDR64)`,
            'x-related': ['/kms/ndr64'],
          },
        },
      },
    },
  },
};

export const CONFIG_SCHEMA: Schema = obj(
  'kms-appliance configuration.',
  {
    kms: obj('The KMS service (DCE/RPC over TCP).', {
      listen: list('Where the KMS service listens: "ADDR:PORT", IPv6 in brackets.', listenSpec, D.kms.listen, { uniqueItems: true }),
      activationIntervalMinutes: int(
        'How often a client that is not activated retries (VLActivationInterval; Windows: slmgr /sai).',
        INTERVAL_MINUTES.min,
        INTERVAL_MINUTES.max,
        D.kms.activationIntervalMinutes,
      ),
      renewalIntervalMinutes: int(
        'How often an activated client renews (VLRenewalInterval; Windows: slmgr /sri).',
        INTERVAL_MINUTES.min,
        INTERVAL_MINUTES.max,
        D.kms.renewalIntervalMinutes,
      ),
      // At least 1432: bind_ack lowers a client's frag sizes to this but never below 1432 (PROTOCOL.md §2.6).
      maxPduBytes: int('Largest DCE/RPC PDU accepted; real KMS PDUs are at most 344 bytes.', 1432, 65535, D.kms.maxPduBytes),
      maxStubBytes: int('Largest reassembled request stub (fragmented requests).', 1024, 1048576, D.kms.maxStubBytes),
      maxConnections: int('Open client connections at once.', 1, 100000, D.kms.maxConnections),
      maxConnectionsPerAddress: int(
        'Open connections from one client address at once, so one host cannot take them all.',
        1,
        100000,
        D.kms.maxConnectionsPerAddress,
      ),
      ipv6GroupPrefixLength: int(
        'IPv6 clients count against maxConnectionsPerAddress per network of this prefix length (one machine usually owns a /64).',
        32,
        128,
        D.kms.ipv6GroupPrefixLength,
      ),
      idleTimeoutSeconds: int(
        'Close a connection after this long without progress (a bind, alter_context or request that was served).',
        1,
        3600,
        D.kms.idleTimeoutSeconds,
      ),
      maxConnectionSeconds: int(
        'Close a connection open this long, whatever it does, so no client holds a slot forever.',
        10,
        86400,
        D.kms.maxConnectionSeconds,
      ),
      maxContextsPerConnection: int(
        'Presentation contexts one connection may hold (Windows clients use two).',
        2,
        1024,
        D.kms.maxContextsPerConnection,
      ),
      ndr64: bool('Accept NDR64 in bind, as hosts from build 9200 do; must agree with host.build.', D.kms.ndr64),
      btfn: bool('Accept the bind-time feature negotiation context.', D.kms.btfn),
      checkRequestTime: bool('Refuse clients whose clock is off by more than maxClockSkewMinutes (0xC004F06C).', D.kms.checkRequestTime),
      maxClockSkewMinutes: int('Allowed difference between client and host clocks (Windows: 240).', 1, 1440, D.kms.maxClockSkewMinutes),
      verifyV4Mac: bool('Refuse v4 requests whose MAC does not verify.', D.kms.verifyV4Mac),
      allowRetail: bool('Also activate retail product groups (a Windows host refuses them).', D.kms.allowRetail),
      allowPreview: bool('Also activate preview (pre-release) product groups.', D.kms.allowPreview),
      clientNetworks: list('Networks (CIDR) allowed to connect; empty = everyone.', cidr, D.kms.clientNetworks, { uniqueItems: true }),
    }),
    host: obj('The identity this host presents (ePID, HwId).', {
      build: int('Windows build named in the ePIDs; must be a host build of the product catalogue.', 1000, 99999, D.host.build),
      lcid: int('Locale id named in the ePIDs (1033 en-US, 1031 de-DE, 2057 en-GB …).', 1025, 65535, D.host.lcid),
      hwid: str('Hardware id sent in v6 responses, 16 hex digits; empty = generated once and kept.', D.host.hwid, {
        pattern: '^([0-9A-Fa-f]{16})?$',
        'x-message': 'must be 16 hex digits (8 bytes, e.g. 0123456789ABCDEF) or empty to generate one',
      }),
      hostKeyGroups: list(
        'Host-key groups (names or ids) to serve; empty = every usable one in the catalogue, as if all public host keys were installed.',
        { type: 'string', minLength: 1 },
        D.host.hostKeyGroups,
        { uniqueItems: true },
      ),
      epids: {
        type: 'object',
        description: 'Pinned ePIDs by host-key group name or id; others are generated once and kept.',
        default: D.host.epids,
        additionalProperties: {
          type: 'string',
          pattern: EPID_PATTERN,
          'x-message': 'must be an ePID like 03612-00206-556-123727-03-1033-20348.0000-2972021',
        },
      },
    }),
    store: obj('The database of clients and events.', {
      dataDir: absolutePathOrEmpty(
        'Directory of the database, an absolute path; empty = $STATE_DIRECTORY (/var/lib/kms-appliance under systemd), else ' +
          '~/.local/state/kms-appliance.',
        D.store.dataDir,
        '$STATE_DIRECTORY, as systemd sets it',
      ),
      eventRetentionDays: int('Keep the activation event log this long.', 1, 3650, D.store.eventRetentionDays),
      maxEvents: int(
        'Keep at most this many event-log rows, whatever their age (the oldest go first).',
        1000,
        100000000,
        D.store.maxEvents,
      ),
      maxMachines: int(
        'Keep at most this many machines (about 1 KB each): past it, the machines longest unseen that no count includes (not ' +
          'counted in the last 30 days) are deleted; when every one is counted, new machines are refused (0xC004D104).',
        100,
        100000000,
        D.store.maxMachines,
      ),
      pendingMachines: int(
        'While the disk is full: machines whose activations are kept in memory until it can be written; beyond it new machines are ' +
          'refused (0xC004D104).',
        100,
        10000000,
        D.store.pendingMachines,
      ),
      pendingEvents: int(
        'While the disk is full: event-log rows kept in memory; beyond it further rows are dropped and counted (counts are not affected).',
        100,
        10000000,
        D.store.pendingEvents,
      ),
    }),
    catalog: obj('The product catalogue.', {
      file: absolutePathOrEmpty(
        'An updated catalogue file, an absolute path; empty = the one shipped with the appliance.',
        D.catalog.file,
        'the one shipped with the appliance',
      ),
    }),
    entitlements: list(
      'Licences the site bought, compared with activations by `kms-appliance report`.',
      obj(
        'Licences bought for one product.',
        {
          product: str('Product name as in the catalogue.', undefined, { minLength: 1 }),
          licenses: int('Number of licences.', 0, 10000000),
        },
        { required: ['product', 'licenses'] },
      ),
      D.entitlements,
      { examples: [[{ product: 'Windows 10/11 Enterprise', licenses: 40 }]] },
    ),
    dns: obj('DNS discovery: the responder, dynamic registration, mDNS.', {
      listen: list(
        'Where the DNS responder answers (UDP and TCP); empty = off. "[::]:P" also answers IPv4 on P (dual-stack). ' +
          'Port 53 needs CAP_NET_BIND_SERVICE.',
        listenSpec,
        D.dns.listen,
        { uniqueItems: true },
      ),
      zones: list('Domains the responder is authoritative for.', zone, D.dns.zones, {
        examples: [
          [
            {
              domain: 'branch.example.org',
              ttlSeconds: 900,
              hosts: [{ target: 'kms.branch.example.org', port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.10'] }],
            },
          ],
        ],
      }),
      forwarding: obj(
        'Forwarding of other names to upstream resolvers, for listed networks only.',
        {
          enabled: bool('Forward names outside the zones (otherwise REFUSED).', D.dns.forwarding.enabled),
          upstream: list('Resolvers to forward to.', { type: 'string', minLength: 1, format: 'dns-server' }, D.dns.forwarding.upstream),
          allowNetworks: list('Client networks (CIDR) that may use forwarding.', cidr, D.dns.forwarding.allowNetworks),
        },
        forwardingRules,
      ),
      rateLimit: obj('Responses per client address (an IPv6 /64 counts as one), counted for UDP and TCP separately.', {
        responsesPerSecond: int('Sustained responses per second to one address.', 1, 100000, D.dns.rateLimit.responsesPerSecond),
        burst: int('Responses one address may get at once before the limit applies.', 1, 1000000, D.dns.rateLimit.burst),
        slip: int(
          'One UDP query in this many over the limit gets an empty reply with TC set, no larger than the query, so a ' +
            'client whose address a flood spoofs asks again over TCP; 0 = silence for all.',
          0,
          10,
          D.dns.rateLimit.slip,
        ),
      }),
      tcp: obj('Limits on DNS over TCP (an IPv6 /64 counts as one address); each limit hit is logged once per address.', {
        maxConnections: int(
          'Open TCP connections in all; when full, the oldest idle one of the address holding the most is closed.',
          1,
          100000,
          D.dns.tcp.maxConnections,
        ),
        maxConnectionsPerAddress: int(
          'Open TCP connections per client address; more are refused.',
          1,
          100000,
          D.dns.tcp.maxConnectionsPerAddress,
        ),
        idleTimeoutSeconds: int(
          'Close a connection that sends no complete query for this long (a byte-by-byte drip does not count).',
          1,
          3600,
          D.dns.tcp.idleTimeoutSeconds,
        ),
        maxPendingQueries: int(
          'Queries read but not yet answered per connection; reading pauses beyond.',
          1,
          10000,
          D.dns.tcp.maxPendingQueries,
        ),
        pauseUnsentBytes: int(
          "Stop reading a connection's queries while this many bytes of its replies wait unsent.",
          512,
          16777216,
          D.dns.tcp.pauseUnsentBytes,
        ),
        maxUnsentBytes: int(
          'Close a connection whose unsent replies exceed this many bytes (it does not read them).',
          1024,
          67108864,
          D.dns.tcp.maxUnsentBytes,
        ),
      }),
      registration: obj(
        "Registration of the SRV record in the site's DNS by RFC 2136 UPDATE with TSIG.",
        {
          enabled: bool('Register (and refresh, and remove on shutdown).', R.enabled),
          server: str('The DNS server accepting updates: ADDR or ADDR:PORT.', R.server, { format: 'dns-server' }),
          domains: list('Zones to publish _vlmcs._tcp into.', publishedDomain, R.domains, {
            examples: [[{ domain: 'branch.example.org', priority: 0, weight: 0 }]],
          }),
          hostName: str("Name published as SRV target; empty = the machine's host name in the domain.", R.hostName, { format: 'dns-name' }),
          addresses: list("Addresses published for hostName; empty = this machine's non-loopback ones.", ipAddress, R.addresses),
          ttlSeconds: int('TTL of the published records, seconds.', 1, 86400, R.ttlSeconds),
          tsig: obj(
            'TSIG key signing the updates.',
            {
              keyName: str('Key name as the DNS server knows it.', R.tsig.keyName, { format: 'dns-name' }),
              algorithm: { type: 'string', description: 'Algorithm.', enum: ['hmac-sha256'], default: R.tsig.algorithm },
              secretBase64: str('The secret, base64 (or use secretFile; never logged).', R.tsig.secretBase64, {
                pattern: '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$',
                'x-message': 'must be base64 (as in a BIND key file)',
              }),
              secretFile: absolutePathOrEmpty(
                'A file holding the base64 secret, an absolute path readable by the service (keep it 0640 root:kms-appliance).',
                R.tsig.secretFile,
                'secretBase64',
              ),
            },
            tsigOneSecret,
          ),
          refreshMinutes: int('Re-register this often.', 5, 10080, R.refreshMinutes),
          removeOnShutdown: bool('Remove the records when the service stops.', R.removeOnShutdown),
        },
        registrationRules,
      ),
      mdns: obj('Multicast DNS (DNS-SD) announcement of _vlmcs._tcp.local.', {
        enabled: bool('Announce and answer on the local link.', D.dns.mdns.enabled),
        instanceName: str('Service instance name; empty = the host name.', D.dns.mdns.instanceName, { maxLength: 63 }),
      }),
    }),
    admin: obj('The admin web page, its JSON API, /metrics and /healthz.', {
      listen: list(
        'Where it listens; empty = off. An address other than loopback needs tls.enabled and a password (kms-appliance admin ' +
          'set-password).',
        listenSpec,
        D.admin.listen,
        { uniqueItems: true },
      ),
      hostNames: list(
        "Names the page is reached by (the Host header) besides the machine's host name, localhost and the listen addresses; any other " +
          'name is refused (DNS rebinding).',
        { type: 'string', minLength: 1, format: 'dns-name' },
        D.admin.hostNames,
        { uniqueItems: true },
      ),
      tls: obj(
        'HTTPS for every admin listener.',
        {
          enabled: bool(
            'Serve HTTPS. Without certFile a self-signed certificate is made in the data directory at first start (kms-appliance admin ' +
              'cert shows its fingerprint).',
            D.admin.tls.enabled,
          ),
          certFile: absolutePathOrEmpty(
            "The site's own certificate, PEM, an absolute path (the chain may follow it); reloaded on SIGHUP.",
            D.admin.tls.certFile,
            'the generated one',
          ),
          keyFile: absolutePathOrEmpty(
            'The private key of certFile, PEM, an absolute path (keep it 0600).',
            D.admin.tls.keyFile,
            'the generated one',
          ),
        },
        adminTlsPair,
      ),
      maxConnections: int('Open admin connections at once, all listeners together.', 1, 10000, D.admin.maxConnections),
    }),
    log: obj('Logging (JSON lines on stdout, collected by journald).', {
      level: { type: 'string', description: 'Least severe level written.', enum: [...LOG_LEVELS], default: D.log.level },
    }),
    fleet: obj('Reporting into the organisation\'s PostgreSQL (see "Fleet reporting"); nothing leaves the box unless postgres.enabled.', {
      siteName: str("This site's name in the fleet database; empty = the machine's host name.", D.fleet.siteName, { maxLength: 200 }),
      silentAfterHours: int(
        '`fleet report` lists a site as silent after this many hours without a report.',
        1,
        8760,
        D.fleet.silentAfterHours,
      ),
      postgres: obj(
        'The fleet database; always TLS with the server certificate verified against caFile and serverName.',
        {
          enabled: bool('Send the machine inventory and the activation and refusal events.', FP.enabled),
          host: str('Host name (or address) of the PostgreSQL server.', FP.host, hostName),
          port: port('Its TCP port.', FP.port),
          database: str('Database holding the kms_fleet schema (created by `kms-appliance fleet init`).', FP.database, { minLength: 1 }),
          user: str("The appliances' role: INSERT/UPDATE on kms_fleet only.", FP.user, { minLength: 1 }),
          passwordFile: absolutePathOrEmpty(
            "File holding the role's password, an absolute path readable by the service only (0600 or 0400; never logged).",
            FP.passwordFile,
            'none',
          ),
          caFile: absolutePathOrEmpty('PEM of the CA that signed the server certificate, an absolute path.', FP.caFile, 'none'),
          serverName: str('Name the server certificate must carry; empty = host.', FP.serverName, hostName),
          connectTimeoutSeconds: int('Give up a connection attempt after this long.', 1, 300, FP.connectTimeoutSeconds),
          sendIntervalSeconds: int(
            'Send what changed this often (a backlog is sent at once, batch after batch).',
            5,
            86400,
            FP.sendIntervalSeconds,
          ),
          batchSize: int('Machines or events per transaction; each also stops at about 1 MiB of data.', 10, 100000, FP.batchSize),
          maxBacklogEvents: int(
            'Unsent events kept at most while the database is unreachable; beyond that the oldest are not sent (machines and local ' +
              'counting are unaffected).',
            1000,
            100000000,
            FP.maxBacklogEvents,
          ),
        },
        fleetRules,
      ),
    }),
  },
  buildMatchesNdr64,
);
