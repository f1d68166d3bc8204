// `kms-appliance admin cert` and `kms-appliance admin set-password`: what the admin needs before
// reaching the page from another machine — the certificate's fingerprint to compare on first
// connect, and the password (stored as a scrypt hash only).
import fs from 'node:fs';
import path from 'node:path';
import { CommandExit, EXIT, UsageProblem, defineCommand, type Command, type CommandIo } from '../command';
import { COMMON_OPTIONS } from '../inventory-access';
import { checkReadable, locate } from '../locations';
import { loadConfig } from '../../config/load';
import type { AppConfig } from '../../config/defaults';
import { GENERATED_CERT_FILE, checkCertificatePair, describeCertificate, type CertificateFacts } from '../../admin/tls-certificate';
import {
  ADMIN_USER,
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  hashPassword,
  passwordFile,
  writePasswordRecord,
} from '../../admin/password';

const COMMON = `  -d, --data-dir DIR  The appliance's data directory (default: store.dataDir; on an installed box
                      the service's /var/lib/kms-appliance; else ~/.local/state/kms-appliance).
  -c, --config FILE   Configuration file, for store.dataDir and admin.tls (default:
                      /etc/kms-appliance/config.yaml when it exists).
  -h, --help          Show this help.`;

const CERT_HELP = `Usage: kms-appliance admin cert [--data-dir DIR] [--config FILE]

Print the admin page's certificate: subject, names (SANs), validity and SHA-256 fingerprint,
in the AA:BB:… form a browser shows, so it can be compared on first connect. The certificate is
admin.tls.certFile when set, else the self-signed one made at the first start with
admin.tls.enabled.

Options:
${COMMON}

Exit codes: 0 printed, 1 no certificate yet or unreadable, 2 usage or configuration error.
`;

const PASSWORD_HELP = `Usage: kms-appliance admin set-password [--data-dir DIR] [--config FILE]

Set the password of the admin page's user "admin". Reads one line from standard input (asked
twice, without echo, on a terminal), at least ${MIN_PASSWORD_LENGTH} characters, and stores only a scrypt hash
with its salt in the data directory (${path.basename(passwordFile('/'))}, mode 0600). Once set, every admin
request needs it (HTTP Basic or the login form); a running server picks it up within a second.

  printf '%s\\n' "$PASSWORD" | kms-appliance admin set-password

Options:
${COMMON}

Exit codes: 0 stored, 1 cannot write the file, 2 usage error or unusable password.
`;

interface Common {
  config: AppConfig;
  dataDir: string;
}

/** The configuration and data directory, found like every other command's (locations.ts). */
function settings(values: { 'data-dir'?: string | undefined; config?: string | undefined }, io: CommandIo): Common {
  const where = locate({ config: values.config, dataDir: values['data-dir'], env: io.env });
  const unreadable = where.configFile === undefined ? undefined : checkReadable(where.configFile);
  if (unreadable) {
    io.stderr.write(`kms-appliance: ${unreadable}\n`);
    throw new CommandExit(EXIT.FAILURE);
  }
  const config = loadConfig(where.configFile);
  return { config, dataDir: where.dataDir(config.store.dataDir) };
}

function day(d: Date): string {
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

function formatCertificate(file: string, f: CertificateFacts, now: Date = new Date()): string {
  const left = Math.floor((f.notAfter.getTime() - now.getTime()) / 86_400_000);
  const names = [...f.dnsNames.map((n) => `DNS:${n}`), ...f.ipAddresses.map((a) => `IP:${a}`)];
  return [
    `Certificate: ${file}${f.selfSigned ? ' (self-signed)' : ''}`,
    `Subject:     ${f.subject}`,
    `Issuer:      ${f.issuer}`,
    `Names:       ${names.join(', ') || '(none)'}`,
    `Valid:       ${day(f.notBefore)} to ${day(f.notAfter)} (${left >= 0 ? `${left} days left` : 'EXPIRED'})`,
    `SHA-256:     ${f.sha256Fingerprint}`,
    '',
  ].join('\n');
}

const cert = defineCommand({
  name: 'admin cert',
  summary: "print the admin page certificate's names, validity and SHA-256 fingerprint",
  help: CERT_HELP,
  options: COMMON_OPTIONS,
  run({ values, io }) {
    const c = settings(values, io);
    const file = c.config.admin.tls.certFile || path.join(c.dataDir, GENERATED_CERT_FILE);
    let pem: string;
    try {
      pem = fs.readFileSync(file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      io.stderr.write(
        e.code === 'ENOENT' && !c.config.admin.tls.certFile
          ? `kms-appliance admin cert: no certificate in ${c.dataDir} yet; it is made at the first start with admin.tls.enabled: true\n`
          : `kms-appliance admin cert: cannot read ${file}: ${e.code ?? e.message}\n`,
      );
      return EXIT.FAILURE;
    }
    let facts: CertificateFacts;
    try {
      facts = describeCertificate(pem);
    } catch (err) {
      io.stderr.write(`kms-appliance admin cert: ${file} is not a PEM certificate: ${(err as Error).message}\n`);
      return EXIT.FAILURE;
    }
    io.stdout.write(formatCertificate(file, facts));
    if (c.config.admin.tls.certFile) {
      try {
        const check = checkCertificatePair(pem, fs.readFileSync(c.config.admin.tls.keyFile, 'utf8'));
        for (const p of [...check.errors, ...check.warnings]) io.stderr.write(`kms-appliance admin cert: ${p}\n`);
      } catch (err) {
        io.stderr.write(`kms-appliance admin cert: cannot read ${c.config.admin.tls.keyFile}: ${(err as Error).message}\n`);
      }
    }
    return EXIT.OK;
  },
});

/** Reads one line; on a terminal without echo (raw mode), so the password never appears on screen. */
function readSecretLine(
  input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown },
  prompt: string,
  out: NodeJS.WritableStream,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const tty = input.isTTY === true && typeof input.setRawMode === 'function';
    if (tty) {
      out.write(prompt);
      input.setRawMode!(true);
    }
    let text = '';
    const finish = (value: string | undefined): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      if (tty) {
        input.setRawMode!(false);
        out.write('\n');
      }
      input.pause();
      resolve(value);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of String(chunk)) {
        if (ch === '\n' || ch === '\r') {
          finish(text);
          return;
        }
        if (tty && ch === '\u0003') {
          finish(undefined); // Ctrl-C
          return;
        }
        if (tty && (ch === '\u007f' || ch === '\b')) {
          text = text.slice(0, -1);
          continue;
        }
        text += ch;
        if (text.length > MAX_PASSWORD_LENGTH) {
          finish(text);
          return;
        }
      }
    };
    const onEnd = (): void => finish(text === '' ? undefined : text);
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
  });
}

const setPassword = defineCommand({
  name: 'admin set-password',
  summary: 'set the admin page password (read from standard input)',
  help: PASSWORD_HELP,
  options: COMMON_OPTIONS,
  async run({ values, io }) {
    const c = settings(values, io);
    const stdin = (io as CommandIo & { stdin?: NodeJS.ReadStream }).stdin ?? process.stdin;
    const first = await readSecretLine(stdin, `Password for ${ADMIN_USER}: `, io.stderr);
    if (first === undefined || first === '') throw new UsageProblem('no password given on standard input');
    if (first.length < MIN_PASSWORD_LENGTH) throw new UsageProblem(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
    if (first.length > MAX_PASSWORD_LENGTH) throw new UsageProblem(`the password must have at most ${MAX_PASSWORD_LENGTH} characters`);
    if (stdin.isTTY) {
      const again = await readSecretLine(stdin, 'Again: ', io.stderr);
      if (again !== first) throw new UsageProblem('the two passwords differ; nothing changed');
    }
    try {
      writePasswordRecord(c.dataDir, await hashPassword(first));
    } catch (err) {
      io.stderr.write(
        `kms-appliance admin set-password: cannot write ${passwordFile(c.dataDir)}: ` +
          `${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`,
      );
      return EXIT.FAILURE;
    }
    io.stdout.write(`Password of ${ADMIN_USER} stored in ${passwordFile(c.dataDir)} (scrypt hash only).\n`);
    return EXIT.OK;
  },
});

export const commands: readonly Command[] = [cert, setPassword];
