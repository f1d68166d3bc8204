// How one request the host observed becomes rows (rows.ts): the clients-table row and the
// event-log row of a served or a refused request.
import type { ClientObservation, CountSnapshot } from '../host/ports';
import { effectiveRequiredCount } from '../host/counting';
import { lowerId, NIL_GUID } from '../protocol/guid';
import type { ClientRow, EventRow } from './rows';

/** RequiredClientCount 0 is served as 1 (PROTOCOL.md §7.1 step 4, U8). */
export function thresholdOf(obs: Partial<ClientObservation>): number {
  return effectiveRequiredCount(obs.requiredClientCount ?? 1);
}

/** The previous CMID this request replaces, lowercased like every stored id; undefined = none. */
export function previousOf(obs: ClientObservation, cmid: string): string | undefined {
  const prev = lowerId(obs.previousClientMachineId);
  return prev === '' || prev === NIL_GUID || prev === cmid ? undefined : prev;
}

// GUIDs are stored lowercase, as the protocol layer writes them, so that a differently-cased id
// from a tool or a test is still the same machine.
export function servedRow(obs: ClientObservation, nowMs: number): ClientRow {
  return {
    application: lowerId(obs.applicationId),
    cmid: lowerId(obs.clientMachineId),
    now: nowMs,
    counted: nowMs,
    workstation: obs.workstationName,
    sku: lowerId(obs.activationId),
    kms_group: lowerId(obs.kmsCountedId),
    license_status: obs.licenseStatus,
    protocol_version: obs.protocolVersion,
    client_address: obs.clientAddress,
    // VMs count like physical machines (§7.6); the flag is inventory only.
    vm: obs.vmInfo ? 1 : 0,
    last_hresult: 0,
    required_count: obs.requiredClientCount,
  };
}

/** The client row of a refused request that named a machine, from its event (one source for both). */
export function refusedRowOf(event: EventRow): ClientRow {
  return {
    application: event.application,
    cmid: event.cmid,
    now: event.time_ms,
    counted: null,
    workstation: event.workstation,
    sku: event.sku,
    kms_group: event.kms_group,
    license_status: event.license_status,
    protocol_version: event.protocol_version,
    client_address: event.client_address,
    vm: event.vm,
    last_hresult: event.hresult,
    required_count: event.required_count,
  };
}

/** What a served request's event holds beyond its client row. */
export interface ServedFacts {
  /** The previous CMID as sent (lowercased), the nil GUID included. */
  readonly previousCmid: string;
  /** The client's clock, whole ms; 0 when it was not a finite time. */
  readonly requestTimeMs: number;
  /** The count the client was told. */
  readonly currentCount: number;
}

export function servedFacts(obs: ClientObservation, snapshot: CountSnapshot): ServedFacts {
  return {
    previousCmid: lowerId(obs.previousClientMachineId),
    requestTimeMs: Number.isFinite(obs.requestTimeMs) ? Math.trunc(obs.requestTimeMs) : 0,
    currentCount: Math.min(snapshot.activeClients, 2 * snapshot.maxRequiredClientCount),
  };
}

/** The event of a served request, from its row and facts (the pending path keeps it). */
export function servedEventOf(row: ClientRow, facts: ServedFacts): EventRow {
  return fillServedEvent(emptyEvent(), row, facts);
}

/**
 * `event` made the event of a served request, for the statement that writes it: the store binds
 * one such object again and again, so a served request's event is never an object of its own.
 */
export function fillServedEvent(event: Mutable<EventRow>, row: ClientRow, facts: ServedFacts): EventRow {
  event.time_ms = row.now;
  event.served = 1;
  event.hresult = 0;
  event.code = '';
  event.application = row.application;
  event.kms_group = row.kms_group;
  event.sku = row.sku;
  event.cmid = row.cmid;
  event.previous_cmid = facts.previousCmid;
  event.workstation = row.workstation;
  event.required_count = row.required_count;
  event.license_status = row.license_status;
  event.vm = row.vm;
  event.protocol_version = row.protocol_version;
  event.client_address = row.client_address;
  event.request_time_ms = facts.requestTimeMs;
  event.current_count = facts.currentCount;
  return event;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** An event row with every field, to be filled (one shape for all of them). */
export function emptyEvent(): Mutable<EventRow> {
  return {
    time_ms: 0,
    served: 0,
    hresult: 0,
    code: '',
    application: '',
    kms_group: '',
    sku: '',
    cmid: '',
    previous_cmid: '',
    workstation: '',
    required_count: 0,
    license_status: 0,
    vm: 0,
    protocol_version: 0,
    client_address: '',
    request_time_ms: 0,
    current_count: 0,
  };
}

export function refusedEvent(obs: Partial<ClientObservation>, hresult: number, code: string, nowMs: number): EventRow {
  return { ...eventBase(obs, nowMs), served: 0, hresult: hresult >>> 0, code, current_count: 0 };
}

function eventBase(obs: Partial<ClientObservation>, nowMs: number): Omit<EventRow, 'served' | 'hresult' | 'code' | 'current_count'> {
  return {
    time_ms: nowMs,
    application: obs.applicationId === undefined ? '' : lowerId(obs.applicationId),
    kms_group: obs.kmsCountedId === undefined ? '' : lowerId(obs.kmsCountedId),
    sku: obs.activationId === undefined ? '' : lowerId(obs.activationId),
    cmid: obs.clientMachineId === undefined ? '' : lowerId(obs.clientMachineId),
    previous_cmid: obs.previousClientMachineId === undefined ? '' : lowerId(obs.previousClientMachineId),
    workstation: obs.workstationName ?? '',
    required_count: obs.requiredClientCount ?? 0,
    license_status: obs.licenseStatus ?? 0,
    vm: obs.vmInfo ? 1 : 0,
    protocol_version: obs.protocolVersion ?? 0,
    client_address: obs.clientAddress ?? '',
    request_time_ms: Number.isFinite(obs.requestTimeMs) ? Math.trunc(obs.requestTimeMs!) : 0,
  };
}
