// The admin listener over HTTPS: the generated certificate is what the listener presents (same
// fingerprint as `admin cert`), HSTS, Basic over TLS, a renewed site certificate loaded by reload,
// and the rule that refuses an admin listener beyond loopback without TLS and a password.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import forge from 'node-forge';
import { startHarness, testConfig } from '../server/appliance-harness';
import { request, basic } from './http-client';
import { storeCheapPassword } from './cheap-password';
import { GENERATED_CERT_FILE, describeCertificate } from '../../src/admin/tls-certificate';
import { checkAdminExposure } from '../../src/admin/admin-service';
import { parseListenAddress, type ListenAddress } from '../../src/config/listen-address';
import { applyOverrides } from '../../src/cli/appliance';
import { main } from '../../src/cli/main';

const PASSWORD = 'correct horse battery';
const listen = (...specs: string[]): ListenAddress[] => specs.map((s) => parseListenAddress(s) as ListenAddress);

function siteCertificate(cn: string): { cert: string; key: string } {
  const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const c = forge.pki.createCertificate();
  c.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  c.serialNumber = '02';
  c.validity.notBefore = new Date(Date.now() - 86_400_000);
  c.validity.notAfter = new Date(Date.now() + 365 * 86_400_000);
  c.setSubject([{ shortName: 'CN', value: cn }]);
  c.setIssuer([{ shortName: 'CN', value: cn }]);
  c.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: cn }] }]);
  c.sign(key, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(c), key: keyPem };
}

t.test('HTTPS with the generated certificate, HSTS, and Basic login', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
    c.admin.tls.enabled = true;
  });
  storeCheapPassword(h.dataDir, PASSWORD);
  const port = h.appliance.adminAddresses[0]!.port;
  const health = await request(port, '/healthz', { tls: true });
  t.equal(health.status, 200);
  t.equal(health.headers['strict-transport-security'], 'max-age=31536000');
  const generated = describeCertificate(fs.readFileSync(path.join(h.dataDir, GENERATED_CERT_FILE), 'utf8'));
  t.equal(health.certificate?.fingerprint256, generated.sha256Fingerprint, 'the listener presents the certificate admin cert describes');
  t.match(health.certificate?.subjectaltname ?? '', /IP Address:127\.0\.0\.1/);
  t.equal((await request(port, '/api/status', { tls: true })).status, 401);
  t.equal((await request(port, '/api/status', { tls: true, headers: basic('admin', PASSWORD) })).status, 200);
  const plain = await request(port, '/healthz').catch((e: NodeJS.ErrnoException) => ({ status: 0, body: e.code ?? '' }));
  t.not(plain.status, 200, 'no plain HTTP on a TLS listener');
});

t.test("the site's certificate is served, and reload swaps in the renewed one", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-site-cert-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const certFile = path.join(dir, 'admin.crt');
  const keyFile = path.join(dir, 'admin.key');
  const first = siteCertificate('kms.branch.example');
  fs.writeFileSync(certFile, first.cert);
  fs.writeFileSync(keyFile, first.key);
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
    c.admin.tls = { enabled: true, certFile, keyFile };
  });
  const port = h.appliance.adminAddresses[0]!.port;
  t.equal((await request(port, '/healthz', { tls: true })).certificate?.fingerprint256, describeCertificate(first.cert).sha256Fingerprint);
  const renewed = siteCertificate('kms.branch.example');
  fs.writeFileSync(certFile, renewed.cert);
  fs.writeFileSync(keyFile, renewed.key);
  const report = h.appliance.reload(h.appliance.config);
  t.ok(report.applied.includes('admin.tls certificate'));
  t.equal(
    (await request(port, '/healthz', { tls: true })).certificate?.fingerprint256,
    describeCertificate(renewed.cert).sha256Fingerprint,
    'new connections get the renewed certificate',
  );
  // A broken renewal is refused and the running certificate stays.
  fs.writeFileSync(keyFile, siteCertificate('other').key);
  const refused = h.appliance.reload(h.appliance.config);
  t.notOk(refused.applied.includes('admin.tls certificate'), 'the rest of the reload applies');
  t.match(h.logs.find((l) => l['code'] === 'KMS_ERR_CONFIG_ADMIN_TLS')?.['msg'], /does not belong.*the running certificate stays/);
  t.equal(
    (await request(port, '/healthz', { tls: true })).certificate?.fingerprint256,
    describeCertificate(renewed.cert).sha256Fingerprint,
  );
});

t.test('an admin listener beyond loopback needs TLS and a password', async (t) => {
  t.doesNotThrow(
    () => checkAdminExposure(listen('127.0.0.1:8688', '[::1]:8688'), false, false, '/d'),
    'loopback without either: first steps',
  );
  t.doesNotThrow(() => checkAdminExposure(listen('0.0.0.0:8688'), true, true, '/d'));
  for (const [tls, pw, missing] of [
    [false, false, /admin\.tls\.enabled: true and a password/],
    [true, false, /needs a password \(kms-appliance admin set-password --data-dir \/d\)/],
    [false, true, /needs admin\.tls\.enabled: true,/],
  ] as const) {
    t.throws(() => checkAdminExposure(listen('192.0.2.1:8688', '127.0.0.1:8688'), tls, pw, '/d'), {
      code: 'KMS_ERR_CONFIG_ADMIN_EXPOSED',
      message: missing,
    });
  }
  t.throws(() => checkAdminExposure(listen('[::]:8688'), true, false, '/d'), { message: /\[::\]:8688 is not on loopback/ });

  // serve --admin-listen replaces admin.listen, and the rule applies to it: exit 2, one line.
  t.same(applyOverrides(testConfig(), { adminListen: ['0.0.0.0:9999'] }).admin.listen, ['0.0.0.0:9999']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-exposed-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let err = '';
  const stderr = new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) });
  const stdout = new Writable({ write: (_c, _e, cb) => cb() });
  const code = await main(['serve', '--listen', '127.0.0.1:0', '--admin-listen', '0.0.0.0:0', '--data-dir', dir], {
    stdout,
    stderr,
    env: {},
  });
  t.equal(code, 2);
  const lines = err.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(
    lines[0],
    /^kms-appliance serve: admin listener 0\.0\.0\.0:0 is not on loopback: it needs admin\.tls\.enabled: true and a password/,
  );
});
