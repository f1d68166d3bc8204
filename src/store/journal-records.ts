// The lines of the request journal (request-journal.ts): one JSON array per write the store made
// inside a group commit, enough to make the same write again after a crash. Flat arrays of
// primitives, because the line is built on the reply path: JSON.stringify of a flat array costs
// under a microsecond, of the row objects it stands for more than twice that. A served request's
// event and a refused request's client row are derived from the rest (request-rows.ts), so the
// line carries each fact once.
import type { ClientRow, EventRow } from './rows';
import { refusedRowOf, servedEventOf } from './request-rows';

/** A served request: its client row, the machine id it replaced and its event. */
interface ServedWrite {
  readonly kind: 'served';
  readonly row: ClientRow;
  /** The CMID this request replaced (PROTOCOL.md §7.2), undefined = none. */
  readonly previous: string | undefined;
  readonly event: EventRow;
  /** The threshold written to the file with this request, 0 = none (thresholds.ts persists them sparsely). */
  readonly persistRequired: number;
  readonly servedMs: number;
}

/** A refused request: its event, and the client row when the request named a machine. */
interface RefusedWrite {
  readonly kind: 'refused';
  readonly row: ClientRow | undefined;
  readonly event: EventRow;
}

interface SettingWrite {
  readonly kind: 'setting';
  readonly key: string;
  readonly value: string;
}

export type JournaledWrite = ServedWrite | RefusedWrite | SettingWrite;

export interface JournalRecord {
  /** Increasing over the life of the data directory; the file stores the last one committed. */
  readonly seq: number;
  readonly write: JournaledWrite;
}

const SERVED = 'a';
const REFUSED = 'r';
const SETTING = 's';

/** One line, newline included. */
export function encodeRecord(seq: number, w: JournaledWrite): string {
  if (w.kind === 'served') {
    const r = w.row;
    const e = w.event;
    return `${JSON.stringify([
      seq,
      SERVED,
      r.application,
      r.cmid,
      r.now,
      r.workstation,
      r.sku,
      r.kms_group,
      r.license_status,
      r.protocol_version,
      r.client_address,
      r.vm,
      r.required_count,
      w.previous ?? '',
      e.previous_cmid,
      e.request_time_ms,
      e.current_count,
      w.persistRequired,
      w.servedMs,
    ])}\n`;
  }
  if (w.kind === 'refused') {
    const e = w.event;
    return `${JSON.stringify([
      seq,
      REFUSED,
      w.row === undefined ? 0 : 1,
      e.time_ms,
      e.hresult,
      e.code,
      e.application,
      e.kms_group,
      e.sku,
      e.cmid,
      e.previous_cmid,
      e.workstation,
      e.required_count,
      e.license_status,
      e.vm,
      e.protocol_version,
      e.client_address,
      e.request_time_ms,
    ])}\n`;
  }
  return `${JSON.stringify([seq, SETTING, w.key, w.value])}\n`;
}

/** The shape of each kind's line after seq and kind: 's' = string, 'n' = finite number. */
const FIELDS: Readonly<Record<string, string>> = {
  [SERVED]: 'ssnsssnnsnnssnnnn',
  [REFUSED]: 'nnnsssssssnnnnsn',
  [SETTING]: 'ss',
};

/**
 * One line back into the write it stands for; undefined for anything that is not a whole, well
 * formed record (the torn end of a write cut short by a crash or a power cut, or damage), so that
 * nothing the statements could refuse ever reaches them.
 */
export function decodeRecord(line: string): JournalRecord | undefined {
  let a: unknown;
  try {
    a = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(a) || typeof a[0] !== 'number' || !Number.isSafeInteger(a[0]) || a[0] < 1) return undefined;
  const fields = FIELDS[a[1] as string];
  if (fields === undefined || a.length !== fields.length + 2) return undefined;
  for (let i = 0; i < fields.length; i++) {
    const v = a[i + 2];
    if (fields[i] === 's' ? typeof v !== 'string' : typeof v !== 'number' || !Number.isFinite(v)) return undefined;
  }
  const seq = a[0];
  const v = a.slice(2) as (string | number)[];
  const s = (i: number) => v[i] as string;
  const n = (i: number) => v[i] as number;
  if (a[1] === SETTING) return { seq, write: { kind: 'setting', key: s(0), value: s(1) } };
  if (a[1] === SERVED) {
    const row: ClientRow = {
      application: s(0),
      cmid: s(1),
      now: n(2),
      counted: n(2),
      workstation: s(3),
      sku: s(4),
      kms_group: s(5),
      license_status: n(6),
      protocol_version: n(7),
      client_address: s(8),
      vm: n(9),
      last_hresult: 0,
      required_count: n(10),
    };
    const previous = s(11) === '' ? undefined : s(11);
    const event = servedEventOf(row, s(12), n(13), n(14));
    return { seq, write: { kind: 'served', row, previous, event, persistRequired: n(15), servedMs: n(16) } };
  }
  const event: EventRow = {
    time_ms: n(1),
    served: 0,
    hresult: n(2),
    code: s(3),
    application: s(4),
    kms_group: s(5),
    sku: s(6),
    cmid: s(7),
    previous_cmid: s(8),
    workstation: s(9),
    required_count: n(10),
    license_status: n(11),
    vm: n(12),
    protocol_version: n(13),
    client_address: s(14),
    request_time_ms: n(15),
    current_count: 0,
  };
  return { seq, write: { kind: 'refused', row: n(0) === 1 ? refusedRowOf(event) : undefined, event } };
}
