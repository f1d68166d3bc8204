// The admin certificate: the self-signed one node-forge makes (RSA 3072, SHA-256, SANs, ~2 years,
// key 0600, reused), `admin cert` printing the fingerprint exactly as openssl does, and the
// checks `config check` and `serve` run on a site's own certificate.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import {
  GENERATED_CERT_FILE,
  GENERATED_KEY_FILE,
  checkCertificatePair,
  checkConfiguredCertificate,
  describeCertificate,
  generateSelfSigned,
  loadOrCreateSelfSigned,
} from '../../src/admin/tls-certificate';
import { main } from '../../src/cli/main';
import { Writable } from 'node:stream';

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  return {
    stream: new Writable({
      write(c, _e, cb) {
        chunks.push(String(c));
        cb();
      },
    }),
    text: () => chunks.join(''),
  };
}

function opensslFingerprint(file: string): string {
  // "sha256 Fingerprint=AA:BB:…" (older OpenSSL: "SHA256 Fingerprint=")
  return execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', file], { encoding: 'utf8' }).trim().split('=')[1]!;
}

/** A certificate for `key` signed by forge, valid for `days` from `from` (for the expiry checks). */
function forgeCert(keyPem: string, from: Date, days: number, cn = 'site.example'): string {
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const c = forge.pki.createCertificate();
  c.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  c.serialNumber = '01';
  c.validity.notBefore = from;
  c.validity.notAfter = new Date(from.getTime() + days * 86_400_000);
  c.setSubject([{ shortName: 'CN', value: cn }]);
  c.setIssuer([{ shortName: 'CN', value: cn }]);
  c.sign(key, forge.md.sha256.create());
  return forge.pki.certificateToPem(c);
}

const rsaPem = (bits = 2048): string =>
  generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();

t.test('the self-signed certificate: RSA 3072, SHA-256, SANs of the name and addresses, about two years', async (t) => {
  const now = new Date('2026-12-04T12:00:00Z');
  const pair = await generateSelfSigned('branch-box', ['192.0.2.10', '2001:db8::10', 'not-an-ip'], now);
  const x = new X509Certificate(pair.certPem);
  t.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 3072);
  t.ok(x.checkPrivateKey(createPrivateKey(pair.keyPem)), 'the key belongs to the certificate');
  t.ok(x.verify(x.publicKey), 'self-signed: verifies with its own key');
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: pair.certPem, encoding: 'utf8' });
  t.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
  t.match(x.subjectAltName ?? '', /DNS:branch-box/);
  t.match(x.subjectAltName ?? '', /IP Address:192\.0\.2\.10/);
  t.match(x.subjectAltName ?? '', /IP Address:2001:DB8:0:0:0:0:0:10/i);
  t.notMatch(x.subjectAltName ?? '', /not-an-ip/);
  const days = (new Date(x.validTo).getTime() - now.getTime()) / 86_400_000;
  t.ok(days > 700 && days < 740, `valid about two years (${days.toFixed(0)} days)`);
  t.ok(new Date(x.validFrom).getTime() <= now.getTime(), 'valid from now (backdated a little)');
  const facts = describeCertificate(pair.certPem);
  t.same(facts.dnsNames, ['branch-box', 'localhost']);
  t.same(facts.ipAddresses, ['192.0.2.10', '2001:db8::10']);
  t.ok(facts.selfSigned);
});

t.test('made once in the data directory with the key 0600, then reused; admin cert prints the fingerprint openssl shows', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cert-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await loadOrCreateSelfSigned(dir, 'branch-box', ['127.0.0.1']);
  t.ok(first.created);
  t.equal(fs.statSync(path.join(dir, GENERATED_KEY_FILE)).mode & 0o777, 0o600, 'key readable by the service only');
  const again = await loadOrCreateSelfSigned(dir, 'branch-box', ['127.0.0.1']);
  t.notOk(again.created);
  t.equal(again.certPem, first.certPem, 'the same certificate after a restart: the fingerprint stays');

  const out = sink();
  const err = sink();
  const code = await main(['admin', 'cert', '--data-dir', dir], { stdout: out.stream, stderr: err.stream, env: {} });
  t.equal(code, 0, err.text());
  const printed = /SHA-256:\s+(\S+)/.exec(out.text())?.[1];
  t.equal(printed, opensslFingerprint(path.join(dir, GENERATED_CERT_FILE)), 'the AA:BB:… form, byte for byte as openssl prints it');
  t.match(out.text(), /Names:\s+DNS:branch-box, DNS:localhost, IP:127\.0\.0\.1/);
  t.match(out.text(), /Valid:\s+.*\(7\d\d days left\)/);

  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cert-none-'));
  t.teardown(() => fs.rmSync(empty, { recursive: true, force: true }));
  const e2 = sink();
  t.equal(await main(['admin', 'cert', '--data-dir', empty], { stdout: sink().stream, stderr: e2.stream, env: {} }), 1);
  t.match(e2.text(), /no certificate .* yet/);
});

t.test("a site's certificate: key match, chain, expiry and the 30-day warning", async (t) => {
  const now = new Date('2026-12-04T12:00:00Z');
  const key = rsaPem();
  const other = rsaPem();
  const good = forgeCert(key, new Date('2026-01-01T00:00:00Z'), 700);
  const ca = forgeCert(other, new Date('2026-01-01T00:00:00Z'), 3000, 'Site CA');
  t.same(checkCertificatePair(good + ca, key, now).errors, [], 'a leaf with its chain after it');
  t.match(checkCertificatePair(good, other, now).errors.join(), /does not belong/);
  t.match(checkCertificatePair(forgeCert(key, new Date('2024-01-01T00:00:00Z'), 365), key, now).errors.join(), /expired/);
  const soon = checkCertificatePair(forgeCert(key, new Date('2026-01-01T00:00:00Z'), 350), key, now);
  t.same(soon.errors, []);
  t.match(soon.warnings.join(), /expires in 1\d days/);
  t.match(checkCertificatePair('junk', key, now).errors.join(), /no PEM certificate/);
  const broken = good + '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
  t.match(checkCertificatePair(broken, key, now).errors.join(), /certificate 2 of the chain does not parse/);
  // A PKCS#8 key (what many tools write) is read too.
  const pkcs8 = createPrivateKey(key).export({ type: 'pkcs8', format: 'pem' }).toString();
  t.same(checkCertificatePair(good, pkcs8, now).errors, []);
  // An ECDSA certificate (forge reads RSA only) is checked by node:crypto.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-ec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(dir, 'k.pem'),
      '-out',
      path.join(dir, 'c.pem'),
      '-days',
      '400',
      '-subj',
      '/CN=ec.example',
      '-addext',
      'subjectAltName=DNS:ec.example',
    ],
    { stdio: 'ignore' },
  );
  const ec = checkConfiguredCertificate({ enabled: true, certFile: path.join(dir, 'c.pem'), keyFile: path.join(dir, 'k.pem') });
  t.same(ec.errors, []);
  t.same(describeCertificate(fs.readFileSync(path.join(dir, 'c.pem'), 'utf8')).dnsNames, ['ec.example']);
  t.equal(
    describeCertificate(fs.readFileSync(path.join(dir, 'c.pem'), 'utf8')).sha256Fingerprint,
    opensslFingerprint(path.join(dir, 'c.pem')),
  );
  t.match(
    checkConfiguredCertificate({ enabled: true, certFile: path.join(dir, 'missing.pem'), keyFile: path.join(dir, 'k.pem') }).errors.join(),
    /ENOENT/,
  );
});

t.test('config check verifies the configured certificate and warns before it expires', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cfg-cert-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const key = rsaPem();
  const expiring = forgeCert(key, new Date(Date.now() - 300 * 86_400_000), 310);
  fs.writeFileSync(path.join(dir, 'c.pem'), expiring);
  fs.writeFileSync(path.join(dir, 'k.pem'), key);
  fs.writeFileSync(path.join(dir, 'wrong.pem'), rsaPem());
  const cfg = (keyFile: string): string => {
    const f = path.join(dir, `config-${path.basename(keyFile)}.yaml`);
    fs.writeFileSync(f, `admin:\n  tls:\n    enabled: true\n    certFile: ${path.join(dir, 'c.pem')}\n    keyFile: ${keyFile}\n`);
    return f;
  };
  const e1 = sink();
  t.equal(await main(['config', 'check', cfg(path.join(dir, 'k.pem'))], { stdout: sink().stream, stderr: e1.stream, env: {} }), 0);
  t.match(e1.text(), /warning: admin\.tls\.certFile .* expires in \d+ days/);
  const e2 = sink();
  t.equal(await main(['config', 'check', cfg(path.join(dir, 'wrong.pem'))], { stdout: sink().stream, stderr: e2.stream, env: {} }), 2);
  t.match(e2.text(), /private key does not belong/);
});
