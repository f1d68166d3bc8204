// The statements that write one batch into the fleet database. Every write is idempotent: a
// machine is keyed by (appliance, application, CMID) and mirrors the box's own row (the box is
// the truth, even if its clock stepped back), an event by (appliance, event id) and is never
// rewritten. A batch delivered twice (the commit went through but its acknowledgement was lost
// with the connection) leaves the same rows; batches of one box are sent one after the other.

import type { ClientBase } from 'pg';
import { describeHresult, formatHresult } from '../errors';
import type { NameResolver } from '../catalog/name-resolver';
import type { OutboxEvent, OutboxMachine } from '../store/fleet-outbox';

/** Names a CMID answered under that are kept per machine; clones can cycle through many. */
const MAX_NAMES_SEEN = 16;

export interface SiteReport {
  readonly applianceId: string;
  readonly siteName: string;
  readonly hostName: string;
  readonly softwareVersion: string;
  /** Highest event id the fleet database holds after this batch. */
  readonly lastEventId: number;
  readonly backlogEvents: number;
}

const UPSERT_APPLIANCE = `
  INSERT INTO kms_fleet.appliances AS a (appliance_id, site_name, host_name, software_version, last_contact, last_event_id, backlog_events)
  VALUES ($1, $2, $3, $4, now(), $5, $6)
  ON CONFLICT (appliance_id) DO UPDATE SET
    site_name = excluded.site_name, host_name = excluded.host_name, software_version = excluded.software_version,
    last_contact = now(), last_event_id = greatest(a.last_event_id, excluded.last_event_id),
    backlog_events = excluded.backlog_events`;

// One statement per batch: the rows travel as one JSON parameter (one round trip, any size).
const UPSERT_MACHINES = `
  INSERT INTO kms_fleet.machines AS m (appliance_id, application, cmid, workstation, names_seen, address, sku, product_name,
    kms_group, group_name, application_name, first_seen, last_seen, last_counted, last_hresult, last_result,
    license_status, protocol_version, vm, requests, received_at)
  SELECT $1::uuid, x.application, x.cmid, x.workstation, x.names, x.address, x.sku, x.product_name,
    x.kms_group, x.group_name, x.application_name, to_timestamp(x.first_seen_ms / 1000.0), to_timestamp(x.last_seen_ms / 1000.0),
    to_timestamp(x.last_counted_ms / 1000.0), x.last_hresult, x.last_result, x.license_status, x.protocol_version, x.vm,
    x.requests, now()
  FROM json_to_recordset($2::json) AS x(application text, cmid text, workstation text, names text[], address text, sku text,
    product_name text, kms_group text, group_name text, application_name text, first_seen_ms bigint, last_seen_ms bigint,
    last_counted_ms bigint, last_hresult bigint, last_result text, license_status integer, protocol_version integer,
    vm boolean, requests integer)
  ON CONFLICT (appliance_id, application, cmid) DO UPDATE SET
    workstation = excluded.workstation,
    names_seen = (SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM (
      SELECT DISTINCT n FROM unnest(m.names_seen || excluded.names_seen) AS n WHERE n <> '' LIMIT ${MAX_NAMES_SEEN}) AS names),
    address = excluded.address, sku = excluded.sku, product_name = excluded.product_name, kms_group = excluded.kms_group,
    group_name = excluded.group_name, application_name = excluded.application_name,
    first_seen = least(m.first_seen, excluded.first_seen), last_seen = excluded.last_seen,
    last_counted = excluded.last_counted, last_hresult = excluded.last_hresult,
    last_result = excluded.last_result, license_status = excluded.license_status,
    protocol_version = excluded.protocol_version, vm = excluded.vm, requests = excluded.requests, received_at = now()`;

const INSERT_EVENTS = `
  INSERT INTO kms_fleet.events (appliance_id, event_id, time, served, hresult, code, application, kms_group, group_name,
    sku, product_name, cmid, workstation, address, license_status, protocol_version, required_count, current_count)
  SELECT $1::uuid, x.id, to_timestamp(x.time_ms / 1000.0), x.served, x.hresult, x.code, x.application, x.kms_group,
    x.group_name, x.sku, x.product_name, x.cmid, x.workstation, x.address, x.license_status, x.protocol_version,
    x.required_count, x.current_count
  FROM json_to_recordset($2::json) AS x(id bigint, time_ms bigint, served boolean, hresult bigint, code text,
    application text, kms_group text, group_name text, sku text, product_name text, cmid text, workstation text,
    address text, license_status integer, protocol_version integer, required_count integer, current_count integer)
  ON CONFLICT (appliance_id, event_id) DO NOTHING`;

// PostgreSQL text cannot hold NUL, and JSON with a lone surrogate escape does not convert to text
// either: one such workstation name (chosen by any client) would fail its batch on every retry
// and stop the reporting for good. Both become U+FFFD, the replacement character.
const UNSENDABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A request's licence status and required count are unsigned 32-bit fields the client chooses
 * (logged, not checked); PostgreSQL's integer stops at 2^31 - 1. A value above it would have the
 * row refused and the machine missing from the fleet inventory: it arrives as the largest integer.
 */
function int4(value: number): number {
  return Math.min(value, 0x7fffffff);
}

function sendable(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? value.replace(UNSENDABLE, '\ufffd') : value;
}

/** "activated" or the HRESULT the client saw, with its meaning when known. */
function resultInWords(hresult: number): string {
  if (hresult === 0) return 'activated';
  const meaning = describeHresult(hresult);
  return meaning ? `${formatHresult(hresult)} ${meaning}` : formatHresult(hresult);
}

/**
 * JSON bytes of a row apart from its free text: the keys, four GUIDs, the times and numbers, three
 * catalogue names and the result in words (a machine row of the generated stores measures 560–700).
 */
const MACHINE_FIXED_BYTES = 700;
const EVENT_FIXED_BYTES = 650;
/** A character of a client-chosen name: up to 3 bytes of UTF-8 (a control character, 6 as \uXXXX, is rare). */
const TEXT_BYTES = 3;

/** About how much of a batch's JSON a machine row takes (its workstation twice: as itself and among the names). */
export function machineRowBytes(m: OutboxMachine): number {
  return MACHINE_FIXED_BYTES + TEXT_BYTES * (2 * m.workstation.length + m.previousWorkstation.length + m.address.length);
}

/** About how much of a batch's JSON an event row takes. */
export function eventRowBytes(e: OutboxEvent): number {
  return EVENT_FIXED_BYTES + TEXT_BYTES * (e.workstation.length + e.address.length + e.code.length);
}

/** The least a row can take: divides what is left of a budget into a number of rows to read. */
export const MIN_ROW_BYTES = Math.min(MACHINE_FIXED_BYTES, EVENT_FIXED_BYTES);

function machineJson(m: OutboxMachine, names: NameResolver): Record<string, unknown> {
  return {
    application: m.application,
    cmid: m.cmid,
    workstation: m.workstation,
    names: [...new Set([m.workstation, m.previousWorkstation].filter((n) => n !== ''))],
    address: m.address,
    sku: m.sku,
    product_name: m.sku ? names.skuName(m.sku, m.kmsGroup) : '',
    kms_group: m.kmsGroup,
    group_name: m.kmsGroup ? names.groupName(m.kmsGroup) : '',
    application_name: names.applicationName(m.application),
    first_seen_ms: m.firstSeenMs,
    last_seen_ms: m.lastSeenMs,
    last_counted_ms: m.lastCountedMs,
    last_hresult: m.lastHresult,
    last_result: resultInWords(m.lastHresult),
    license_status: int4(m.licenseStatus),
    protocol_version: m.protocolVersion,
    vm: m.vm,
    requests: m.requests,
  };
}

function eventJson(e: OutboxEvent, offset: number, names: NameResolver): Record<string, unknown> {
  return {
    id: e.id + offset,
    time_ms: e.timeMs,
    served: e.served,
    hresult: e.hresult,
    code: e.code,
    application: e.application,
    kms_group: e.kmsGroup,
    group_name: e.kmsGroup ? names.groupName(e.kmsGroup) : '',
    sku: e.sku,
    product_name: e.sku ? names.skuName(e.sku, e.kmsGroup) : '',
    cmid: e.cmid,
    workstation: e.workstation,
    address: e.address,
    license_status: int4(e.licenseStatus),
    protocol_version: e.protocolVersion,
    required_count: int4(e.requiredCount),
    current_count: e.currentCount,
  };
}

export interface Batch {
  readonly site: SiteReport;
  readonly machines: readonly OutboxMachine[];
  readonly events: readonly OutboxEvent[];
  /** Added to local event ids (see FleetOutbox: ids restart only if the whole log was pruned). */
  readonly eventOffset: number;
}

export interface BatchWritten {
  /** The host name the database had for this appliance id before; null for a new site. */
  readonly previousHostName: string | null;
}

/** Writes one batch in one transaction; resolves only once PostgreSQL committed it. */
export async function writeBatch(client: ClientBase, batch: Batch, names: NameResolver): Promise<BatchWritten> {
  return inTransaction(client, 'COMMIT', () => writeStatements(client, batch, names));
}

const PROBE_NAME = 'kms-appliance-probe';
const NIL = '00000000-0000-0000-0000-000000000000';

/**
 * Whether the tables take an ordinary row at all: one made-up machine and one made-up event (nil
 * ids, event id -1, which no box sends) written and rolled back, so the fleet database never
 * holds them. Tells rows PostgreSQL refuses for their values from a table that refuses every row
 * (a constraint or trigger head office added). False when the probe is refused as a row; other
 * failures (connection, privileges) throw like any send.
 */
export async function tablesTakeRows(client: ClientBase, site: SiteReport, nowMs: number, names: NameResolver): Promise<boolean> {
  const machine: OutboxMachine = {
    application: NIL,
    cmid: NIL,
    workstation: PROBE_NAME,
    previousWorkstation: '',
    address: '127.0.0.1',
    sku: '',
    kmsGroup: '',
    firstSeenMs: nowMs,
    lastSeenMs: nowMs,
    lastCountedMs: nowMs,
    lastHresult: 0,
    licenseStatus: 1,
    protocolVersion: 6,
    vm: false,
    requests: 1,
  };
  const event: OutboxEvent = {
    id: -1,
    timeMs: nowMs,
    served: true,
    hresult: 0,
    code: '',
    application: NIL,
    kmsGroup: '',
    sku: '',
    cmid: NIL,
    workstation: PROBE_NAME,
    address: '127.0.0.1',
    licenseStatus: 1,
    protocolVersion: 6,
    requiredCount: 1,
    currentCount: 1,
  };
  try {
    await inTransaction(client, 'ROLLBACK', () =>
      writeStatements(client, { site, machines: [machine], events: [event], eventOffset: 0 }, names),
    );
    return true;
  } catch (err) {
    if (isRowRejection(err)) return false;
    throw err;
  }
}

/**
 * SQLSTATE class 22 (data exception: a value out of range, text PostgreSQL cannot store) and 23
 * (a constraint): the rows themselves are refused, not the connection or the privileges.
 */
export function isRowRejection(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

async function inTransaction<T>(client: ClientBase, end: 'COMMIT' | 'ROLLBACK', body: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await body();
    await client.query(end);
    return result;
  } catch (err) {
    // Only a statement the server answered with an error leaves a connection that can roll back.
    // After a timeout or a broken connection the ROLLBACK would wait a second query timeout
    // behind the statement that hangs; the caller closes that connection, which ends the
    // transaction on the server all the same.
    if (answeredWithError(err)) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

async function writeStatements(client: ClientBase, batch: Batch, names: NameResolver): Promise<BatchWritten> {
  const s = batch.site;
  const before = await client.query<{ host_name: string }>('SELECT host_name FROM kms_fleet.appliances WHERE appliance_id = $1', [
    s.applianceId,
  ]);
  const clean = (v: string): string => sendable('', v) as string;
  await client.query(UPSERT_APPLIANCE, [
    s.applianceId,
    clean(s.siteName),
    clean(s.hostName),
    clean(s.softwareVersion),
    s.lastEventId,
    s.backlogEvents,
  ]);
  if (batch.machines.length > 0) {
    await client.query(UPSERT_MACHINES, [
      s.applianceId,
      JSON.stringify(
        batch.machines.map((m) => machineJson(m, names)),
        sendable,
      ),
    ]);
  }
  if (batch.events.length > 0) {
    await client.query(INSERT_EVENTS, [
      s.applianceId,
      JSON.stringify(
        batch.events.map((e) => eventJson(e, batch.eventOffset, names)),
        sendable,
      ),
    ]);
  }
  return { previousHostName: before.rows[0]?.host_name ?? null };
}

/** An ErrorResponse from the server (pg's DatabaseError carries its severity), not a local failure. */
function answeredWithError(err: unknown): boolean {
  return typeof (err as { severity?: unknown } | null)?.severity === 'string';
}
