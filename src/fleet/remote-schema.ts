// The fleet database in PostgreSQL: versioned migrations of the `kms_fleet` schema (applied by
// `kms-appliance fleet init` as the owner role), and the grants the appliances' role and a
// reporting role need. Plain tables for the data, documented views for Grafana or any BI tool.

import type { ClientBase } from 'pg';

/**
 * Each entry upgrades the schema from version index to index + 1; never edit a shipped one.
 * Later versions only add (columns with defaults, views): appliances of an older release keep
 * writing into a newer schema.
 */
const REMOTE_MIGRATIONS: readonly string[] = [
  // v1: sites, their machines (one row per appliance, application and CMID), their requests,
  // and the licences the organisation bought.
  `
  CREATE TABLE kms_fleet.appliances (
    appliance_id uuid PRIMARY KEY,
    site_name text NOT NULL,
    host_name text NOT NULL DEFAULT '',
    software_version text NOT NULL DEFAULT '',
    first_contact timestamptz NOT NULL DEFAULT now(),
    last_contact timestamptz NOT NULL DEFAULT now(),   -- the database's clock, not the box's
    last_event_id bigint NOT NULL DEFAULT 0
  );

  CREATE TABLE kms_fleet.machines (
    appliance_id uuid NOT NULL REFERENCES kms_fleet.appliances,
    application text NOT NULL,                -- application id (GUID)
    cmid text NOT NULL,                       -- client machine id (GUID)
    workstation text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    sku text NOT NULL DEFAULT '',             -- activation id of the product
    kms_group text NOT NULL DEFAULT '',       -- KMS counted id
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    last_counted timestamptz,                 -- NULL while the machine was only ever refused
    last_hresult bigint NOT NULL DEFAULT 0,
    license_status integer NOT NULL DEFAULT 0,
    protocol_version integer NOT NULL DEFAULT 0,
    vm boolean NOT NULL DEFAULT false,
    requests integer NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appliance_id, application, cmid)
  );
  CREATE INDEX machines_by_cmid ON kms_fleet.machines (application, cmid);

  CREATE TABLE kms_fleet.events (
    appliance_id uuid NOT NULL REFERENCES kms_fleet.appliances,
    event_id bigint NOT NULL,                 -- the appliance's own event log id
    time timestamptz NOT NULL,
    served boolean NOT NULL,
    hresult bigint NOT NULL,
    code text NOT NULL DEFAULT '',            -- KMS_ERR_* of a refusal
    application text NOT NULL DEFAULT '',
    kms_group text NOT NULL DEFAULT '',
    sku text NOT NULL DEFAULT '',
    cmid text NOT NULL DEFAULT '',
    workstation text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    license_status integer NOT NULL DEFAULT 0,
    protocol_version integer NOT NULL DEFAULT 0,
    required_count integer NOT NULL DEFAULT 0,
    current_count integer NOT NULL DEFAULT 0,
    PRIMARY KEY (appliance_id, event_id)
  );

  CREATE TABLE kms_fleet.entitlements (
    product text PRIMARY KEY,                 -- a product, KMS group or application name (or id)
    licenses integer NOT NULL CHECK (licenses >= 0)
  );
  `,
  // v2: names as the catalogue spells them, every name a CMID answered under, the last result
  // in words, and the views.
  `
  ALTER TABLE kms_fleet.machines
    ADD COLUMN names_seen text[] NOT NULL DEFAULT '{}',
    ADD COLUMN product_name text NOT NULL DEFAULT '',
    ADD COLUMN group_name text NOT NULL DEFAULT '',
    ADD COLUMN application_name text NOT NULL DEFAULT '',
    ADD COLUMN last_result text NOT NULL DEFAULT '';
  ALTER TABLE kms_fleet.events
    ADD COLUMN product_name text NOT NULL DEFAULT '',
    ADD COLUMN group_name text NOT NULL DEFAULT '';
  ALTER TABLE kms_fleet.appliances ADD COLUMN backlog_events bigint NOT NULL DEFAULT 0;
  -- Dashboards ask for time ranges of events.
  CREATE INDEX events_by_time ON kms_fleet.events (time);

  -- Machines counted (served) in the last 30 days, the window a KMS host counts in.
  CREATE VIEW kms_fleet.active_machines AS
    SELECT m.*, a.site_name
    FROM kms_fleet.machines m JOIN kms_fleet.appliances a USING (appliance_id)
    WHERE m.last_counted >= now() - interval '30 days';

  CREATE VIEW kms_fleet.machines_per_product_per_site AS
    SELECT site_name, appliance_id, application_name, group_name, product_name,
      count(*) AS active_machines, max(last_counted) AS last_activation
    FROM kms_fleet.active_machines
    GROUP BY site_name, appliance_id, application_name, group_name, product_name;

  -- Organisation-wide: a CMID seen at two sites is one machine.
  CREATE VIEW kms_fleet.machines_per_product AS
    SELECT application_name, group_name, product_name,
      count(DISTINCT (application, cmid)) AS active_machines, count(DISTINCT appliance_id) AS sites
    FROM kms_fleet.active_machines
    GROUP BY application_name, group_name, product_name;

  CREATE VIEW kms_fleet.compliance AS
    -- application || cmid is NULL for an entitlement nothing matches, and count() skips NULLs
    -- (a row value of NULLs would be counted as one machine).
    SELECT e.product, e.licenses,
      count(DISTINCT m.application || '/' || m.cmid) AS active_machines,
      greatest(count(DISTINCT m.application || '/' || m.cmid) - e.licenses, 0) AS excess,
      count(DISTINCT m.application || '/' || m.cmid) > e.licenses AS over_use
    FROM kms_fleet.entitlements e
    LEFT JOIN kms_fleet.active_machines m ON lower(e.product) IN (
      lower(m.product_name), lower(m.group_name), lower(m.application_name), m.sku, m.kms_group, m.application)
    GROUP BY e.product, e.licenses;

  CREATE VIEW kms_fleet.site_status AS
    SELECT a.appliance_id, a.site_name, a.host_name, a.software_version, a.first_contact, a.last_contact,
      now() - a.last_contact AS silent_for, a.backlog_events,
      (SELECT max(m.last_counted) FROM kms_fleet.machines m WHERE m.appliance_id = a.appliance_id) AS last_activation,
      (SELECT count(*) FROM kms_fleet.active_machines m WHERE m.appliance_id = a.appliance_id) AS active_machines
    FROM kms_fleet.appliances a;

  -- A box reports at least every few minutes while it can reach the database.
  CREATE VIEW kms_fleet.sites_not_reporting AS
    SELECT * FROM kms_fleet.site_status WHERE silent_for > interval '24 hours';

  -- One CMID at several sites: an image deployed without sysprep, or a laptop that travels.
  CREATE VIEW kms_fleet.cmid_at_several_sites AS
    SELECT m.application, m.cmid, count(DISTINCT m.appliance_id) AS sites,
      array_agg(DISTINCT a.site_name ORDER BY a.site_name) AS site_names,
      array_agg(DISTINCT m.workstation ORDER BY m.workstation) AS workstations,
      max(m.last_seen) AS last_seen
    FROM kms_fleet.machines m JOIN kms_fleet.appliances a USING (appliance_id)
    GROUP BY m.application, m.cmid
    HAVING count(DISTINCT m.appliance_id) > 1;
  `,
];

export const REMOTE_SCHEMA_VERSION = REMOTE_MIGRATIONS.length;

/** Tables the appliances write; their role gets INSERT/UPDATE (and SELECT, which ON CONFLICT … WHERE reads). */
const WRITTEN_TABLES = ['appliances', 'machines', 'events'] as const;

/** The schema version in the database; 0 when `fleet init` never ran there. */
export async function remoteSchemaVersion(client: ClientBase): Promise<number> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('kms_fleet.schema_version')::text AS t");
  if (exists.rows[0]?.t == null) return 0;
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM kms_fleet.schema_version');
  return r.rows[0]?.v ?? 0;
}

export interface MigrationResult {
  readonly from: number;
  readonly to: number;
}

/**
 * Brings the schema to `target` in one transaction, holding an advisory lock so two `fleet init`
 * runs cannot race. Running it again at the current version changes nothing.
 */
export async function migrateRemote(client: ClientBase, target: number = REMOTE_SCHEMA_VERSION): Promise<MigrationResult> {
  return underInitLock(client, async () => {
    await client.query('CREATE SCHEMA IF NOT EXISTS kms_fleet');
    await client.query(`CREATE TABLE IF NOT EXISTS kms_fleet.schema_version (
      version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const from = await remoteSchemaVersion(client);
    for (let v = from; v < target; v++) {
      await client.query(REMOTE_MIGRATIONS[v]!);
      await client.query('INSERT INTO kms_fleet.schema_version (version) VALUES ($1)', [v + 1]);
    }
    return { from, to: Math.max(from, target) };
  });
}

/**
 * `run` in one transaction holding the advisory lock of `fleet init`: two runs at once wait for
 * each other, for the migrations and for the grants alike (PostgreSQL fails a GRANT on an object
 * another session is granting on at the same time: "tuple concurrently updated").
 */
async function underInitLock<T>(client: ClientBase, run: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('kms_fleet.migrate'))");
    const result = await run();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** What an appliance's role may do: write its rows, read the schema version. Nothing else. */
export async function grantWriter(client: ClientBase, role: string): Promise<void> {
  const r = quoteIdent(role);
  await underInitLock(client, async () => {
    await client.query(`GRANT USAGE ON SCHEMA kms_fleet TO ${r}`);
    await client.query(`GRANT SELECT ON kms_fleet.schema_version TO ${r}`);
    for (const t of WRITTEN_TABLES) await client.query(`GRANT SELECT, INSERT, UPDATE ON kms_fleet.${t} TO ${r}`);
  });
}

/**
 * What head office's reporting role (Grafana, `fleet report`) may do: read everything, including
 * the tables and views later migrations add (default privileges of the role running init).
 */
export async function grantReader(client: ClientBase, role: string): Promise<void> {
  const r = quoteIdent(role);
  await underInitLock(client, async () => {
    await client.query(`GRANT USAGE ON SCHEMA kms_fleet TO ${r}`);
    await client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA kms_fleet TO ${r}`);
    await client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA kms_fleet GRANT SELECT ON TABLES TO ${r}`);
  });
}
