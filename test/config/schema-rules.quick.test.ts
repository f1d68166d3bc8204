// Every schema rule, each with a bad file and the exact error line an administrator reads.
import t from 'tap';
import { validateConfigText } from '../../src/config/load';
import { ConfigError } from '../../src/errors';
import { CONFIG_SCHEMA } from '../../src/config/schema';

/** The fields a section allows, in schema order: other sections grow while this file stays put. */
const fieldsOf = (...path: string[]): string => {
  let node = CONFIG_SCHEMA as unknown as { properties: Record<string, unknown> };
  for (const p of path) node = node.properties[p] as typeof node;
  return Object.keys(node.properties).join(', ');
};

function errorsOf(text: string): { code: string; errors: string[] } {
  try {
    validateConfigText(text, 'config.yaml');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { code: err.code, errors: err.details.errors as string[] };
  }
  return { code: 'OK', errors: [] };
}

// [what, file text, exact error lines]
const CASES: readonly (readonly [string, string, readonly string[]])[] = [
  // ---- kms ----
  [
    'listen without port',
    'kms:\n  listen: ["1.2.3.4"]\n',
    ['config.yaml:2: kms.listen[0]: must be a listen address: "1.2.3.4" is not ADDR:PORT (IPv6 in brackets, e.g. [::]:1688)'],
  ],
  [
    'listen port above 65535',
    'kms:\n  listen:\n    - 0.0.0.0:1688\n    - 0.0.0.0:70000\n',
    ['config.yaml:4: kms.listen[1]: must be a listen address: port 70000 is above 65535'],
  ],
  [
    'listen host not an address',
    'kms:\n  listen: ["kms.example.org:1688"]\n',
    ['config.yaml:2: kms.listen[0]: must be a listen address: "kms.example.org" is not an IPv4 or IPv6 address'],
  ],
  ['listen empty entry', 'kms:\n  listen: [""]\n', ['config.yaml:2: kms.listen[0]: must not be empty']],
  [
    'listen twice the same',
    'kms:\n  listen:\n    - 0.0.0.0:1688\n    - 0.0.0.0:1688\n',
    ['config.yaml:4: kms.listen[1]: repeats kms.listen[0]'],
  ],
  ['listen not a list', 'kms:\n  listen: 0.0.0.0:1688\n', ['config.yaml:2: kms.listen: must be a list']],
  ['listen with no value', 'kms:\n  listen:\n', ['config.yaml:2: kms.listen: has no value; must be a list']],
  [
    'activation interval below 15',
    'kms:\n  activationIntervalMinutes: 14\n',
    ['config.yaml:2: kms.activationIntervalMinutes: must be between 15 and 43200'],
  ],
  [
    'activation interval above 43200',
    'kms:\n  activationIntervalMinutes: 43201\n',
    ['config.yaml:2: kms.activationIntervalMinutes: must be between 15 and 43200'],
  ],
  [
    'renewal interval below 15',
    '# comment\n\nkms:\n  ndr64: true\n  renewalIntervalMinutes: 5\n',
    ['config.yaml:5: kms.renewalIntervalMinutes: must be between 15 and 43200'],
  ],
  [
    'renewal interval not a number',
    'kms:\n  renewalIntervalMinutes: "7 days"\n',
    ['config.yaml:2: kms.renewalIntervalMinutes: must be a whole number between 15 and 43200'],
  ],
  [
    'renewal interval fractional',
    'kms:\n  renewalIntervalMinutes: 100.5\n',
    ['config.yaml:2: kms.renewalIntervalMinutes: must be a whole number between 15 and 43200'],
  ],
  ['maxPduBytes too small', 'kms:\n  maxPduBytes: 100\n', ['config.yaml:2: kms.maxPduBytes: must be between 1432 and 65535']],
  ['maxStubBytes too large', 'kms:\n  maxStubBytes: 2000000\n', ['config.yaml:2: kms.maxStubBytes: must be between 1024 and 1048576']],
  ['maxConnections zero', 'kms:\n  maxConnections: 0\n', ['config.yaml:2: kms.maxConnections: must be between 1 and 100000']],
  [
    'maxConnectionsPerAddress zero',
    'kms:\n  maxConnectionsPerAddress: 0\n',
    ['config.yaml:2: kms.maxConnectionsPerAddress: must be between 1 and 100000'],
  ],
  ['idleTimeoutSeconds zero', 'kms:\n  idleTimeoutSeconds: 0\n', ['config.yaml:2: kms.idleTimeoutSeconds: must be between 1 and 3600']],
  ['ndr64 as yes', 'kms:\n  ndr64: yes\n', ['config.yaml:2: kms.ndr64: must be true or false']],
  ['btfn as string', 'kms:\n  btfn: "true"\n', ['config.yaml:2: kms.btfn: must be true or false']],
  ['checkRequestTime as number', 'kms:\n  checkRequestTime: 1\n', ['config.yaml:2: kms.checkRequestTime: must be true or false']],
  [
    'maxClockSkewMinutes too large',
    'kms:\n  maxClockSkewMinutes: 1441\n',
    ['config.yaml:2: kms.maxClockSkewMinutes: must be between 1 and 1440'],
  ],
  ['verifyV4Mac as on', 'kms:\n  verifyV4Mac: on\n', ['config.yaml:2: kms.verifyV4Mac: must be true or false']],
  ['allowRetail as null', 'kms:\n  allowRetail:\n', ['config.yaml:2: kms.allowRetail: has no value; must be true or false']],
  ['allowPreview as list', 'kms:\n  allowPreview: []\n', ['config.yaml:2: kms.allowPreview: must be true or false']],
  [
    'clientNetworks without prefix',
    'kms:\n  clientNetworks:\n    - 10.0.0.0\n',
    ['config.yaml:3: kms.clientNetworks[0]: must be a network as ADDR/PREFIX (e.g. 192.168.1.0/24, fd00::/8): has no /PREFIX'],
  ],
  [
    'clientNetworks prefix too long',
    'kms:\n  clientNetworks: [10.0.0.0/33]\n',
    [
      'config.yaml:2: kms.clientNetworks[0]: must be a network as ADDR/PREFIX (e.g. 192.168.1.0/24, fd00::/8): ' +
        'prefix "/33" is not 0 … 32',
    ],
  ],
  [
    'clientNetworks bad address',
    'kms:\n  clientNetworks: [fd00::zz/8]\n',
    [
      'config.yaml:2: kms.clientNetworks[0]: must be a network as ADDR/PREFIX (e.g. 192.168.1.0/24, fd00::/8): "fd00::zz" is not an ' +
        'IPv4 or IPv6 address',
    ],
  ],
  [
    'unknown kms field',
    'kms:\n  port: 1688\n',
    [
      'config.yaml:2: kms.port: unknown field; allowed: listen, activationIntervalMinutes, renewalIntervalMinutes, maxPduBytes, ' +
        'maxStubBytes, maxConnections, maxConnectionsPerAddress, ipv6GroupPrefixLength, idleTimeoutSeconds, maxConnectionSeconds, ' +
        'maxContextsPerConnection, ndr64, btfn, checkRequestTime, maxClockSkewMinutes, verifyV4Mac, allowRetail, allowPreview, ' +
        'clientNetworks',
    ],
  ],
  ['kms not a mapping', 'kms: 1688\n', ['config.yaml:1: kms: must be a mapping of fields']],
  // ---- host ----
  ['build below 1000', 'kms:\n  ndr64: false\nhost:\n  build: 999\n', ['config.yaml:4: host.build: must be between 1000 and 99999']],
  [
    'build before NDR64 with ndr64 on',
    'host:\n  build: 7601\n',
    ['config.yaml:2: host.build: must be 9200 or higher while kms.ndr64 is true (older hosts do not speak NDR64)'],
  ],
  [
    'ndr64 off with the default build',
    'kms:\n  ndr64: false\n',
    ['config.yaml:2: host.build: must be below 9200 when kms.ndr64 is false (NDR64 arrived with build 9200)'],
  ],
  [
    'ndr64 off with a new build',
    'host:\n  build: 17763\nkms:\n  ndr64: false\n',
    ['config.yaml:2: host.build: must be below 9200 when kms.ndr64 is false (NDR64 arrived with build 9200)'],
  ],
  ['lcid too small', 'host:\n  lcid: 9\n', ['config.yaml:2: host.lcid: must be between 1025 and 65535']],
  [
    'hwid too short',
    'host:\n  hwid: 0123456789ABCDE\n',
    ['config.yaml:2: host.hwid: must be 16 hex digits (8 bytes, e.g. 0123456789ABCDEF) or empty to generate one'],
  ],
  [
    'hwid not hex',
    'host:\n  hwid: 0123456789ABCDEG\n',
    ['config.yaml:2: host.hwid: must be 16 hex digits (8 bytes, e.g. 0123456789ABCDEF) or empty to generate one'],
  ],
  [
    'hwid as a number',
    'host:\n  hwid: 1234567812345678\n',
    ['config.yaml:2: host.hwid: must be a string (quote it if it looks like a number or true/false)'],
  ],
  ['hostKeyGroups empty name', 'host:\n  hostKeyGroups: [""]\n', ['config.yaml:2: host.hostKeyGroups[0]: must not be empty']],
  [
    'hostKeyGroups twice',
    'host:\n  hostKeyGroups:\n    - Windows 10 2019\n    - Windows Server 2022\n    - Windows 10 2019\n',
    ['config.yaml:5: host.hostKeyGroups[2]: repeats host.hostKeyGroups[0]'],
  ],
  [
    'hostKeyGroups id as a number',
    'host:\n  hostKeyGroups: [206, "206"]\n',
    ['config.yaml:2: host.hostKeyGroups[0]: must be a string (quote it if it looks like a number or true/false)'],
  ],
  [
    'epids malformed',
    'host:\n  epids:\n    Windows Server 2022: 03612-00206-556-123727-03-1033-20348.0000\n',
    ['config.yaml:3: host.epids.Windows Server 2022: must be an ePID like 03612-00206-556-123727-03-1033-20348.0000-2972021'],
  ],
  ['epids not a mapping', 'host:\n  epids: []\n', ['config.yaml:2: host.epids: must be a mapping of fields']],
  // ---- store, catalog ----
  [
    'dataDir relative',
    'store:\n  dataDir: var/lib/kms\n',
    ['config.yaml:2: store.dataDir: must be an absolute path (or empty for $STATE_DIRECTORY, as systemd sets it)'],
  ],
  ['eventRetentionDays zero', 'store:\n  eventRetentionDays: 0\n', ['config.yaml:2: store.eventRetentionDays: must be between 1 and 3650']],
  [
    'catalog file relative',
    'catalog:\n  file: catalog.json\n',
    ['config.yaml:2: catalog.file: must be an absolute path (or empty for the one shipped with the appliance)'],
  ],
  // ---- entitlements ----
  [
    'entitlement without licenses',
    'entitlements:\n  - product: Windows 11 Enterprise\n',
    ['config.yaml:2: entitlements[0].licenses: is required'],
  ],
  [
    'entitlement negative',
    'entitlements:\n  - product: Office LTSC 2021\n    licenses: -1\n',
    ['config.yaml:3: entitlements[0].licenses: must be between 0 and 10000000'],
  ],
  [
    'entitlement unknown field',
    'entitlements:\n  - product: Office LTSC 2021\n    licenses: 3\n    seats: 3\n',
    ['config.yaml:4: entitlements[0].seats: unknown field; allowed: product, licenses'],
  ],
  ['entitlements not a list', 'entitlements:\n  product: x\n', ['config.yaml:1: entitlements: must be a list']],
  // ---- dns ----
  [
    'dns listen bad',
    'dns:\n  listen: ["[::1]"]\n',
    ['config.yaml:2: dns.listen[0]: must be a listen address: "[::1]" is not ADDR:PORT (IPv6 in brackets, e.g. [::]:1688)'],
  ],
  ['zone without domain', 'dns:\n  zones:\n    - ttlSeconds: 60\n', ['config.yaml:3: dns.zones[0].domain: is required']],
  [
    'zone bad domain',
    'dns:\n  zones:\n    - domain: branch..example.org\n',
    ['config.yaml:3: dns.zones[0].domain: must be a DNS name (letters, digits and hyphens, dot-separated): has an empty label'],
  ],
  [
    'zone label with a space',
    'dns:\n  zones:\n    - domain: "my branch.org"\n',
    [
      'config.yaml:3: dns.zones[0].domain: must be a DNS name (letters, digits and hyphens, dot-separated): has an invalid label "my ' +
        'branch"',
    ],
  ],
  [
    'zone ttl zero',
    'dns:\n  zones:\n    - domain: b.example.org\n      ttlSeconds: 0\n',
    ['config.yaml:4: dns.zones[0].ttlSeconds: must be between 1 and 86400'],
  ],
  [
    'srv host without target',
    'dns:\n  zones:\n    - domain: b.example.org\n      hosts:\n        - port: 1688\n',
    ['config.yaml:5: dns.zones[0].hosts[0].target: is required'],
  ],
  [
    'srv port zero',
    'dns:\n  zones:\n    - domain: b.example.org\n      hosts:\n        - target: kms.b.example.org\n          port: 0\n',
    ['config.yaml:6: dns.zones[0].hosts[0].port: must be between 1 and 65535'],
  ],
  [
    'srv priority too large',
    'dns:\n  zones:\n    - domain: b.example.org\n      hosts:\n        - target: kms.b.example.org\n          priority: 65536\n',
    ['config.yaml:6: dns.zones[0].hosts[0].priority: must be between 0 and 65535'],
  ],
  [
    'srv weight negative',
    'dns:\n  zones:\n    - domain: b.example.org\n      hosts:\n        - target: kms.b.example.org\n          weight: -1\n',
    ['config.yaml:6: dns.zones[0].hosts[0].weight: must be between 0 and 65535'],
  ],
  [
    'srv address not an IP',
    'dns:\n  zones:\n    - domain: b.example.org\n      hosts:\n        - target: kms.b.example.org\n          addresses: [kms]\n',
    ['config.yaml:6: dns.zones[0].hosts[0].addresses[0]: must be an IPv4 or IPv6 address: "kms" is not one'],
  ],
  [
    'forwarding without upstream or networks',
    'dns:\n  forwarding:\n    enabled: true\n',
    [
      'config.yaml:3: dns.forwarding.upstream: must list at least one resolver when dns.forwarding.enabled is true',
      'config.yaml:3: dns.forwarding.allowNetworks: must list the client networks allowed to forward when dns.forwarding.enabled is ' +
        'true (the appliance is never an open resolver)',
    ],
  ],
  [
    'forwarding upstream bad',
    'dns:\n  forwarding:\n    upstream: ["9.9.9.9:99999"]\n',
    [
      'config.yaml:3: dns.forwarding.upstream[0]: must be a DNS server as ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT): port 99999 is above ' +
        '65535',
    ],
  ],
  [
    'rate limit zero',
    'dns:\n  rateLimit:\n    responsesPerSecond: 0\n',
    ['config.yaml:3: dns.rateLimit.responsesPerSecond: must be between 1 and 100000'],
  ],
  ['burst zero', 'dns:\n  rateLimit:\n    burst: 0\n', ['config.yaml:3: dns.rateLimit.burst: must be between 1 and 1000000']],
  [
    'registration without server, domains, key',
    'dns:\n  registration:\n    enabled: true\n',
    [
      'config.yaml:3: dns.registration.server: must be set when dns.registration.enabled is true',
      'config.yaml:3: dns.registration.domains: must list at least one domain when dns.registration.enabled is true',
      'config.yaml:3: dns.registration.tsig.secretBase64: must be set, or dns.registration.tsig.secretFile, when ' +
        'dns.registration.enabled is true',
      'config.yaml:3: dns.registration.tsig.keyName: must be set when dns.registration.enabled is true (updates are signed with TSIG)',
    ],
  ],
  [
    'registration with an empty server written',
    'dns:\n  registration:\n    enabled: true\n    server: ""\n    domains: [b.example.org]\n    tsig: {keyName: k, secretFile: ' +
      '/etc/kms-appliance/tsig.key}\n',
    [
      'config.yaml:4: dns.registration.server: must be set when dns.registration.enabled is true',
      'config.yaml:5: dns.registration.domains[0]: must be a mapping of fields',
    ],
  ],
  [
    'registration server bad',
    'dns:\n  registration:\n    server: "dns.example.org"\n',
    [
      'config.yaml:3: dns.registration.server: must be a DNS server as ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT): "dns.example.org" is ' +
        'not ADDR:PORT (IPv6 in brackets, e.g. [::]:1688)',
    ],
  ],
  [
    'registration domain without name',
    'dns:\n  registration:\n    domains:\n      - priority: 1\n',
    ['config.yaml:4: dns.registration.domains[0].domain: is required'],
  ],
  [
    'registration hostName bad',
    'dns:\n  registration:\n    hostName: "-kms.example.org"\n',
    [
      'config.yaml:3: dns.registration.hostName: must be a DNS name (letters, digits and hyphens, dot-separated): has an invalid label ' +
        '"-kms"',
    ],
  ],
  [
    'registration addresses bad',
    'dns:\n  registration:\n    addresses: [192.0.2.300]\n',
    ['config.yaml:3: dns.registration.addresses[0]: must be an IPv4 or IPv6 address: "192.0.2.300" is not one'],
  ],
  [
    'registration ttl too large',
    'dns:\n  registration:\n    ttlSeconds: 86401\n',
    ['config.yaml:3: dns.registration.ttlSeconds: must be between 1 and 86400'],
  ],
  [
    'tsig algorithm',
    'dns:\n  registration:\n    tsig:\n      algorithm: hmac-md5\n',
    ['config.yaml:4: dns.registration.tsig.algorithm: must be one of: hmac-sha256'],
  ],
  [
    'tsig secret not base64',
    'dns:\n  registration:\n    tsig:\n      secretBase64: "not base64!"\n',
    ['config.yaml:4: dns.registration.tsig.secretBase64: must be base64 (as in a BIND key file)'],
  ],
  [
    'tsig secret twice',
    'dns:\n  registration:\n    tsig:\n      secretBase64: c2VjcmV0\n      secretFile: /etc/kms-appliance/tsig.key\n',
    [
      'config.yaml:4: dns.registration.tsig.secretBase64: must be empty when dns.registration.tsig.secretFile is set (give the secret ' +
        'one way only)',
    ],
  ],
  [
    'tsig secretFile relative',
    'dns:\n  registration:\n    tsig:\n      secretFile: tsig.key\n',
    ['config.yaml:4: dns.registration.tsig.secretFile: must be an absolute path (or empty for secretBase64)'],
  ],
  [
    'tsig keyName bad',
    'dns:\n  registration:\n    tsig:\n      keyName: "a b"\n',
    [
      'config.yaml:4: dns.registration.tsig.keyName: must be a DNS name (letters, digits and hyphens, dot-separated): has an invalid ' +
        'label "a b"',
    ],
  ],
  [
    'refresh too often',
    'dns:\n  registration:\n    refreshMinutes: 1\n',
    ['config.yaml:3: dns.registration.refreshMinutes: must be between 5 and 10080'],
  ],
  [
    'removeOnShutdown as no',
    'dns:\n  registration:\n    removeOnShutdown: no\n',
    ['config.yaml:3: dns.registration.removeOnShutdown: must be true or false'],
  ],
  [
    'mdns name too long',
    `dns:\n  mdns:\n    instanceName: ${'k'.repeat(64)}\n`,
    ['config.yaml:3: dns.mdns.instanceName: must be at most 63 characters'],
  ],
  ['mdns enabled as string', 'dns:\n  mdns:\n    enabled: "false"\n', ['config.yaml:3: dns.mdns.enabled: must be true or false']],
  ['unknown dns field', 'dns:\n  srv: {}\n', [`config.yaml:2: dns.srv: unknown field; allowed: ${fieldsOf('dns')}`]],
  // ---- admin, log, top level ----
  [
    'admin listen bad',
    'admin:\n  listen: ["localhost:8688"]\n',
    ['config.yaml:2: admin.listen[0]: must be a listen address: "localhost" is not an IPv4 or IPv6 address'],
  ],
  ['log level', 'log:\n  level: verbose\n', ['config.yaml:2: log.level: must be one of: fatal, error, warn, info, debug, trace']],
  ['unknown section', 'kms: {}\nlogging:\n  level: info\n', [`config.yaml:2: logging: unknown field; allowed: ${fieldsOf()}`]],
  ['a list instead of a mapping', '- kms\n', ['config.yaml:1: (top level): must be a mapping of fields']],
  [
    '__proto__ is just an unknown field',
    '__proto__:\n  polluted: true\n',
    [`config.yaml:1: __proto__: unknown field; allowed: ${fieldsOf()}`],
  ],
];

for (const [what, text, expected] of CASES) {
  t.test(what, async (t) => {
    const got = errorsOf(text);
    t.equal(got.code, 'KMS_ERR_CONFIG_INVALID');
    t.same(got.errors, expected);
  });
}

t.test('the prototype is not polluted by a __proto__ key', async (t) => {
  errorsOf('__proto__:\n  polluted: true\n');
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});
