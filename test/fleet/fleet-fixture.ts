// Shared set-up of the fleet tests: a PostgreSQL server with the roles the README asks head
// office to create (an owner, the appliances' writer, a reader), and appliances (a SqliteStore
// plus a FleetForwarder) that report into it.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { DEFAULTS, type FleetConfig } from '../../src/config/defaults';
import { loadCatalog } from '../../src/catalog/load';
import { catalogNames } from '../../src/catalog/names';
import { SqliteStore } from '../../src/store/sqlite-store';
import { FleetForwarder, type ForwarderOptions } from '../../src/fleet/forwarder';
import { connectionConfig } from '../../src/fleet/pg-connection';
import { grantReader, grantWriter, migrateRemote } from '../../src/fleet/remote-schema';
import { startPostgres, type PgServer } from './postgres-harness';

export type { PgServer };

export const OWNER = 'kms_fleet_owner';
export const WRITER = 'kms_appliance';
export const READER = 'kms_fleet_reader';

export interface FleetDb {
  readonly pg: PgServer;
  readonly database: string;
  readonly passwords: { readonly owner: string; readonly writer: string; readonly reader: string };
  readonly passwordFiles: { readonly owner: string; readonly writer: string; readonly reader: string };
  /** fleet configuration of an appliance writing as WRITER, with `over` applied to postgres. */
  fleetConfig(siteName: string, over?: Partial<FleetConfig['postgres']>): FleetConfig;
  /** A client on the fleet database as `role` (TLS verified, scram). */
  connectAs(role: 'owner' | 'writer' | 'reader' | 'superuser'): Promise<Client>;
}

interface TapLike {
  teardown(fn: () => void | Promise<void>): void;
}

/** The one PostgreSQL server of a test file, stopped when the file's tests end. */
export async function postgresForFile(t: TapLike): Promise<PgServer> {
  const pg = await startPostgres();
  t.teardown(() => pg.destroy());
  return pg;
}

const rnd = (): string => Math.random().toString(36).slice(2);
const rolePasswords = new WeakMap<PgServer, { owner: string; writer: string; reader: string }>();
let databases = 0;

/** Roles are per server: created (with fresh passwords) the first time a server is used. */
async function rolesOf(pg: PgServer): Promise<{ owner: string; writer: string; reader: string }> {
  const known = rolePasswords.get(pg);
  if (known) return known;
  const passwords = { owner: `own-${rnd()}`, writer: `wr-${rnd()}`, reader: `rd-${rnd()}` };
  const su = await pg.connectAsSuperuser();
  try {
    await su.query(`CREATE ROLE ${OWNER} LOGIN PASSWORD '${passwords.owner}'`);
    await su.query(`CREATE ROLE ${WRITER} LOGIN PASSWORD '${passwords.writer}'`);
    await su.query(`CREATE ROLE ${READER} LOGIN PASSWORD '${passwords.reader}'`);
  } finally {
    await su.end();
  }
  rolePasswords.set(pg, passwords);
  return passwords;
}

/**
 * A fresh fleet database on the file's server, owned by OWNER, as the README has head office
 * create it; `init` (default) also migrates it and grants WRITER and READER their rights.
 */
export async function fleetDatabase(pg: PgServer, options: { init?: boolean } = {}): Promise<FleetDb> {
  const passwords = await rolesOf(pg);
  const database = `kms_fleet_${++databases}`;
  const su = await pg.connectAsSuperuser();
  try {
    await su.query(`CREATE DATABASE ${database} OWNER ${OWNER}`);
  } finally {
    await su.end();
  }
  const passwordFiles = {
    owner: pg.writePasswordFile('owner', passwords.owner),
    writer: pg.writePasswordFile('writer', passwords.writer),
    reader: pg.writePasswordFile('reader', passwords.reader),
  };
  const fleetConfig = (siteName: string, over: Partial<FleetConfig['postgres']> = {}): FleetConfig => ({
    ...DEFAULTS.fleet,
    siteName,
    postgres: {
      ...DEFAULTS.fleet.postgres,
      enabled: true,
      host: pg.host,
      port: pg.port,
      database,
      user: WRITER,
      passwordFile: passwordFiles.writer,
      caFile: pg.caFile,
      serverName: 'localhost',
      connectTimeoutSeconds: 5,
      ...over,
    },
  });
  const db: FleetDb = {
    pg,
    database,
    passwords,
    passwordFiles,
    fleetConfig,
    async connectAs(role) {
      if (role === 'superuser') return pg.connectAsSuperuser(database);
      const user = { owner: OWNER, writer: WRITER, reader: READER }[role];
      const c = new Client(connectionConfig(fleetConfig('x').postgres, { user, passwordFile: passwordFiles[role] }));
      await c.connect();
      return c;
    },
  };
  if (options.init !== false) {
    const owner = await db.connectAs('owner');
    try {
      await migrateRemote(owner);
      await grantWriter(owner, WRITER);
      await grantReader(owner, READER);
    } finally {
      await owner.end();
    }
  }
  return db;
}

export interface LogRecord {
  readonly level: string;
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

export function recordingLog(): ForwarderOptions['log'] & { lines: LogRecord[] } {
  const lines: LogRecord[] = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void =>
      void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

const names = catalogNames(loadCatalog());

export interface TestAppliance {
  readonly store: SqliteStore;
  readonly forwarder: FleetForwarder;
  readonly log: ReturnType<typeof recordingLog>;
  readonly dataDir: string;
  close(): Promise<void>;
}

/** A site: its own database file and a forwarder to the fleet database. */
export function appliance(t: TapLike, fleet: FleetConfig, over: Partial<ForwarderOptions> = {}): TestAppliance {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-site-'));
  const store = SqliteStore.open(dataDir);
  const log = recordingLog();
  const forwarder = new FleetForwarder({
    outbox: store.fleetOutbox(),
    fleet,
    log,
    names,
    softwareVersion: 'test',
    hostName: `${fleet.siteName}-box`,
    ...over,
  });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await forwarder.stop();
    store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  t.teardown(close);
  return { store, forwarder, log, dataDir, close };
}

/** Rows of a query as plain objects (the superuser sees everything). */
export async function rows<T = Record<string, unknown>>(c: Client, sql: string, params: unknown[] = []): Promise<T[]> {
  return (await c.query(sql, params)).rows as T[];
}
