// Loading the configuration file: defaults, merging, every error at once with its line, syntax
// errors, missing and unreadable files.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { loadConfig, validateConfigText } from '../../src/config/load';
import { DEFAULTS } from '../../src/config/defaults';
import { configFailure } from './config-failure';

t.test('no file means the embedded defaults', async (t) => {
  t.equal(loadConfig(), DEFAULTS);
});

t.test('an empty file, or one with only comments, gives the defaults', async (t) => {
  t.same(validateConfigText('', 'c.yaml'), DEFAULTS);
  t.same(validateConfigText('# nothing here\n\n', 'c.yaml'), DEFAULTS);
});

t.test('a section whose lines are all commented out keeps its defaults', async (t) => {
  const c = validateConfigText('kms:\n  # renewalIntervalMinutes: 60\nlog:\n  level: debug\n', 'c.yaml');
  t.same(c.kms, DEFAULTS.kms);
  t.equal(c.log.level, 'debug');
});

t.test('fields merge over the defaults; lists replace them', async (t) => {
  const c = validateConfigText('kms:\n  renewalIntervalMinutes: 1440\n  listen: ["127.0.0.1:11688"]\n', 'c.yaml');
  t.equal(c.kms.renewalIntervalMinutes, 1440);
  t.equal(c.kms.activationIntervalMinutes, DEFAULTS.kms.activationIntervalMinutes);
  t.same(c.kms.listen, ['127.0.0.1:11688']);
  t.same(c.host, DEFAULTS.host);
});

t.test('list entries get their field defaults', async (t) => {
  const c = validateConfigText(
    'dns:\n  zones:\n    - domain: branch.example.org\n      hosts:\n        - target: kms.branch.example.org\n  registration:\n    ' +
      'domains:\n      - domain: branch.example.org\n',
    'c.yaml',
  );
  t.same(c.dns.zones, [
    {
      domain: 'branch.example.org',
      ttlSeconds: 900,
      hosts: [{ target: 'kms.branch.example.org', port: 1688, priority: 0, weight: 0, addresses: [] }],
    },
  ]);
  t.same(c.dns.registration.domains, [{ domain: 'branch.example.org', priority: 0, weight: 0 }]);
});

t.test('the boundaries of the interval range are accepted (PROTOCOL.md §7.3)', async (t) => {
  const c = validateConfigText('kms:\n  activationIntervalMinutes: 15\n  renewalIntervalMinutes: 43200\n', 'c.yaml');
  t.equal(c.kms.activationIntervalMinutes, 15);
  t.equal(c.kms.renewalIntervalMinutes, 43200);
});

t.test('an old build with NDR64 off is accepted, and a complete registration', async (t) => {
  const c = validateConfigText(
    [
      'kms:',
      '  ndr64: false',
      'host:',
      '  build: 7601',
      '  hwid: 0123456789abcdef',
      '  epids:',
      '    "206": 03612-00206-556-123727-03-1033-7601.0000-2972021',
      'dns:',
      '  listen: ["127.0.0.1:5353", "[::1]:5353"]',
      '  registration:',
      '    enabled: true',
      '    server: "[2001:db8::53]:53"',
      '    domains: [{domain: branch.example.org, priority: 10, weight: 50}]',
      '    tsig: {keyName: kms-update., secretBase64: c2VjcmV0c2VjcmV0c2VjcmV0}',
      '  forwarding: {enabled: true, upstream: [192.0.2.53], allowNetworks: [192.0.2.0/24, "fd00::/8"]}',
      '',
    ].join('\n'),
    'c.yaml',
  );
  t.equal(c.host.build, 7601);
  t.equal(c.dns.registration.server, '[2001:db8::53]:53');
  t.same(c.dns.forwarding.upstream, ['192.0.2.53']);
});

t.test('the result is deep-frozen', async (t) => {
  const c = validateConfigText('dns:\n  zones:\n    - domain: b.example.org\n', 'c.yaml');
  t.ok(Object.isFrozen(c));
  t.ok(Object.isFrozen(c.kms.listen));
  t.ok(Object.isFrozen(c.dns.zones[0]));
  t.throws(() => {
    (c.kms as { renewalIntervalMinutes: number }).renewalIntervalMinutes = 5;
  });
});

t.test('every error at once, in line order', async (t) => {
  const text = [
    'log:', //                                    1
    '  level: loud', //                           2
    'kms:', //                                    3
    '  renewalIntervalMinutes: 12', //            4
    '  activationIntervalMinutes: 50000', //      5
    '  colour: blue', //                          6
    'host:', //                                   7
    '  hwid: 42', //                              8
    '',
  ].join('\n');
  const err = configFailure(() => validateConfigText(text, 'site.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_INVALID');
  t.same(err.details.errors, [
    'site.yaml:2: log.level: must be one of: fatal, error, warn, info, debug, trace',
    'site.yaml:4: kms.renewalIntervalMinutes: must be between 15 and 43200',
    'site.yaml:5: kms.activationIntervalMinutes: must be between 15 and 43200',
    'site.yaml:6: kms.colour: unknown field; allowed: listen, activationIntervalMinutes, renewalIntervalMinutes, maxPduBytes, ' +
      'maxStubBytes, maxConnections, maxConnectionsPerAddress, ipv6GroupPrefixLength, idleTimeoutSeconds, maxConnectionSeconds, ' +
      'maxContextsPerConnection, ndr64, btfn, checkRequestTime, maxClockSkewMinutes, verifyV4Mac, allowRetail, allowPreview, ' +
      'clientNetworks',
    'site.yaml:8: host.hwid: must be a string (quote it if it looks like a number or true/false)',
  ]);
  t.equal(err.message, (err.details.errors as string[]).join('\n'));
});

t.test('YAML syntax errors carry their line', async (t) => {
  const err = configFailure(() => validateConfigText('kms:\n  listen: ["0.0.0.0:1688"\nhost:\n  build: 20348\n', 'config.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_SYNTAX');
  const errors = err.details.errors as string[];
  t.ok(errors.length >= 1);
  // The parser notices the missing "]" where the next block key starts.
  t.match(errors[0], /^config\.yaml:3: \S/);
  for (const line of errors) t.notMatch(line, /\n/);
});

t.test('a bad indentation is a syntax error on its line', async (t) => {
  const err = configFailure(() => validateConfigText('kms:\n  ndr64: true\n btfn: true\n', 'config.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_SYNTAX');
  t.match((err.details.errors as string[])[0], /^config\.yaml:3: /);
});

t.test('a key written twice is a syntax error at the second one', async (t) => {
  const err = configFailure(() => validateConfigText('log:\n  level: info\nlog:\n  level: debug\n', 'config.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_SYNTAX');
  t.match((err.details.errors as string[])[0], /^config\.yaml:3: /);
});

t.test('files: missing, unreadable, and errors named by the basename', async (t) => {
  const dir = t.testdir({
    'bad.yaml': 'kms:\n  renewalIntervalMinutes: 12\n',
    'good.yaml': 'log:\n  level: warn\n',
    'a-directory': {},
  });
  t.equal(loadConfig(path.join(dir, 'good.yaml')).log.level, 'warn');

  const missing = configFailure(() => loadConfig(path.join(dir, 'nope.yaml')));
  t.equal(missing.code, 'KMS_ERR_CONFIG_NOT_FOUND');
  t.same(missing.details.errors, [`${path.join(dir, 'nope.yaml')}: no such file`]);

  // A directory cannot be read even by root, unlike a chmod 000 file.
  const unreadable = configFailure(() => loadConfig(path.join(dir, 'a-directory')));
  t.equal(unreadable.code, 'KMS_ERR_CONFIG_UNREADABLE');
  t.same(unreadable.details.errors, [`${path.join(dir, 'a-directory')}: cannot be read (EISDIR)`]);

  const bad = configFailure(() => loadConfig(path.join(dir, 'bad.yaml')));
  t.equal(bad.code, 'KMS_ERR_CONFIG_INVALID');
  t.same(bad.details.errors, ['bad.yaml:2: kms.renewalIntervalMinutes: must be between 15 and 43200']);
});

t.test('limits: FIFO, size, alias bomb, depth — one line naming the file, code KMS_ERR_CONFIG_LIMIT', async (t) => {
  const dir = t.testdir({
    'big.yaml': `# ${'x'.repeat(2 * 1024 * 1024)}\n`,
    'bomb.yaml':
      [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(',')}]`),
      ].join('\n') + '\n',
    'deep-flow.yaml': `kms: ${'['.repeat(5000)}${']'.repeat(5000)}\n`,
    'deep-block.yaml': Array.from({ length: 200 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n') + ' 1\n',
    'ok-anchors.yaml': 'kms: &k\n  ndr64: true\n',
  });
  const fifo = path.join(dir, 'fifo.yaml');
  execFileSync('mkfifo', [fifo]);
  for (const [name, pattern] of [
    ['fifo.yaml', /is not a regular file \(a FIFO\)/],
    ['big.yaml', /a configuration file may be at most 1048576/],
    ['bomb.yaml', /expands YAML aliases more than 100 times/],
    ['deep-flow.yaml', /more than 32 levels deep/],
    ['deep-block.yaml', /more than 32 levels deep/],
  ] as [string, RegExp][]) {
    const err = configFailure(() => loadConfig(path.join(dir, name)));
    t.equal(err.code, 'KMS_ERR_CONFIG_LIMIT', name);
    const errors = err.details.errors as string[];
    t.equal(errors.length, 1, `${name}: one line`);
    t.match(errors[0], pattern, name);
    t.match(errors[0], name, `${name}: the line names the file`);
    t.notMatch(errors[0], /\n/);
  }
  t.equal(loadConfig(path.join(dir, 'ok-anchors.yaml')).kms.ndr64, true, 'a normal anchor still works');
});
