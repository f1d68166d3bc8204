// The admin listener's certificate: the self-signed one made at first start (node-forge builds and
// signs it; node:crypto makes the RSA key on the thread pool, because forge's pure-JS key search
// takes seconds), the site's own PEM checked before it is used, and the facts `admin cert` prints.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { X509Certificate, createPrivateKey, generateKeyPair } from 'node:crypto';
import type Forge from 'node-forge';
import { readSmallFile } from './small-file';

let forgeModule: typeof Forge | undefined;
/** node-forge is large: loaded on first use, so a plain-HTTP listener and most commands never carry it. */
function forge(): typeof Forge {
  forgeModule ??= require('node-forge') as typeof Forge;
  return forgeModule;
}

export const GENERATED_CERT_FILE = 'admin-tls.crt';
export const GENERATED_KEY_FILE = 'admin-tls.key';
/** RSA 3072: the NIST floor for keys used beyond 2030. */
const RSA_BITS = 3072;
/** About two years: long enough for a box nobody visits, short enough to be re-made before keys age. */
const VALIDITY_DAYS = 730;
const DAY_MS = 86_400_000;
/** `config check` warns this long before the site's certificate expires. */
const EXPIRY_WARNING_DAYS = 30;

export interface CertificateFacts {
  readonly subject: string;
  readonly issuer: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER certificate as `AA:BB:…`, as browsers and `openssl x509 -fingerprint -sha256` show it. */
  readonly sha256Fingerprint: string;
  readonly selfSigned: boolean;
}

export interface CertificatePair {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface PairCheck {
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  /** The leaf certificate, when it parsed. */
  readonly facts?: CertificateFacts;
}

function colonHex(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':');
}

/** Every PEM certificate block of a file, leaf first. */
function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

function dnOf(attrs: Forge.pki.CertificateField[]): string {
  return attrs.map((a) => `${a.shortName ?? a.name ?? a.type}=${String(a.value)}`).join(', ');
}

/** What a certificate says, read with node-forge (RSA) or node:crypto (other key types). */
export function describeCertificate(pem: string): CertificateFacts {
  const der = Buffer.from(forge().pem.decode(pem)[0]?.body ?? '', 'binary');
  if (der.length === 0) throw new Error('no PEM certificate found');
  const sha256Fingerprint = colonHex(Buffer.from(forge().md.sha256.create().update(der.toString('binary')).digest().getBytes(), 'binary'));
  let cert: Forge.pki.Certificate;
  try {
    cert = forge().pki.certificateFromAsn1(forge().asn1.fromDer(der.toString('binary')));
  } catch {
    // node-forge reads RSA certificates only; a site's ECDSA certificate is read by node:crypto.
    const x = new X509Certificate(der);
    const sans = (x.subjectAltName ?? '').split(/,\s*/).filter(Boolean);
    return {
      subject: x.subject.replace(/\n/g, ', '),
      issuer: x.issuer.replace(/\n/g, ', '),
      dnsNames: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
      ipAddresses: sans.filter((s) => s.startsWith('IP Address:')).map((s) => s.slice(11)),
      notBefore: new Date(x.validFrom),
      notAfter: new Date(x.validTo),
      sha256Fingerprint,
      selfSigned: x.subject === x.issuer,
    };
  }
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value: string; ip?: string }[] } | null;
  const alt = san?.altNames ?? [];
  return {
    subject: dnOf(cert.subject.attributes),
    issuer: dnOf(cert.issuer.attributes),
    dnsNames: alt.filter((a) => a.type === 2).map((a) => a.value),
    ipAddresses: alt.filter((a) => a.type === 7).map((a) => a.ip ?? a.value),
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
    sha256Fingerprint,
    selfSigned: cert.isIssuer(cert),
  };
}

function newRsaKeyPem(): Promise<string> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: RSA_BITS, publicExponent: 0x10001 }, (err, _pub, key) => {
      if (err) reject(err);
      else resolve(key.export({ type: 'pkcs1', format: 'pem' }).toString());
    });
  });
}

/** A self-signed certificate for `hostName` and `addresses` (SANs), SHA-256, ~2 years. */
export async function generateSelfSigned(hostName: string, addresses: readonly string[], now: Date = new Date()): Promise<CertificatePair> {
  const keyPem = await newRsaKeyPem();
  const key = forge().pki.privateKeyFromPem(keyPem) as Forge.pki.rsa.PrivateKey;
  const cert = forge().pki.createCertificate();
  cert.publicKey = forge().pki.setRsaPublicKey(key.n, key.e);
  // A random positive 128-bit serial: two boxes with the same name never present the same one.
  cert.serialNumber = '00' + forge().util.bytesToHex(forge().random.getBytesSync(16));
  // Backdated an hour so a client whose clock is a little behind still accepts it.
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + VALIDITY_DAYS * DAY_MS);
  const attrs = [
    { shortName: 'CN', value: hostName },
    { shortName: 'O', value: 'kms-appliance (self-signed)' },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  const names = [...new Set([hostName, 'localhost'])].filter((n) => n !== '');
  const ips = [...new Set(addresses)].filter((a) => net.isIP(a) !== 0);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...names.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))] },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge().md.sha256.create());
  return { certPem: forge().pki.certificateToPem(cert), keyPem };
}

/**
 * The generated pair in `dataDir`, made on first use and reused after: the fingerprint an admin
 * compared once stays the same across restarts. The key is written 0600 before anything is in it.
 * A pair that cannot be served (a file cut short by a power cut, unreadable, a key of another
 * certificate) or that expires within 30 days is made anew, the old files kept aside as `*.old`:
 * served as it was, a damaged pair stopped the whole appliance with a bare OpenSSL error, and an
 * expired one is refused by every browser. `replaced` says why.
 */
export async function loadOrCreateSelfSigned(
  dataDir: string,
  hostName: string,
  addresses: readonly string[],
  now: Date = new Date(),
): Promise<CertificatePair & { created: boolean; replaced?: string }> {
  const certFile = path.join(dataDir, GENERATED_CERT_FILE);
  const keyFile = path.join(dataDir, GENERATED_KEY_FILE);
  let replaced: string | undefined;
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    try {
      const certPem = readSmallFile(certFile);
      const keyPem = readSmallFile(keyFile);
      const check = checkCertificatePair(certPem, keyPem, now);
      if (check.errors.length === 0 && check.warnings.length === 0) return { certPem, keyPem, created: false };
      replaced = check.errors[0] ?? check.warnings[0];
    } catch (err) {
      replaced = (err as Error).message;
    }
    for (const f of [certFile, keyFile]) fs.renameSync(f, `${f}.old`);
  }
  const pair = await generateSelfSigned(hostName, addresses, now);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  writeNew(keyFile, pair.keyPem, 0o600);
  writeNew(certFile, pair.certPem, 0o644);
  return { ...pair, created: true, ...(replaced === undefined ? {} : { replaced }) };
}

/** Write through a fresh temporary file and rename: never follows a planted link, never half-written. */
function writeNew(file: string, text: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * Checks the site's certificate file and key before they are served: every certificate of the
 * chain parses, the key belongs to the first one, it is valid now, and how soon it expires.
 */
export function checkCertificatePair(certPem: string, keyPem: string, now: Date = new Date()): PairCheck {
  const errors: string[] = [];
  const warnings: string[] = [];
  const blocks = splitPemCertificates(certPem);
  if (blocks.length === 0) return { errors: ['no PEM certificate (-----BEGIN CERTIFICATE-----) in the certificate file'], warnings };
  let facts: CertificateFacts | undefined;
  blocks.forEach((block, i) => {
    try {
      const f = describeCertificate(block);
      if (i === 0) facts = f;
    } catch (err) {
      errors.push(`certificate ${i + 1} of the chain does not parse: ${(err as Error).message}`);
    }
  });
  if (!facts) return { errors, warnings };
  if (!keyMatches(blocks[0]!, keyPem, errors)) return { errors, warnings, facts };
  if (facts.notAfter.getTime() <= now.getTime()) errors.push(`the certificate expired on ${facts.notAfter.toISOString()}`);
  else if (facts.notBefore.getTime() > now.getTime()) errors.push(`the certificate is not valid before ${facts.notBefore.toISOString()}`);
  else if (facts.notAfter.getTime() - now.getTime() < EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.floor((facts.notAfter.getTime() - now.getTime()) / DAY_MS);
    warnings.push(`the certificate expires in ${days} day${days === 1 ? '' : 's'} (${facts.notAfter.toISOString()}); renew it and reload`);
  }
  return { errors, warnings, facts };
}

function keyMatches(leafPem: string, keyPem: string, errors: string[]): boolean {
  let cert: Forge.pki.Certificate | undefined;
  try {
    cert = forge().pki.certificateFromPem(leafPem);
  } catch {
    // not RSA: node:crypto compares the key below
  }
  if (cert) {
    let key: Forge.pki.rsa.PrivateKey;
    try {
      key = forge().pki.privateKeyFromPem(keyPem) as Forge.pki.rsa.PrivateKey;
    } catch {
      // PKCS#8 or an encrypted key forge cannot read as RSA: let node:crypto say what it is
      try {
        key = forge().pki.privateKeyFromPem(
          createPrivateKey(keyPem).export({ type: 'pkcs1', format: 'pem' }).toString(),
        ) as Forge.pki.rsa.PrivateKey;
      } catch (err) {
        errors.push(`the key file holds no usable RSA private key: ${(err as Error).message}`);
        return false;
      }
    }
    const pub = cert.publicKey as Forge.pki.rsa.PublicKey;
    if (pub.n.compareTo(key.n) !== 0 || pub.e.compareTo(key.e) !== 0) {
      errors.push('the private key does not belong to the certificate (the first one in the file)');
      return false;
    }
    return true;
  }
  try {
    if (!new X509Certificate(leafPem).checkPrivateKey(createPrivateKey(keyPem))) {
      errors.push('the private key does not belong to the certificate (the first one in the file)');
      return false;
    }
  } catch (err) {
    errors.push(`the key file holds no usable private key: ${(err as Error).message}`);
    return false;
  }
  return true;
}

/**
 * Reads and checks the configured pair; throws with one line per problem.
 * @public (the admin service requires this module lazily, which knip cannot follow)
 */
export function readSitePair(certFile: string, keyFile: string, now: Date = new Date()): CertificatePair & PairCheck {
  const certPem = readSmallFile(certFile);
  const keyPem = readSmallFile(keyFile);
  return { certPem, keyPem, ...checkCertificatePair(certPem, keyPem, now) };
}

/** `config check`: the configured certificate files, checked like `serve` would, plus the expiry warning. */
export function checkConfiguredCertificate(
  tls: { readonly enabled: boolean; readonly certFile: string; readonly keyFile: string },
  now: Date = new Date(),
): { errors: string[]; warnings: string[] } {
  if (!tls.certFile) return { errors: [], warnings: [] };
  try {
    const r = readSitePair(tls.certFile, tls.keyFile, now);
    return {
      errors: r.errors.map((e) => `admin.tls.certFile ${tls.certFile}: ${e}`),
      warnings: r.warnings.map((w) => `admin.tls.certFile ${tls.certFile}: ${w}`),
    };
  } catch (err) {
    return { errors: [`admin.tls: ${(err as Error).message}`], warnings: [] };
  }
}
