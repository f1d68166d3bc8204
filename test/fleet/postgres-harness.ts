// A throw-away PostgreSQL server for the fleet tests: a copy of a cluster initdb made once (see
// clusterTemplate) in a temporary directory, TLS with a CA and server certificate made for the
// tests, scram-sha-256 passwords, listening on a free loopback port only. initdb and postgres refuse to run as root, so under
// root (CI) every server command runs as the `postgres` system user of the Debian package, owning the directory.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';

const SUPERUSER = 'postgres';

export interface PgServer {
  readonly host: string;
  readonly port: number;
  /** PEM of the CA that signed the server certificate (for the clients' caFile). */
  readonly caFile: string;
  /** The temporary directory holding the cluster, certificates and password files. */
  readonly dir: string;
  readonly superPassword: string;
  /** A connected superuser client on `database` (TLS verified); the caller ends it. */
  connectAsSuperuser(database?: string): Promise<Client>;
  /** Writes a 0600 password file readable by this process (the appliance side). */
  writePasswordFile(name: string, password: string, mode?: number): string;
  /** Stops the server (fast shutdown: sessions are cut like a WAN outage). */
  stop(): void;
  /** Starts it again on the same port. */
  start(): void;
  /** Stops for good and removes the directory. */
  destroy(): void;
}

/** The newest installed PostgreSQL's bin directory (any Debian version). */
function findPostgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

const asRoot = process.getuid?.() === 0;

function runAsServerUser(bin: string, args: readonly string[]): string {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, [...args]];
  return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', [...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A CA and a server certificate for 127.0.0.1 / localhost, signed by it. */
export function makeCertificates(
  dir: string,
  cn = 'localhost',
  altNames = 'IP:127.0.0.1,DNS:localhost',
): { ca: string; cert: string; key: string } {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=kms-fleet-test-ca',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    ],
    dir,
  );
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', 'server.key', '-out', 'server.csr'], dir);
  fs.writeFileSync(path.join(dir, 'san.ext'), `subjectAltName=${altNames}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'san.ext',
      '-out',
      'server.pem',
    ],
    dir,
  );
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

/** What initdb and the certificates produce, independent of the port: made once, copied per test file. */
interface ClusterTemplate {
  /** Holds data/, certs/ and superuser.pw. */
  readonly dir: string;
  readonly superPassword: string;
}

/**
 * initdb and two RSA keys cost about a second per test file: every fleet test file copies one
 * template cluster instead, made by the first file that needs it. The name carries the version,
 * the user and the day (the certificates are valid for two days); it appears by rename only once
 * complete, so parallel test files either find a whole template or make their own and keep the
 * first. Templates of other days are removed.
 */
function clusterTemplate(bin: string): ClusterTemplate {
  const version = path.basename(path.dirname(bin));
  const prefix = `kms-fleet-pg-template-${version}-${process.getuid?.() ?? 0}-`;
  const name = prefix + new Date().toISOString().slice(0, 10);
  const dir = path.join(os.tmpdir(), name);
  if (!fs.existsSync(path.join(dir, 'superuser.pw'))) {
    const building = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-pg-building-'));
    try {
      initCluster(bin, building);
      fs.renameSync(building, dir);
    } catch (err) {
      fs.rmSync(building, { recursive: true, force: true });
      // Another test file renamed its template into place first: use that one.
      if (!fs.existsSync(path.join(dir, 'superuser.pw'))) throw err;
    }
    for (const old of fs.readdirSync(os.tmpdir())) {
      if (old.startsWith(prefix) && old !== name) fs.rmSync(path.join(os.tmpdir(), old), { recursive: true, force: true });
    }
  }
  return { dir, superPassword: fs.readFileSync(path.join(dir, 'superuser.pw'), 'utf8').trim() };
}

/** initdb, certificates and pg_hba.conf into `dir` (data/, certs/, superuser.pw). */
function initCluster(bin: string, dir: string): void {
  const data = path.join(dir, 'data');
  const certs = path.join(dir, 'certs');
  fs.mkdirSync(certs);
  const superPassword = `su-${Math.random().toString(36).slice(2)}`;
  const pwfile = path.join(dir, 'superuser.pw');
  fs.writeFileSync(pwfile, superPassword + '\n', { mode: 0o600 });
  const { key } = makeCertificates(certs);
  fs.chmodSync(key, 0o600);
  if (asRoot) {
    // The parent temp dir must be enterable by postgres; the cluster directory is its own.
    fs.chmodSync(dir, 0o755);
    execFileSync('chown', ['-R', 'postgres:postgres', certs, pwfile]);
    fs.mkdirSync(data, { mode: 0o700 });
    execFileSync('chown', ['postgres:postgres', data]);
  }
  runAsServerUser(path.join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    SUPERUSER,
    '--pwfile',
    pwfile,
    '--auth-host=scram-sha-256',
    '--auth-local=scram-sha-256',
    '-E',
    'UTF8',
    '--no-sync',
    '--locale=C',
  ]);
  // TLS only, scram only, loopback only: the shape the README asks head office to configure.
  fs.writeFileSync(path.join(data, 'pg_hba.conf'), 'hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n');
  if (asRoot) execFileSync('chown', ['postgres:postgres', path.join(data, 'pg_hba.conf')]);
}

/** Starts a fresh cluster (a copy of the template); throws when PostgreSQL is not installed. */
export async function startPostgres(): Promise<PgServer> {
  const bin = findPostgresBin();
  if (bin === undefined) throw new Error('PostgreSQL is not installed (apt-get install postgresql; scripts/ci-apt.sh does it)');
  const template = clusterTemplate(bin);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-pg-'));
  // cp -a keeps the owner (postgres, under root) and the modes initdb and the key need.
  execFileSync('cp', ['-a', path.join(template.dir, 'data'), path.join(template.dir, 'certs'), dir]);
  const data = path.join(dir, 'data');
  const sockets = path.join(dir, 'run');
  fs.mkdirSync(sockets);
  const superPassword = template.superPassword;
  const [ca, cert, key] = ['ca.pem', 'server.pem', 'server.key'].map((f) => path.join(dir, 'certs', f)) as [string, string, string];
  if (asRoot) {
    fs.chmodSync(dir, 0o755);
    execFileSync('chown', ['postgres:postgres', sockets]);
  }
  const port = await freeLoopbackPort();
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${sockets}'`,
      'ssl = on',
      `ssl_cert_file = '${cert}'`,
      `ssl_key_file = '${key}'`,
      "password_encryption = 'scram-sha-256'",
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 40',
      'shared_buffers = 32MB',
      "log_min_messages = 'warning'",
      '',
    ].join('\n'),
  );
  if (asRoot) execFileSync('chown', ['postgres:postgres', path.join(data, 'postgresql.conf')]);
  const pgCtl = path.join(bin, 'pg_ctl');
  const logFile = path.join(dir, 'server.log');
  if (asRoot) {
    fs.writeFileSync(logFile, '');
    execFileSync('chown', ['postgres:postgres', logFile]);
  }
  let running = false;
  const start = (): void => {
    runAsServerUser(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
    running = true;
  };
  const stop = (): void => {
    if (!running) return;
    runAsServerUser(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  try {
    start();
  } catch (err) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    throw new Error(`postgres did not start: ${(err as Error).message}\n${log}`);
  }
  const caPem = fs.readFileSync(ca);
  const server: PgServer = {
    host: '127.0.0.1',
    port,
    caFile: ca,
    dir,
    superPassword,
    async connectAsSuperuser(database = 'postgres') {
      const c = new Client({
        host: '127.0.0.1',
        port,
        user: SUPERUSER,
        password: superPassword,
        database,
        ssl: { ca: caPem, rejectUnauthorized: true, servername: 'localhost' },
      });
      await c.connect();
      return c;
    },
    writePasswordFile(name, password, mode = 0o600) {
      const file = path.join(dir, `${name}.pw`);
      fs.writeFileSync(file, password + '\n', { mode });
      fs.chmodSync(file, mode);
      return file;
    },
    stop,
    start,
    destroy() {
      try {
        stop();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return server;
}
