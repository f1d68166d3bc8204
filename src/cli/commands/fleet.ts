// `kms-appliance fleet init | report | status`: set up the fleet database (as its owner role),
// read the organisation-wide report from it, and show this box's outbox. The connection settings
// come from fleet.postgres; --user and --password-file let head office run as other roles.

import Database from 'better-sqlite3';
import type { Client } from 'pg';
import { EXIT, UsageProblem, defineCommand, type Command, type CommandIo } from '../command';
import { COMMON_OPTIONS, loadSettings } from '../inventory-access';
import { formatCsv, formatTable, shortTime, type Column } from '../tabular';
import { inert, toJson } from '../terminal';
import { KmsError } from '../../errors';
import { databaseFile } from '../../store/data-dir';
import { FleetOutbox } from '../../store/fleet-outbox';
import {
  connectionConfig,
  describeTarget,
  explainPostgresError,
  type ConnectionOverrides,
  type PostgresSettings,
} from '../../fleet/pg-connection';
import { REMOTE_SCHEMA_VERSION, grantReader, grantWriter, migrateRemote } from '../../fleet/remote-schema';
import { REPORT_LIMITS, guardClient } from '../../fleet/pg-guard';
import { readFleetReport, type FleetReport } from '../../fleet/fleet-report';

const CONNECTION_OPTIONS = {
  config: { type: 'string', short: 'c' },
  user: { type: 'string', short: 'u' },
  'password-file': { type: 'string' },
} as const;

const CONNECTION_HELP = `  -c, --config FILE        Configuration file with the fleet.postgres section (host, port,
                           database, caFile, serverName); default /etc/kms-appliance/config.yaml.
  -u, --user ROLE          Connect as this role instead of fleet.postgres.user.
      --password-file F    Its password, first line of F (mode 0600), instead of
                           fleet.postgres.passwordFile.
  -h, --help               Show this help.`;

type Io = CommandIo;

/**
 * Connects as configured (TLS verified), or writes one line and returns the exit code: 2 for a
 * setting or file that cannot be used, 1 for a database that cannot be reached or refuses.
 */
async function connect(command: string, p: PostgresSettings, overrides: ConnectionOverrides, io: Io): Promise<Client | number> {
  let client: Client | undefined;
  try {
    // pg is loaded by the fleet commands only, not by every start of the CLI.
    const { Client: PgClient } = require('pg') as typeof import('pg');
    client = new PgClient(connectionConfig(p, overrides));
    guardClient(client, describeTarget(p, overrides.user), REPORT_LIMITS);
    client.on('error', () => undefined);
    await client.connect();
    return client;
  } catch (err) {
    await client?.end().catch(() => undefined);
    const code = err instanceof KmsError ? err.code : 'KMS_ERR_FLEET_SEND_FAILED';
    io.stderr.write(`kms-appliance ${command}: ${explainPostgresError(err, p, overrides.user)} [${code}]\n`);
    return code === 'KMS_ERR_FLEET_CONFIG' ? EXIT.USAGE : EXIT.FAILURE;
  }
}

function overridesOf(values: { user?: string | undefined; 'password-file'?: string | undefined }): ConnectionOverrides {
  return {
    ...(values.user === undefined ? {} : { user: values.user }),
    ...(values['password-file'] === undefined ? {} : { passwordFile: values['password-file'] }),
  };
}

const INIT_HELP = `Usage: kms-appliance fleet init [--user OWNER --password-file F] [--grant ROLE]...
                               [--grant-read ROLE]... [--config FILE]

Create or upgrade the kms_fleet schema in the fleet database (fleet.postgres.database): its
tables, views and version (now ${REMOTE_SCHEMA_VERSION}). Run it as the role that owns the database, once
before the first appliance reports and again after upgrading the appliances; running it twice
changes nothing. Migrations run in one transaction under a lock, so two runs cannot collide.

Options:
      --grant ROLE         Let ROLE (the appliances' role) write its rows: USAGE on the schema,
                           SELECT/INSERT/UPDATE on appliances, machines and events, SELECT on
                           schema_version. Nothing else (no DELETE, no DDL, no entitlements).
      --grant-read ROLE    Let ROLE (Grafana, fleet report) read every table and view.
${CONNECTION_HELP}

Exit codes: 0 the schema is current, 1 the database could not be reached or refused,
2 usage or configuration error (also a password file others can read, or no CA file).
`;

const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;

export const fleetInit = defineCommand({
  name: 'fleet init',
  summary: 'create or upgrade the fleet schema in PostgreSQL (run as the database owner)',
  help: INIT_HELP,
  options: { ...CONNECTION_OPTIONS, grant: { type: 'string', multiple: true }, 'grant-read': { type: 'string', multiple: true } },
  async run({ values, io }) {
    const writers = values.grant ?? [];
    const readers = values['grant-read'] ?? [];
    for (const r of [...writers, ...readers]) if (!ROLE_NAME.test(r)) throw new UsageProblem(`"${r}" is not a PostgreSQL role name`);
    const { config } = loadSettings(values, io);
    const p = config.fleet.postgres;
    const overrides = overridesOf(values);
    const client = await connect('fleet init', p, overrides, io);
    if (typeof client === 'number') return client;
    try {
      const { from, to } = await migrateRemote(client);
      for (const r of writers) await grantWriter(client, r);
      for (const r of readers) await grantReader(client, r);
      const target = describeTarget(p, overrides.user ?? p.user);
      io.stdout.write(
        from === to
          ? `The fleet schema in ${target} is at version ${to}; nothing to do.\n`
          : `The fleet schema in ${target} was ${from === 0 ? 'created' : `upgraded from version ${from}`} at version ${to}.\n`,
      );
      for (const r of writers) io.stdout.write(`Role ${r} may write the appliances' rows.\n`);
      for (const r of readers) io.stdout.write(`Role ${r} may read every table and view.\n`);
      return EXIT.OK;
    } catch (err) {
      io.stderr.write(`kms-appliance fleet init: ${explainPostgresError(err, p, overrides.user)} [KMS_ERR_FLEET_SCHEMA]\n`);
      return EXIT.FAILURE;
    } finally {
      await client.end().catch(() => undefined);
    }
  },
});

const REPORT_HELP = `Usage: kms-appliance fleet report [--format table|json|csv] [--silent-hours H]
                                 [--user ROLE --password-file F] [--config FILE]

The organisation-wide view from the fleet database: distinct machines per product (a CMID seen at
two sites counts once) and per site over the last 30 days, use against the organisation's
entitlements (the kms_fleet.entitlements table, kept by head office), over-use, sites that have
not reported for longer than fleet.silentAfterHours, and CMIDs seen at more than one site (an
image deployed without sysprep, or a laptop that travels).

Options:
  -f, --format FORMAT      table (default), json or csv (one CSV, a "section" column first).
      --silent-hours H     A site is silent after H hours without a report (default
                           fleet.silentAfterHours).
${CONNECTION_HELP}

Exit codes: 0 ok (also with over-use or silent sites: see the report), 1 the database could
not be reached or refused, 2 usage or configuration error (also an unusable password or CA file).
`;

interface CsvRow {
  section: string;
  site: string;
  product: string;
  machines: number | null;
  licenses: number | null;
  excess: number | null;
  overUse: boolean | null;
  lastContact: string | null;
  silentHours: number | null;
  silent: boolean | null;
  cmid: string;
  detail: string;
}

function csvRows(r: FleetReport): CsvRow[] {
  const blank = {
    site: '',
    product: '',
    machines: null,
    licenses: null,
    excess: null,
    overUse: null,
    lastContact: null,
    silentHours: null,
    silent: null,
    cmid: '',
    detail: '',
  };
  return [
    ...r.products.map((p) => ({
      ...blank,
      section: 'product',
      product: p.productName || p.groupName,
      machines: p.activeMachines,
      detail: `${p.sites} sites; ${p.groupName}`,
    })),
    ...r.perSite.map((p) => ({
      ...blank,
      section: 'site-product',
      site: p.siteName,
      product: p.productName || p.groupName,
      machines: p.activeMachines,
      detail: p.groupName,
    })),
    ...r.compliance.map((c) => ({
      ...blank,
      section: 'entitlement',
      product: c.product,
      machines: c.activeMachines,
      licenses: c.licenses,
      excess: c.excess,
      overUse: c.overUse,
    })),
    ...r.sites.map((s) => ({
      ...blank,
      section: 'site',
      site: s.siteName,
      machines: s.activeMachines,
      lastContact: s.lastContact,
      silentHours: s.silentHours,
      silent: s.silent,
      detail: s.applianceId,
    })),
    ...r.sharedCmids.map((c) => ({
      ...blank,
      section: 'shared-cmid',
      site: c.siteNames.join('; '),
      cmid: c.cmid,
      machines: c.sites,
      detail: c.workstations.join('; '),
    })),
  ];
}

const CSV_COLUMNS: readonly Column<CsvRow>[] = (
  [
    'section',
    'site',
    'product',
    'machines',
    'licenses',
    'excess',
    'overUse',
    'lastContact',
    'silentHours',
    'silent',
    'cmid',
    'detail',
  ] as const
).map((k) => ({ header: k, value: (r: CsvRow) => r[k] }));

function writeTable(io: Io, r: FleetReport): void {
  const w = (s: string): void => void io.stdout.write(s);
  w(`Fleet report, ${r.generatedAt} (machines counted in the last ${r.windowDays} days)\n\n`);
  if (r.compliance.length === 0) {
    w(
      'No organisation entitlements are recorded (INSERT INTO kms_fleet.entitlements (product, licenses) VALUES (...)),\nso nothing is ' +
        'compared with licences.\n\n',
    );
  } else {
    w('Licences of the organisation:\n');
    w(
      formatTable(r.compliance, [
        { header: 'PRODUCT', value: (c) => c.product },
        { header: 'ACTIVE', value: (c) => c.activeMachines, right: true },
        { header: 'LICENSES', value: (c) => c.licenses, right: true },
        { header: 'OVER-USE', value: (c) => (c.overUse ? `YES (+${c.excess})` : 'no') },
      ]),
    );
    w('\n');
  }
  w('Machines per product, organisation-wide (a machine seen at two sites counts once):\n');
  w(
    r.products.length === 0
      ? '  none\n'
      : formatTable(r.products, [
          { header: 'PRODUCT', value: (p) => p.productName || p.groupName },
          { header: 'GROUP', value: (p) => p.groupName },
          { header: 'ACTIVE', value: (p) => p.activeMachines, right: true },
          { header: 'SITES', value: (p) => p.sites, right: true },
        ]),
  );
  w('\nMachines per site and product:\n');
  w(
    r.perSite.length === 0
      ? '  none\n'
      : formatTable(r.perSite, [
          { header: 'SITE', value: (p) => p.siteName },
          { header: 'PRODUCT', value: (p) => p.productName || p.groupName },
          { header: 'ACTIVE', value: (p) => p.activeMachines, right: true },
          { header: 'LAST ACTIVATION', value: (p) => shortTime(p.lastActivation === null ? null : Date.parse(p.lastActivation)) },
        ]),
  );
  w(`\nSites (silent after ${r.silentAfterHours} h without a report):\n`);
  w(
    r.sites.length === 0
      ? '  none has reported yet\n'
      : formatTable(r.sites, [
          { header: 'SITE', value: (s) => s.siteName },
          { header: 'LAST REPORT', value: (s) => shortTime(Date.parse(s.lastContact)) },
          { header: 'STATE', value: (s) => (s.silent ? `SILENT for ${Math.floor(s.silentHours)} h` : 'reporting') },
          { header: 'ACTIVE', value: (s) => s.activeMachines, right: true },
          { header: 'LAST ACTIVATION', value: (s) => shortTime(s.lastActivation === null ? null : Date.parse(s.lastActivation)) },
          { header: 'UNSENT', value: (s) => s.backlogEvents, right: true },
        ]),
  );
  w('\nMachine ids seen at more than one site (cloned image without sysprep, or a travelling machine):\n');
  w(
    r.sharedCmids.length === 0
      ? '  none\n'
      : formatTable(r.sharedCmids, [
          { header: 'CMID', value: (c) => c.cmid },
          { header: 'SITES', value: (c) => c.siteNames.join(', ') },
          { header: 'NAMES', value: (c) => c.workstations.join(', ') },
          { header: 'LAST SEEN', value: (c) => shortTime(Date.parse(c.lastSeen)) },
        ]),
  );
  const over = r.compliance.filter((c) => c.overUse);
  const silent = r.sites.filter((s) => s.silent);
  w('\n');
  // Site and product names come from other boxes and from head office: printed inert.
  if (over.length > 0)
    w(`Over-used: ${over.map((c) => `${inert(c.product)} (${c.activeMachines} machines, ${c.licenses} licences)`).join(', ')}.\n`);
  if (silent.length > 0)
    w(`Silent: ${silent.map((s) => `${inert(s.siteName)} (last report ${shortTime(Date.parse(s.lastContact))})`).join(', ')}.\n`);
}

export const fleetReport = defineCommand({
  name: 'fleet report',
  summary: 'organisation-wide machines per product and site, entitlements, silent sites, shared CMIDs',
  help: REPORT_HELP,
  options: { ...CONNECTION_OPTIONS, 'silent-hours': { type: 'string' } },
  formats: true,
  async run({ values, format, io }) {
    const hoursText = values['silent-hours'];
    const hours = hoursText === undefined ? undefined : Number(hoursText);
    if (hours !== undefined && !(Number.isFinite(hours) && hours > 0))
      throw new UsageProblem(`--silent-hours must be a positive number of hours, not "${hoursText}"`);
    const { config } = loadSettings(values, io);
    const p = config.fleet.postgres;
    const overrides = overridesOf(values);
    const client = await connect('fleet report', p, overrides, io);
    if (typeof client === 'number') return client;
    let report: FleetReport;
    try {
      report = await readFleetReport(client, hours ?? config.fleet.silentAfterHours);
    } catch (err) {
      io.stderr.write(`kms-appliance fleet report: ${explainPostgresError(err, p, overrides.user)} [KMS_ERR_FLEET_SCHEMA]\n`);
      return EXIT.FAILURE;
    } finally {
      await client.end().catch(() => undefined);
    }
    if (format === 'json') io.stdout.write(`${toJson(report, 2)}\n`);
    else if (format === 'csv') io.stdout.write(formatCsv(csvRows(report), CSV_COLUMNS));
    else writeTable(io, report);
    return EXIT.OK;
  },
});

const STATUS_HELP = `Usage: kms-appliance fleet status [--data-dir DIR] [--config FILE] [--json]

This box's side of fleet reporting, read from its database: the appliance id, when PostgreSQL
last acknowledged a batch, the last error, and the events waiting in the outbox. Nothing is
sent and PostgreSQL is not contacted.

Options:
  -d, --data-dir DIR  Where the database lives (default: store.dataDir).
  -c, --config FILE   Configuration file (default /etc/kms-appliance/config.yaml when it exists).
  -h, --help          Show this help.
`;

/** This box's outbox, as `fleet status` and `status` show it (read-only; no PostgreSQL). */
export interface LocalFleetStatus {
  readonly enabled: boolean;
  readonly target: string;
  readonly applianceId: string | null;
  readonly lastSuccessMs: number | null;
  readonly lastError: string | null;
  readonly lastErrorMs: number | null;
  readonly backlogEvents: number;
  readonly oldestUnsentMs: number | null;
  readonly droppedEvents: number;
}

/** Reads the outbox state of the database file through a read-only connection. */
function readLocalFleetStatus(file: string, p: PostgresSettings): LocalFleetStatus {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const outbox = new FleetOutbox(db);
    const s = outbox.state();
    const backlog = outbox.eventBacklog(s.eventsAcked);
    const failing = s.lastErrorMs !== null && (s.lastSuccessMs === null || s.lastErrorMs > s.lastSuccessMs);
    return {
      enabled: p.enabled,
      target: p.host === '' ? '' : describeTarget(p),
      applianceId: s.applianceId ?? null,
      lastSuccessMs: s.lastSuccessMs,
      lastError: failing ? s.lastError : null,
      lastErrorMs: failing ? s.lastErrorMs : null,
      backlogEvents: backlog.count,
      oldestUnsentMs: backlog.oldestMs,
      droppedEvents: s.droppedEvents,
    };
  } finally {
    db.close();
  }
}

/** The lines `fleet status` prints; `status` may print them too. */
function describeLocalFleetStatus(s: LocalFleetStatus): string[] {
  if (!s.enabled && s.applianceId === null) return ['Fleet reporting: off (fleet.postgres.enabled); nothing leaves this box.'];
  const lines = [
    `Fleet reporting: ${s.enabled ? `on, to ${s.target}` : 'off now (was on before)'}; appliance id ${s.applianceId ?? 'not yet assigned'}`,
    `  last successful send: ${shortTime(s.lastSuccessMs)}`,
    `  waiting in the outbox: ${s.backlogEvents} events${s.oldestUnsentMs === null ? '' : ` (oldest ${shortTime(s.oldestUnsentMs)})`}`,
  ];
  if (s.lastError !== null) lines.push(`  failing since ${shortTime(s.lastErrorMs)}: ${inert(s.lastError)}`);
  if (s.droppedEvents > 0)
    lines.push(`  ${s.droppedEvents} events were never sent (outbox full or pruned); machines and counting are unaffected`);
  return lines;
}

export const fleetStatus = defineCommand({
  name: 'fleet status',
  summary: "this box's fleet outbox: last successful send, backlog, last error",
  help: STATUS_HELP,
  options: { ...COMMON_OPTIONS, json: { type: 'boolean' } },
  run({ values, io }) {
    const { config, dataDir } = loadSettings(values, io);
    let status: LocalFleetStatus;
    try {
      status = readLocalFleetStatus(databaseFile(dataDir), config.fleet.postgres);
    } catch (err) {
      io.stderr.write(`kms-appliance fleet status: cannot read ${databaseFile(dataDir)}: ${(err as Error).message}\n`);
      return EXIT.FAILURE;
    }
    if (values.json) io.stdout.write(`${toJson(status, 2)}\n`);
    else io.stdout.write(describeLocalFleetStatus(status).join('\n') + '\n');
    return EXIT.OK;
  },
});

export const commands: readonly Command[] = [fleetInit, fleetReport, fleetStatus];

/** What `status` adds about fleet reporting: nothing while it was never on; never fails `status`. */
export function fleetStatusLines(file: string, p: PostgresSettings): string[] {
  try {
    const s = readLocalFleetStatus(file, p);
    return !s.enabled && s.applianceId === null ? [] : ['', ...describeLocalFleetStatus(s)];
  } catch {
    return [];
  }
}
