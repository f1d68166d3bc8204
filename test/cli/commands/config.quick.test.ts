// `kms-appliance config check FILE` and `config defaults`: output lines and exit codes.
import path from 'node:path';
import t from 'tap';
import { command } from '../../../src/cli/commands/config';
import { validateConfigText } from '../../../src/config/load';
import { DEFAULTS } from '../../../src/config/defaults';
import { captureIo } from './io';

t.test('check: a valid file prints "FILE: OK" and exits 0', async (t) => {
  const dir = t.testdir({ 'config.yaml': 'log:\n  level: debug\n' });
  const file = path.join(dir, 'config.yaml');
  const io = captureIo();
  t.equal(await command.run(['check', file], io), 0);
  t.equal(io.out(), `${file}: OK\n`);
  t.equal(io.err(), '');
});

t.test('check: an invalid file prints every error line and exits 2', async (t) => {
  const dir = t.testdir({ 'config.yaml': 'kms:\n  renewalIntervalMinutes: 12\n  foo: 1\nlog:\n  level: loud\n' });
  const io = captureIo();
  t.equal(await command.run(['check', path.join(dir, 'config.yaml')], io), 2);
  const lines = io.err().split('\n');
  t.equal(lines[0], 'config.yaml:2: kms.renewalIntervalMinutes: must be between 15 and 43200');
  t.match(lines[1], /^config\.yaml:3: kms\.foo: unknown field; allowed: listen, activationIntervalMinutes, /);
  t.equal(lines[2], 'config.yaml:5: log.level: must be one of: fatal, error, warn, info, debug, trace');
  t.equal(lines.length, 4);
  t.equal(io.out(), '');
});

t.test('check: syntax error, missing file — one line each, exit 2, no stack', async (t) => {
  const dir = t.testdir({ 'broken.yaml': 'kms:\n  listen: [\n' });
  const io = captureIo();
  t.equal(await command.run(['check', path.join(dir, 'broken.yaml')], io), 2);
  t.match(io.err(), /^broken\.yaml:\d+: .+\n$/);
  const io2 = captureIo();
  t.equal(await command.run(['check', path.join(dir, 'missing.yaml')], io2), 2);
  t.equal(io2.err(), `${path.join(dir, 'missing.yaml')}: no such file\n`);
  t.notMatch(io.err() + io2.err(), /\n\s+at /);
});

t.test('defaults: prints the commented example, which loads to DEFAULTS', async (t) => {
  const io = captureIo();
  t.equal(await command.run(['defaults'], io), 0);
  t.match(io.out(), /^# kms-appliance configuration/);
  t.same(validateConfigText(io.out(), 'defaults.yaml'), DEFAULTS);
});

t.test('--help prints the help; usage errors are one line with exit 2', async (t) => {
  const io = captureIo();
  t.equal(await command.run(['--help'], io), 0);
  t.equal(io.out(), command.help);
  t.match(command.help, /^Usage: kms-appliance config check \[FILE\]/);
  for (const argv of [[], ['check'], ['check', 'a', 'b'], ['defaults', 'x'], ['frobnicate'], ['check', '--verbose', 'x']]) {
    const e = captureIo();
    t.equal(await command.run(argv, e), 2, argv.join(' '));
    t.match(e.err(), /^kms-appliance config: [^\n]+\n$/, argv.join(' '));
    t.equal(e.out(), '');
  }
});

t.test('check: an entitlement naming nothing in the catalogue is refused with a suggestion', async (t) => {
  const dir = t.testdir({
    'config.yaml': 'entitlements:\n  - product: Office\n    licenses: 5\n  - product: Windows 10/11 Enterprise\n    licenses: 5\n',
  });
  const io = captureIo();
  t.equal(await command.run(['check', path.join(dir, 'config.yaml')], io), 2);
  const lines = io.err().trimEnd().split('\n');
  t.equal(lines.length, 1, 'only the unknown one');
  t.match(
    lines[0],
    'entitlements[0].product: "Office" names no application, product group or product of the catalogue — ' +
      '"Office" matches 6 names: "Office 2010", ',
  );
});
