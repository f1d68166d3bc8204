// How one request becomes rows: the clients-table row and the event-log row of a served or a
// refused request, and the SQL that merges them. Shared by the direct, batched and pending write
// paths of sqlite-store.ts, which must all write exactly the same thing.
import type { ClientObservation, CountSnapshot } from '../host/ports';
import { effectiveRequiredCount } from '../host/counting';
import { NIL_GUID } from '../protocol/guid';

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


/** RequiredClientCount 0 is served as 1 (PROTOCOL.md §7.1 step 4, U8). */
export function thresholdOf(obs: Partial<ClientObservation>): number {
  return effectiveRequiredCount(obs.requiredClientCount ?? 1);
}

/** The previous CMID this request replaces, lowercased like every stored id; undefined = none. */
export function previousOf(obs: ClientObservation, row: ClientRow): string | undefined {
  const prev = obs.previousClientMachineId.toLowerCase();
  return prev === '' || prev === NIL_GUID || prev === row.cmid ? undefined : prev;
}

// GUIDs are stored lowercase, as the protocol layer writes them, so that a differently-cased id
// from a tool or a test is still the same machine.
export function servedRow(obs: ClientObservation, nowMs: number): ClientRow {
  return {
    application: obs.applicationId.toLowerCase(),
    cmid: obs.clientMachineId.toLowerCase(),
    now: nowMs,
    counted: nowMs,
    workstation: obs.workstationName,
    sku: obs.activationId.toLowerCase(),
    kms_group: obs.kmsCountedId.toLowerCase(),
    license_status: obs.licenseStatus,
    protocol_version: obs.protocolVersion,
    client_address: obs.clientAddress,
    // VMs count like physical machines (§7.6); the flag is inventory only.
    vm: obs.vmInfo ? 1 : 0,
    last_hresult: 0,
    required_count: obs.requiredClientCount,
  };
}

export function refusedRow(obs: Partial<ClientObservation>, hresult: number, nowMs: number): ClientRow {
  return {
    application: obs.applicationId?.toLowerCase() ?? '',
    cmid: obs.clientMachineId?.toLowerCase() ?? '',
    now: nowMs,
    counted: null,
    workstation: obs.workstationName ?? '',
    sku: obs.activationId?.toLowerCase() ?? '',
    kms_group: obs.kmsCountedId?.toLowerCase() ?? '',
    license_status: obs.licenseStatus ?? 0,
    protocol_version: obs.protocolVersion ?? 0,
    client_address: obs.clientAddress ?? '',
    vm: obs.vmInfo ? 1 : 0,
    last_hresult: hresult >>> 0,
    required_count: obs.requiredClientCount ?? 0,
  };
}

export function servedEvent(obs: ClientObservation, nowMs: number, snapshot: CountSnapshot): EventRow {
  return {
    ...eventBase(obs, nowMs),
    served: 1,
    hresult: 0,
    code: '',
    current_count: Math.min(snapshot.activeClients, 2 * snapshot.maxRequiredClientCount),
  };
}

export function refusedEvent(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): EventRow {
  return { ...eventBase(obs, nowMs), served: 0, hresult: hresult >>> 0, code, current_count: 0 };
}

export function eventBase(obs: Partial<ClientObservation>, nowMs: number): Omit<EventRow, 'served' | 'hresult' | 'code' | 'current_count'> {
  return {
    time_ms: nowMs,
    application: obs.applicationId?.toLowerCase() ?? '',
    kms_group: obs.kmsCountedId?.toLowerCase() ?? '',
    sku: obs.activationId?.toLowerCase() ?? '',
    cmid: obs.clientMachineId?.toLowerCase() ?? '',
    previous_cmid: obs.previousClientMachineId?.toLowerCase() ?? '',
    workstation: obs.workstationName ?? '',
    required_count: obs.requiredClientCount ?? 0,
    license_status: obs.licenseStatus ?? 0,
    vm: obs.vmInfo ? 1 : 0,
    protocol_version: obs.protocolVersion ?? 0,
    client_address: obs.clientAddress ?? '',
    request_time_ms: Number.isFinite(obs.requestTimeMs) ? Math.trunc(obs.requestTimeMs!) : 0,
  };
}
