// Red-team findings against the admin listener, each shown by the attack that found it: password
// guesses sent in parallel (pipelined or over many connections) must meet the same throttle as
// guesses sent one by one, and a damaged password file must never let any password in.
import fs from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { startHarness } from '../server/appliance-harness';
import { storeCheapPassword } from './cheap-password';
import { request, basic } from './http-client';
import { passwordFile, readPasswordRecord, verifyPassword, type PasswordRecord } from '../../src/admin/password';

const PASSWORD = 'correct horse battery';
const FREE_FAILURES = 5; // README "Remote administration": 5 wrong passwords, then the address waits

const statuses = (text: string): number[] => [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));

t.test('guesses pipelined on one connection meet the throttle: at most 5 are checked', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  storeCheapPassword(h.dataDir, PASSWORD);
  const port = h.appliance.adminAddresses[0]!.port;
  const guesses = 30;
  let pipelined = '';
  for (let i = 0; i < guesses; i++) {
    pipelined += `GET /api/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${basic('admin', `guess-${i}`).authorization}\r\n\r\n`;
  }
  // Read until every answer came (the server keeps the connection open).
  let out = '';
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    s.on('data', (c: Buffer) => {
      out += c.toString('latin1');
      if (statuses(out).length >= guesses) {
        clearTimeout(timer);
        resolve();
      }
    });
    s.on('error', () => undefined);
    s.write(pipelined);
  });
  s.destroy();
  const codes = statuses(out);
  t.equal(codes.length, guesses, 'every request answered');
  const checked = codes.filter((c) => c === 401).length;
  t.ok(checked <= FREE_FAILURES, `${checked} guesses checked, the rest throttled`);
  t.equal(codes.filter((c) => c === 429).length, guesses - checked);
  const logged = h.logs.filter((l) => l['code'] === 'KMS_ERR_ADMIN_LOGIN_FAILED').length;
  t.ok(logged <= FREE_FAILURES, `${logged} failures logged`);
});

t.test('guesses over parallel connections meet the throttle; a good client in parallel gets in', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  storeCheapPassword(h.dataDir, PASSWORD);
  const router = h.appliance.admin!.router;
  const from = (remoteAddress: string, password: string) =>
    router.handle({
      method: 'GET',
      url: '/api/status',
      headers: { host: 'localhost', ...basic('admin', password) },
      remoteAddress,
      localAddress: '127.0.0.1',
      tls: false,
    });
  const attack = Array.from({ length: 20 }, (_, i) => from('192.0.2.66', `guess-${i}`));
  const good = Array.from({ length: 6 }, () => from('192.0.2.10', PASSWORD));
  const bad = (await Promise.all(attack)).map((r) => r.status);
  t.ok(bad.filter((s) => s === 401).length <= FREE_FAILURES, `checked: ${bad.filter((s) => s === 401).length} of 20`);
  t.same(
    (await Promise.all(good)).map((r) => r.status),
    [200, 200, 200, 200, 200, 200],
    'the good client, six requests at once, all answered',
  );
});

t.test('a damaged password file never lets a password in', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  storeCheapPassword(h.dataDir, PASSWORD);
  const port = h.appliance.adminAddresses[0]!.port;
  const file = passwordFile(h.dataDir);
  const good = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  t.equal((await request(port, '/api/status', { headers: basic('admin', PASSWORD) })).status, 200, 'the password is in use');
  // A hash that decodes to nothing (empty, or not base64) compared equal to a key derived at length 0.
  for (const damage of [{ hash: '' }, { hash: '!!!!' }, { salt: '', hash: '' }]) {
    fs.writeFileSync(file, JSON.stringify({ ...good, ...damage }));
    t.throws(() => readPasswordRecord(h.dataDir), /not a kms-appliance password file/, `${JSON.stringify(damage)} refused when read`);
    t.equal(
      await verifyPassword({ ...(good as unknown as PasswordRecord), ...damage }, 'admin', 'anything at all'),
      false,
      'verification says no',
    );
    const r = await request(port, '/api/status', { headers: basic('admin', 'anything at all') });
    t.not(r.status, 200, `${JSON.stringify(damage)}: not let in (${r.status})`);
  }
  fs.writeFileSync(file, JSON.stringify(good));
  t.equal((await request(port, '/api/status', { headers: basic('admin', PASSWORD) })).status, 200, 'the repaired file works');
});
