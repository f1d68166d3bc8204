// Red-team findings against the configuration loader: YAML a broken or hostile file can contain
// that the parser accepts but the loader explained wrongly, or let through to the terminal as a
// stray Node warning instead of an error naming the file and the line.
import fs from 'node:fs';
import t from 'tap';
import { loadConfig, validateConfigText } from '../../src/config/load';
import { configFailure } from './config-failure';

t.test('an alias to an anchor that is not set is a syntax error on its line, not "an alias bomb"', async (t) => {
  for (const text of ['kms:\n  ndr64: *nope\n', 'kms:\n  listen: [*later]\nother: &later x\n']) {
    const err = configFailure(() => validateConfigText(text, 'kms.yaml'));
    t.equal(err.code, 'KMS_ERR_CONFIG_SYNTAX', JSON.stringify(text));
    const errors = err.details.errors as string[];
    t.equal(errors.length, 1);
    t.match(errors[0], /^kms\.yaml:2: /, 'names the file and the line of the alias');
    t.match(errors[0], /alias \*(nope|later)/, 'and the alias');
    t.notMatch(errors[0], /bomb|more than 100/);
  }
});

t.test('a key that is a list or mapping is an error on its line, and Node prints no warning', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => {
    process.off('warning', onWarning);
  });
  const err = configFailure(() => validateConfigText('kms:\n  ndr64: true\n? [a, b]\n: 1\n', 'kms.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_SYNTAX');
  t.match((err.details.errors as string[])[0], /^kms\.yaml:3: /);
  await new Promise((resolve) => setImmediate(resolve)); // process warnings are emitted on the next tick
  t.same(warnings, [], 'no warning on the terminal');
});

t.test('a file with thousands of mistakes gives the first 50 and how many more, not a line for each', async (t) => {
  // 1,000 bad entitlements made 3,000 error lines (211 KB) on the terminal, or in one log line on SIGHUP.
  const text = 'entitlements:\n' + Array.from({ length: 1000 }, (_, i) => `  - { product: "", licenses: -${i + 1} }\n`).join('');
  const err = configFailure(() => validateConfigText(text, 'kms.yaml'));
  t.equal(err.code, 'KMS_ERR_CONFIG_INVALID');
  const errors = err.details.errors as string[];
  t.equal(errors.length, 51, 'fifty lines and a summary');
  t.match(errors[0], /^kms\.yaml:2: entitlements\[0\]/, 'in file order');
  t.match(errors[50], /^kms\.yaml: and 1950 more errors/);
  t.equal(err.message, errors.join('\n'));
});

t.test(
  'a file with more bytes than its size said is refused, not parsed from its first size+1 bytes',
  { skip: !fs.existsSync('/proc/self/status') && 'needs /proc' },
  async (t) => {
    // A file being rewritten while SIGHUP reads it grows between fstat and read: the loader parsed
    // the first size+1 bytes as the whole file. A /proc file (size 0, many lines) shows it at once.
    const err = configFailure(() => loadConfig('/proc/self/status'));
    t.equal(err.code, 'KMS_ERR_CONFIG_UNREADABLE');
    t.match((err.details.errors as string[])[0], /^\/proc\/self\/status: has more bytes than its size \(0\) said/);
  },
);
