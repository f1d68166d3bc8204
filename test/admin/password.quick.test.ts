// admin set-password: one line from standard input, only a scrypt hash (salt, parameters) kept,
// 0600; short or missing passwords refused; verification is by the hash. And the small parsers
// the login depends on: Basic credentials, cookies, the Host header, the per-address throttle key.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { main } from '../../src/cli/main';
import { passwordFile, readPasswordRecord, verifyPassword, writePasswordRecord, type PasswordRecord } from '../../src/admin/password';
import { watchPasswordFile } from '../../src/admin/password-watch';
import { parseBasic, readCookie, throttleKey } from '../../src/admin/login';
import { hostOf, normalizeAddress } from '../../src/admin/host-check';

function io(input: string): {
  stdin: PassThrough;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
  out: () => string;
  err: () => string;
} {
  let out = '';
  let err = '';
  const stdin = new PassThrough();
  stdin.end(input);
  return {
    stdin,
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    env: {},
    out: () => out,
    err: () => err,
  };
}

t.test(
  'as root, set-password gives the file to the owner of the data directory (the service user)',
  { skip: process.getuid?.() !== 0 && 'needs root' },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-pw-owner-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.chownSync(dir, 4321, 4322);
    const run = io('a long enough password\n');
    t.equal(await main(['admin', 'set-password', '--data-dir', dir], run), 0, run.err());
    const st = fs.statSync(passwordFile(dir));
    t.same([st.uid, st.gid, st.mode & 0o777], [4321, 4322, 0o600]);
  },
);

t.test('set-password stores a scrypt hash only, 0600, from the first line of standard input', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-pw-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const secret = 'correct horse battery staple';
  const run = io(`${secret}\nsecond line ignored\n`);
  t.equal(await main(['admin', 'set-password', '--data-dir', dir], run), 0, run.err());
  const file = passwordFile(dir);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  const text = fs.readFileSync(file, 'utf8');
  t.notMatch(text, /correct horse/, 'the password itself is not stored');
  const record = readPasswordRecord(dir)!;
  t.match(record, { user: 'admin', scheme: 'scrypt', N: 32768, r: 8, p: 1 });
  t.ok(Buffer.from(record.salt, 'base64').length >= 16, 'a 16-byte salt');
  t.ok(await verifyPassword(record, 'admin', secret));
  t.notOk(await verifyPassword(record, 'admin', 'second line ignored'));
  t.notOk(await verifyPassword(record, 'root', secret));

  const short = io('too-short\n');
  t.equal(await main(['admin', 'set-password', '--data-dir', dir], short), 2);
  t.match(short.err(), /at least 10 characters/);
  const none = io('');
  t.equal(await main(['admin', 'set-password', '--data-dir', dir], none), 2);
  t.match(none.err(), /no password given/);
  t.ok(await verifyPassword(readPasswordRecord(dir)!, 'admin', secret), 'a refused attempt leaves the stored password');
  fs.writeFileSync(file, '{"scheme":"md5"}');
  t.throws(() => readPasswordRecord(dir), /not a kms-appliance password file/, 'a damaged file is an error, not "no password"');
});

t.test('the running admin uses a changed password file at the next look, and reads an unchanged one once', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-pw-watch-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const record = (hash: string): PasswordRecord => ({ user: 'admin', scheme: 'scrypt', N: 2, r: 1, p: 1, salt: 'c2FsdA==', hash });
  let reads = 0;
  const countingRead = (d: string): PasswordRecord | undefined => (reads++, readPasswordRecord(d));
  const logged: string[] = [];
  const log = { info: (_o: object, m?: string) => logged.push(`info ${m}`), error: (_o: object, m?: string) => logged.push(`error ${m}`) };
  const current = watchPasswordFile(dir, log, countingRead);
  t.equal(current(), undefined, 'no file: no password');
  writePasswordRecord(dir, record('Zmlyc3QgaGFzaCwgMTYrIGJ5dGVz'));
  t.equal(current()?.hash, 'Zmlyc3QgaGFzaCwgMTYrIGJ5dGVz', 'a new file counts at once');
  for (let i = 0; i < 5; i++) current();
  t.equal(reads, 2, 'read at the start and once after the change, not on every look');
  writePasswordRecord(dir, record('c2Vjb25kIGhhc2gsIDE2KyBieXRlcw=='));
  t.equal(current()?.hash, 'c2Vjb25kIGhhc2gsIDE2KyBieXRlcw==', 'a replaced file (set-password again) counts at once');
  fs.writeFileSync(passwordFile(dir), JSON.stringify(record('dGhpcmQgb25lLCB3cml0dGVuIGxvbmdlcg==')));
  t.equal(current()?.hash, 'dGhpcmQgb25lLCB3cml0dGVuIGxvbmdlcg==', 'a file rewritten in place counts too');
  fs.writeFileSync(passwordFile(dir), '{"scheme":"md5"}');
  t.equal(current()?.hash, 'dGhpcmQgb25lLCB3cml0dGVuIGxvbmdlcg==', 'a damaged file keeps the previous password');
  fs.rmSync(passwordFile(dir));
  t.equal(current(), undefined, 'a removed file: no password');
  t.equal(reads, 6);
  t.same(logged, [
    'info admin password changed',
    'info admin password changed',
    'info admin password changed',
    'error admin password file unreadable; the previous password stays',
    'info admin password removed',
  ]);
});

t.test('login parsers', async (t) => {
  t.same(
    parseBasic(`Basic ${Buffer.from('admin:pa:ss').toString('base64')}`),
    { user: 'admin', password: 'pa:ss' },
    'the password may hold colons',
  );
  t.equal(parseBasic('Basic !!!'), undefined);
  t.equal(parseBasic(`Basic ${Buffer.from('nocolon').toString('base64')}`), undefined);
  t.equal(parseBasic('Bearer abc'), undefined);
  t.equal(parseBasic(`Basic ${'A'.repeat(5000)}`), undefined, 'oversized');
  t.equal(readCookie('a=1; kms_admin_session=tok; b=2', 'kms_admin_session'), 'tok');
  t.equal(readCookie('kms_admin_sessionx=tok', 'kms_admin_session'), undefined);
  t.equal(throttleKey('192.0.2.1'), '192.0.2.1');
  t.equal(throttleKey('::ffff:192.0.2.1'), '192.0.2.1', 'IPv4-mapped counts as IPv4');
  t.equal(throttleKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(throttleKey('2001:0db8:0001:0002::ffff'), '2001:db8:1:2::/64', 'one /64 however written');
  t.equal(throttleKey('::1'), '0:0:0:0::/64');
});

t.test('Host header parsing', async (t) => {
  t.equal(hostOf('Example.ORG.:8688'), 'example.org');
  t.equal(hostOf('[::1]:8688'), '::1');
  t.equal(hostOf('[::1'), undefined);
  t.equal(hostOf('[::1]x'), undefined);
  t.equal(hostOf('a b'), undefined);
  t.equal(hostOf('host:port'), undefined);
  t.equal(hostOf('a'.repeat(301)), undefined);
  t.equal(hostOf(undefined), undefined);
  t.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(normalizeAddress('2001:DB8:0:0::1'), '2001:db8::1');
});
