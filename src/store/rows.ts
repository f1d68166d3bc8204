// The rows of the clients and events tables in statement parameter form, and the SQL that
// merges them. Shared by the write paths of sqlite-store.ts (which must all write exactly the same
// thing) and by the read side; request-rows.ts builds them from what the host observed.

/** One row of the event log, in statement parameter form. */
export interface EventRow {
  time_ms: number;
  served: number;
  hresult: number;
  code: string;
  application: string;
  kms_group: string;
  sku: string;
  cmid: string;
  previous_cmid: string;
  workstation: string;
  required_count: number;
  license_status: number;
  vm: number;
  protocol_version: number;
  client_address: string;
  request_time_ms: number;
  current_count: number;
}

export interface ClientRow {
  application: string;
  cmid: string;
  now: number;
  counted: number | null;
  workstation: string;
  sku: string;
  kms_group: string;
  license_status: number;
  protocol_version: number;
  client_address: string;
  vm: number;
  last_hresult: number;
  required_count: number;
}

/** One row of the clients table as the read side sees it. */
export interface StoredClientRow {
  application: string;
  cmid: string;
  first_seen_ms: number;
  last_seen_ms: number;
  last_counted_ms: number | null;
  workstation: string;
  sku: string;
  kms_group: string;
  license_status: number;
  protocol_version: number;
  client_address: string;
  vm: number;
  requests: number;
  last_hresult: number;
  required_count: number;
}

// Every merge is order-independent (MIN/MAX, sums), so replaying pending writes after an outage
// gives the same row as writing them on time. last_counted only moves forward: a clock set back
// never un-counts a machine (it stays counted until its newest time leaves the window).
// In an UPDATE every right-hand side sees the old row, so the CASEs compare old with new.
export const UPSERT_CLIENT_SERVED = `
  INSERT INTO clients (application, cmid, first_seen_ms, last_seen_ms, last_counted_ms, workstation, sku,
    kms_group, license_status, protocol_version, client_address, vm, requests, last_hresult, required_count)
  VALUES (:application, :cmid, :now, :now, :counted, :workstation, :sku, :kms_group, :license_status,
    :protocol_version, :client_address, :vm, 1, :last_hresult, :required_count)
  ON CONFLICT (application, cmid) DO UPDATE SET
    last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),
    last_counted_ms = MAX(COALESCE(last_counted_ms, excluded.last_counted_ms), excluded.last_counted_ms),
    previous_workstation = CASE WHEN workstation <> excluded.workstation THEN workstation ELSE previous_workstation END,
    workstation_changes = workstation_changes + (workstation <> excluded.workstation),
    previous_address = CASE WHEN excluded.client_address <> '' AND client_address <> excluded.client_address
      THEN client_address ELSE previous_address END,
    address_changes = address_changes + (excluded.client_address <> '' AND client_address <> excluded.client_address),
    workstation = excluded.workstation,
    sku = excluded.sku,
    kms_group = excluded.kms_group,
    license_status = excluded.license_status,
    protocol_version = excluded.protocol_version,
    client_address = CASE WHEN excluded.client_address <> '' THEN excluded.client_address ELSE client_address END,
    vm = excluded.vm,
    requests = requests + 1,
    last_hresult = excluded.last_hresult,
    required_count = excluded.required_count`;

// A refusal updates when the machine was heard from and what it was told, never its counting time
// nor the product it was served for (PROTOCOL.md §7.1: refusals are not counted).
export const UPSERT_CLIENT_REFUSED = `
  INSERT INTO clients (application, cmid, first_seen_ms, last_seen_ms, last_counted_ms, workstation, sku,
    kms_group, license_status, protocol_version, client_address, vm, requests, last_hresult, required_count)
  VALUES (:application, :cmid, :now, :now, NULL, :workstation, :sku, :kms_group, :license_status,
    :protocol_version, :client_address, :vm, 1, :last_hresult, :required_count)
  ON CONFLICT (application, cmid) DO UPDATE SET
    last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),
    requests = requests + 1,
    last_hresult = excluded.last_hresult`;

export const INSERT_EVENT = `
  INSERT INTO events (time_ms, served, hresult, code, application, kms_group, sku, cmid, previous_cmid,
    workstation, required_count, license_status, vm, protocol_version, client_address, request_time_ms, current_count)
  VALUES (:time_ms, :served, :hresult, :code, :application, :kms_group, :sku, :cmid, :previous_cmid,
    :workstation, :required_count, :license_status, :vm, :protocol_version, :client_address, :request_time_ms, :current_count)`;

// The requests a machine sent while the file was unwritable after its first served one, folded
// into one UPDATE (pending-writes.ts): the same merges as UPSERT_CLIENT_SERVED and
// UPSERT_CLIENT_REFUSED applied in order, with the changes in between counted in memory.
export const FOLD_CLIENT = `
  UPDATE clients SET
    last_seen_ms = MAX(last_seen_ms, :last_seen),
    last_counted_ms = CASE WHEN :counted IS NULL THEN last_counted_ms
      ELSE MAX(COALESCE(last_counted_ms, :counted), :counted) END,
    requests = requests + :requests,
    last_hresult = :last_hresult,
    previous_workstation = CASE WHEN :workstation_changes > 0 THEN :previous_workstation ELSE previous_workstation END,
    workstation_changes = workstation_changes + :workstation_changes,
    previous_address = CASE WHEN :address_changes > 0 THEN :previous_address
      WHEN :first_address IS NOT NULL AND client_address <> :first_address THEN client_address ELSE previous_address END,
    address_changes = address_changes + :address_changes
      + (:first_address IS NOT NULL AND client_address <> :first_address),
    workstation = CASE WHEN :has_served THEN :workstation ELSE workstation END,
    client_address = CASE WHEN :has_served AND :client_address <> '' THEN :client_address ELSE client_address END,
    sku = CASE WHEN :has_served THEN :sku ELSE sku END,
    kms_group = CASE WHEN :has_served THEN :kms_group ELSE kms_group END,
    license_status = CASE WHEN :has_served THEN :license_status ELSE license_status END,
    protocol_version = CASE WHEN :has_served THEN :protocol_version ELSE protocol_version END,
    vm = CASE WHEN :has_served THEN :vm ELSE vm END,
    required_count = CASE WHEN :has_served THEN :required_count ELSE required_count END
  WHERE application = :application AND cmid = :cmid`;

// A re-imaged machine takes over its previous entry (first seen, requests, counting time) the way
// the reference store does; OR IGNORE leaves it alone when the new CMID has a row already, and
// DELETE_CLIENT then drops it (PROTOCOL.md §7.2: the re-imaged machine counts once).
export const RENAME_CLIENT = 'UPDATE OR IGNORE clients SET cmid = ? WHERE application = ? AND cmid = ?';
export const DELETE_CLIENT = 'DELETE FROM clients WHERE application = ? AND cmid = ?';
