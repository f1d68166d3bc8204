// `kms-appliance client-config`: files written to --out, options checked, exit codes.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { command } from '../../../src/cli/commands/client-config';
import { captureIo } from './io';

const NAMES = [
  'kms-client-set.cmd',
  'kms-client-set.ps1',
  'kms-client-set.reg',
  'kms-client-undo.cmd',
  'kms-client-undo.ps1',
  'kms-client-undo.reg',
];

t.test('writes the six files into --out with the given host and port', async (t) => {
  const dir = path.join(t.testdir({}), 'new', 'sub');
  const io = captureIo();
  t.equal(await command.run(['--host', 'kms.branch.example.org', '--port', '11688', '--out', dir], io), 0);
  t.same(fs.readdirSync(dir).sort(), NAMES);
  t.equal(io.out().trimEnd().split('\n').length, 7);
  t.match(io.out(), /powershell -ExecutionPolicy Bypass -File \.\\kms-client-set\.ps1\n$/, 'says how to run the .ps1');
  t.match(io.out(), `${path.join(dir, 'kms-client-set.cmd')}: `);
  const cmd = fs.readFileSync(path.join(dir, 'kms-client-set.cmd'), 'ascii');
  t.ok(cmd.includes('"%SLMGR%" /skms kms.branch.example.org:11688\r\n'));
  const reg = fs.readFileSync(path.join(dir, 'kms-client-set.reg'));
  t.same([...reg.subarray(0, 2)], [0xff, 0xfe]);
  t.ok(reg.subarray(2).toString('utf16le').includes('"KeyManagementServicePort"="11688"\r\n'));
});

t.test('the port defaults to 1688 and the directory to ./kms-client-config', async (t) => {
  const dir = t.testdir({});
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  t.equal(await command.run(['--host', '192.0.2.10'], captureIo()), 0);
  const cmd = fs.readFileSync(path.join(dir, 'kms-client-config', 'kms-client-set.cmd'), 'ascii');
  t.ok(cmd.includes('"%SLMGR%" /skms 192.0.2.10:1688\r\n'));
});

t.test('bad options: one line, exit 2, nothing written', async (t) => {
  const dir = t.testdir({});
  const cases: string[][] = [
    [],
    ['--port', '1688'],
    ['--host', 'kms example'],
    ['--host', 'kms', '--port', '0'],
    ['--host', 'kms', '--port', '65536'],
    ['--host', 'kms', '--port', '16x'],
    ['--host', 'kms', '--colour', 'red'],
    ['--host', 'kms', 'extra'],
  ];
  for (const argv of cases) {
    const io = captureIo();
    t.equal(await command.run([...argv, '--out', path.join(dir, 'out')], io), 2, argv.join(' '));
    t.match(io.err(), /^kms-appliance client-config: [^\n]+\n$/, argv.join(' '));
  }
  t.notOk(fs.existsSync(path.join(dir, 'out')));
});

t.test('an unwritable destination is a failure (exit 1), one line', async (t) => {
  const dir = t.testdir({ 'a-file': 'x' });
  const io = captureIo();
  t.equal(await command.run(['--host', 'kms', '--out', path.join(dir, 'a-file', 'sub')], io), 1);
  t.match(io.err(), /^kms-appliance client-config: cannot write to .*: ENOTDIR[^\n]*\n$/);
});

t.test('a planted symbolic link is refused, its target untouched', async (t) => {
  const dir = t.testdir({ victim: 'precious\n', out: {} });
  const out = path.join(dir, 'out');
  fs.symlinkSync(path.join(dir, 'victim'), path.join(out, 'kms-client-set.ps1'));
  const io = captureIo();
  t.equal(await command.run(['--host', 'kms', '--out', out], io), 1);
  t.match(io.err(), /kms-client-set\.ps1 is a symbolic link; refusing to write through it/);
  t.equal(fs.readFileSync(path.join(dir, 'victim'), 'utf8'), 'precious\n', 'the target is unchanged');
  t.same(
    fs.readdirSync(out).filter((n) => n.endsWith('.tmp')),
    [],
    'no temporary file left',
  );
  // --out itself a link to somewhere else is refused too.
  fs.symlinkSync(dir, path.join(dir, 'link-dir'));
  t.equal(await command.run(['--host', 'kms', '--out', path.join(dir, 'link-dir')], captureIo()), 1);
  // An existing regular file is replaced whole.
  const fresh = path.join(dir, 'fresh');
  fs.mkdirSync(fresh);
  fs.writeFileSync(path.join(fresh, 'kms-client-set.cmd'), 'old');
  t.equal(await command.run(['--host', 'kms', '--out', fresh], captureIo()), 0);
  t.match(fs.readFileSync(path.join(fresh, 'kms-client-set.cmd'), 'ascii'), /^@echo off/);
});

t.test('--help', async (t) => {
  const io = captureIo();
  t.equal(await command.run(['-h'], io), 0);
  t.equal(io.out(), command.help);
  t.match(command.help, /^Usage: kms-appliance client-config --host H \[--port P\] \[--out DIR\]/);
});
