// How the appliance connects to the fleet database: always TLS with the server certificate
// checked against the configured CA and host name (libpq's sslmode=verify-full), the password
// read from a file only the service can read, and failures explained in the admin's words.
// The password is never put into a message, a log line or a connection string.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ClientConfig } from 'pg';
import type { FleetConfig } from '../config/defaults';
import { KmsError } from '../errors';

export type PostgresSettings = FleetConfig['postgres'];

/** Command-line overrides for `fleet init` / `fleet report`, which run as other roles. */
export interface ConnectionOverrides {
  readonly user?: string;
  readonly passwordFile?: string;
}

/** "kms_appliance@db.example.org:5432/kms_fleet": what logs and messages name. */
export function describeTarget(p: PostgresSettings, user: string = p.user): string {
  const host = net.isIPv6(p.host) ? `[${p.host}]` : p.host;
  return `${user}@${host}:${p.port}/${p.database}`;
}

/**
 * Reads the password file, refusing one that group or others may read: a password readable by
 * every local account is no password. Only the first line counts (a trailing newline is usual).
 */
export function readPasswordFile(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_FLEET_CONFIG',
      `cannot read the fleet password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
    );
  }
  if (!st.isFile()) throw new KmsError('KMS_ERR_FLEET_CONFIG', `the fleet password file ${file} is not a regular file`, { file });
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
    throw new KmsError(
      'KMS_ERR_FLEET_CONFIG',
      `the fleet password file ${file} is readable or writable by group or others (mode ${mode}); ` +
        `refusing it: chmod 600 ${file} and make the service user its owner`,
      { file, mode },
    );
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_FLEET_CONFIG',
      `cannot read the fleet password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
    );
  }
  const password = text.split(/\r?\n/)[0] ?? '';
  if (password === '') throw new KmsError('KMS_ERR_FLEET_CONFIG', `the fleet password file ${file} is empty`, { file });
  return password;
}

function readCa(file: string): Buffer {
  if (file === '') {
    throw new KmsError(
      'KMS_ERR_FLEET_CONFIG',
      'fleet.postgres.caFile is not set: the appliance only talks to a PostgreSQL server whose certificate it can verify',
    );
  }
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_FLEET_CONFIG',
      `cannot read the fleet CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
    );
  }
}

/**
 * The pg client configuration. TLS is not optional; the certificate must chain to caFile and
 * name serverName (default: host). Node checks the name against `servername`, which pg leaves
 * unset for an IP address; the explicit check covers both names and addresses.
 */
export function connectionConfig(p: PostgresSettings, overrides: ConnectionOverrides = {}): ClientConfig {
  if (p.host === '') throw new KmsError('KMS_ERR_FLEET_CONFIG', 'fleet.postgres.host is not set');
  const passwordFile = overrides.passwordFile ?? p.passwordFile;
  if (passwordFile === '')
    throw new KmsError('KMS_ERR_FLEET_CONFIG', 'no password file: set fleet.postgres.passwordFile (or --password-file)');
  const password = readPasswordFile(passwordFile);
  const expected = p.serverName || p.host;
  const ssl: tls.ConnectionOptions = {
    ca: readCa(p.caFile),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(expected, cert),
    minVersion: 'TLSv1.2',
  };
  if (net.isIP(expected) === 0) ssl.servername = expected;
  return {
    host: p.host,
    port: p.port,
    database: p.database,
    user: overrides.user ?? p.user,
    password,
    ssl,
    connectionTimeoutMillis: p.connectTimeoutSeconds * 1000,
    // A statement that hangs (a locked table, a dead link without RST) must not hold the
    // forwarder forever: it gives up, backs off and sends the same batch again.
    query_timeout: queryTimeoutMs(p),
    application_name: 'kms-appliance',
    keepAlive: true,
  };
}

/**
 * How long the client waits for a statement's reply: it counts the time to send the batch (1 MiB
 * at most, forwarder.ts) over a slow branch link too, so it is not shortened below 30 s.
 */
function queryTimeoutMs(p: PostgresSettings): number {
  return Math.max(30_000, p.connectTimeoutSeconds * 3000);
}

/** A batch's statements take no lock another box holds: a wait this long is DDL or maintenance at head office. */
const LOCK_WAIT_MS = 5000;

type SessionLimits = Pick<ClientConfig, 'lock_timeout' | 'statement_timeout' | 'idle_in_transaction_session_timeout'>;

/**
 * Server-side limits for the forwarder's session (not for `fleet init`, whose migrations may
 * rightly take long). A statement waiting on a lock (fleet init, ALTER TABLE, VACUUM FULL at head
 * office) is the usual "hang" of a live server: it ends after 5 s with SQLSTATE 55P03 instead of
 * the client's 30 s, and the batch is retried later. The statement limit ends on the server, 5 s
 * before the client gives up, what nobody waits for any more, so it never holds locks meanwhile;
 * a transaction left open by a box whose link died is ended after twice the client's wait, so its
 * row locks do not make the next attempt wait.
 */
export function forwarderSessionLimits(p: PostgresSettings): SessionLimits {
  const query = queryTimeoutMs(p);
  return { lock_timeout: LOCK_WAIT_MS, statement_timeout: query - 5000, idle_in_transaction_session_timeout: 2 * query };
}

const TLS_TRUST = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
]);

/** Longest stretch of the server's own text quoted in a message. */
const MAX_QUOTED = 300;

/**
 * The server's words as one inert, short line: its messages go to the log, the health page and
 * the terminal (`status`), so line breaks, terminal escapes and bidirectional controls become
 * spaces, and a message of megabytes is cut.
 */
export function quoteServerText(text: string, max = MAX_QUOTED): string {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}… (${flat.length} characters)` : flat;
}

/** One line for the admin: what failed and what to change. Never includes the password. */
export function explainPostgresError(err: unknown, p: PostgresSettings, user?: string): string {
  const raw = err as { code?: unknown; message?: unknown } | null;
  const e = {
    code: typeof raw?.code === 'string' ? quoteServerText(raw.code, 64) : undefined,
    message: typeof raw?.message === 'string' ? quoteServerText(raw.message) : undefined,
  };
  const code = e.code ?? '';
  const target = describeTarget(p, user);
  const expected = p.serverName || p.host;
  if (err instanceof KmsError) return quoteServerText(err.message, 1000);
  if (code === 'ECONNREFUSED') return `PostgreSQL at ${target} refused the connection (server down, or wrong host or port)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the host name ${p.host} of fleet.postgres.host does not resolve`;
  // Before the generic "timeout" below: these are the server's own limits, with the server up.
  if (code === '55P03') {
    return (
      `a fleet table at ${target} stayed locked by another session for ${LOCK_WAIT_MS / 1000} s (fleet init, ALTER TABLE, ` +
      'VACUUM FULL or a long transaction at head office); the batch is sent again later'
    );
  }
  if (code === '57014') {
    return `PostgreSQL at ${target} cancelled a statement that ran too long (${e.message ?? code}); it is sent again later`;
  }
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || /timeout/i.test(e.message ?? '')) {
    return `PostgreSQL at ${target} did not answer in time (network down or a firewall drops the port)`;
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || /Connection terminated/i.test(e.message ?? '')) {
    return `the connection to PostgreSQL at ${target} was cut (server restarted or the network dropped)`;
  }
  if (TLS_TRUST.has(code)) return `the certificate of PostgreSQL at ${target} is not signed by the CA in fleet.postgres.caFile (${code})`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `the certificate of PostgreSQL at ${target} does not name ${expected} (set fleet.postgres.serverName to the name it carries)`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return `the certificate of PostgreSQL at ${target} is not valid now (${code}); renew it or check the clocks`;
  if (/does not support SSL/i.test(e.message ?? '')) return `PostgreSQL at ${target} does not offer TLS; set ssl = on in postgresql.conf`;
  if (/error establishing an SSL connection/i.test(e.message ?? '')) {
    return `${target} did not answer like a PostgreSQL server (check fleet.postgres.host and fleet.postgres.port)`;
  }
  if (code === '57P01' || code === '57P02' || code === '57P03') return `PostgreSQL at ${target} is shutting down or starting up (${code})`;
  if (code === '28P01') return `PostgreSQL at ${target} refused the password of role ${user ?? p.user} (check the password file)`;
  if (code === '28000')
    return (
      `PostgreSQL at ${target} has no pg_hba.conf entry for this box, role and database over TLS ` +
      '(see the README: hostssl … scram-sha-256)'
    );
  if (code === '3D000') return `the database ${p.database} does not exist at ${p.host}:${p.port}`;
  if (code === '42501')
    return (
      `role ${user ?? p.user} lacks a privilege on the fleet tables (${e.message ?? ''}); ` +
      `run kms-appliance fleet init --grant ${user ?? p.user} as the owner`
    );
  if (code === '42P01' || code === '3F000')
    return `the fleet tables do not exist in ${p.database}: run kms-appliance fleet init as the owner role`;
  return `PostgreSQL at ${target}: ${e.message ?? quoteServerText(String(err))}${code ? ` (${code})` : ''}`;
}
