// The lines of the request journal (request-journal.ts): one JSON array per write the store made
// inside a group commit, enough to make the same write again after a crash. Flat arrays of
// primitives, written as bytes straight into the turn's buffer, because the line is built on the
// reply path (json-bytes.ts says what strings cost there). A served request's
// event and a refused request's client row are derived from the rest (request-rows.ts), so the
// line carries each fact once.
import { JSON_NUMBER_BOUND, jsonStringBound, JsonBytes } from '../json-bytes';
import type { ClientRow, EventRow } from './rows';
import { refusedRowOf, type ServedFacts } from './request-rows';

/**
 * A served request: its client row, the machine id it replaced and what its event adds to the
 * row (the event itself is made when the statements run: servedEventOf). The write waits for the
 * next commit, so what it holds outlives young-generation collections: it holds little.
 */
interface ServedWrite extends ServedFacts {
  readonly kind: 'served';
  readonly row: ClientRow;
  /** The CMID this request replaced (PROTOCOL.md §7.2), undefined = none. */
  readonly previous: string | undefined;
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
const SERVED_KIND = `,"${SERVED}"`;
const REFUSED_KIND = `,"${REFUSED}"`;
const SETTING_KIND = `,"${SETTING}"`;

/**
 * One line per write, newline included, written straight into a buffer that holds a turn's lines
 * (the bytes JSON.stringify of the flat array would give: decodeRecord reads them with JSON.parse).
 */
export class RecordLines {
  private buf = Buffer.allocUnsafe(INITIAL_BYTES);
  private readonly out = new JsonBytes(this.buf, 0);

  get empty(): boolean {
    return this.out.at === 0;
  }

  add(seq: number, w: JournaledWrite): void {
    const bound = recordBound(w);
    if (this.out.at + bound > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.out.at + bound));
      this.buf.copy(grown, 0, 0, this.out.at);
      this.buf = grown;
      this.out.buf = grown;
    }
    writeRecord(this.out, seq, w);
  }

  /** The lines added since the last take(), valid until the next add(). */
  take(): Buffer {
    const lines = this.buf.subarray(0, this.out.at);
    this.out.at = 0;
    // A flood's turn can leave a large buffer behind: the next turn starts small again.
    if (this.buf.length > MAX_KEPT_BYTES) {
      this.buf = Buffer.allocUnsafe(INITIAL_BYTES);
      this.out.buf = this.buf;
    }
    return lines;
  }
}

const INITIAL_BYTES = 4096;
const MAX_KEPT_BYTES = 65536;

/** One line, newline included, as a string (tests, and what RecordLines writes). */
export function encodeRecord(seq: number, w: JournaledWrite): string {
  const out = new JsonBytes(Buffer.allocUnsafe(recordBound(w)), 0);
  writeRecord(out, seq, w);
  return out.buf.toString('utf8', 0, out.at);
}

/** The most bytes writeRecord can take: every string escaped in full, every number at its longest. */
function recordBound(w: JournaledWrite): number {
  if (w.kind === 'setting') return jsonStringBound(w.key) + jsonStringBound(w.value) + 64;
  let n = 20 * JSON_NUMBER_BOUND + 64;
  if (w.kind === 'served') {
    const r = w.row;
    n += jsonStringBound(r.application) + jsonStringBound(r.cmid) + jsonStringBound(r.workstation) + jsonStringBound(r.sku);
    n += jsonStringBound(r.kms_group) + jsonStringBound(r.client_address) + jsonStringBound(w.previous ?? '');
    return n + jsonStringBound(w.previousCmid);
  }
  const e = w.event;
  n += jsonStringBound(e.application) + jsonStringBound(e.cmid) + jsonStringBound(e.workstation) + jsonStringBound(e.sku);
  n += jsonStringBound(e.kms_group) + jsonStringBound(e.client_address) + jsonStringBound(e.previous_cmid) + jsonStringBound(e.code);
  return n;
}

function writeRecord(out: JsonBytes, seq: number, w: JournaledWrite): void {
  out.raw('[');
  out.number(seq);
  if (w.kind === 'served') {
    const r = w.row;
    out.raw(SERVED_KIND);
    str(out, r.application);
    str(out, r.cmid);
    num(out, r.now);
    str(out, r.workstation);
    str(out, r.sku);
    str(out, r.kms_group);
    num(out, r.license_status);
    num(out, r.protocol_version);
    str(out, r.client_address);
    num(out, r.vm);
    num(out, r.required_count);
    str(out, w.previous ?? '');
    str(out, w.previousCmid);
    num(out, w.requestTimeMs);
    num(out, w.currentCount);
    num(out, w.persistRequired);
    num(out, w.servedMs);
  } else if (w.kind === 'refused') {
    const e = w.event;
    out.raw(REFUSED_KIND);
    num(out, w.row === undefined ? 0 : 1);
    num(out, e.time_ms);
    num(out, e.hresult);
    str(out, e.code);
    str(out, e.application);
    str(out, e.kms_group);
    str(out, e.sku);
    str(out, e.cmid);
    str(out, e.previous_cmid);
    str(out, e.workstation);
    num(out, e.required_count);
    num(out, e.license_status);
    num(out, e.vm);
    num(out, e.protocol_version);
    str(out, e.client_address);
    num(out, e.request_time_ms);
  } else {
    out.raw(SETTING_KIND);
    str(out, w.key);
    str(out, w.value);
  }
  out.raw(']\n');
}

/** A member of the array: a comma, then the value. */
function str(out: JsonBytes, v: string): void {
  out.raw(',');
  out.string(v);
}

function num(out: JsonBytes, v: number): void {
  out.raw(',');
  out.number(v);
}

/**
 * The shape of each kind's line after seq and kind, one letter a field, each what the host itself
 * writes: g = a lowercase GUID, o = the same or '', t = text a client chose (MAX_TEXT at most), c
 * = an error code, k / v = a setting's key / value, m = a time (0 to the latest plausible), u = a
 * u32, b = 0 or 1, n = a count (an integer >= 0), i = any integer (the client's own clock). A line
 * a crash cannot make and this host cannot write (a damaged disk, a hand edit, another program) is
 * never replayed: a machine stored with a time in the year 9999 would be counted for ever.
 */
const FIELDS: Readonly<Record<string, string>> = {
  [SERVED]: 'ggmtgguutbuooinum',
  [REFUSED]: 'bmucoooootuubuti',
  [SETTING]: 'kv',
};

/** Far beyond any real sequence (a century at 100,000 requests/s), far below 2^53, where +1 stops counting. */
const MAX_SEQ = 2 ** 48;
/** Workstation names are 64 UTF-16 units on the wire; an address with its scope fits easily. */
const MAX_TEXT = 256;
const MAX_SETTING_KEY = 128;
const MAX_SETTING_VALUE = 1024;
/** Longer than any record can be with every string escaped in full: not parsed at all. */
const MAX_LINE_CHARS = 16_384;
const LOWER_GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ERROR_CODE = /^[\x21-\x7e]{0,128}$/;
const U32_MAX = 0xffff_ffff;

function plausible(kind: string, v: unknown, latestMs: number): boolean {
  switch (kind) {
    case 'g':
      return typeof v === 'string' && LOWER_GUID.test(v);
    case 'o':
      return typeof v === 'string' && (v === '' || LOWER_GUID.test(v));
    case 't':
      return typeof v === 'string' && v.length <= MAX_TEXT;
    case 'c':
      return typeof v === 'string' && ERROR_CODE.test(v);
    case 'k':
      return typeof v === 'string' && v.length > 0 && v.length <= MAX_SETTING_KEY;
    case 'v':
      return typeof v === 'string' && v.length <= MAX_SETTING_VALUE;
    case 'm':
      return typeof v === 'number' && v >= 0 && v <= latestMs;
    case 'u':
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= U32_MAX;
    case 'b':
      return v === 0 || v === 1;
    case 'n':
      return Number.isSafeInteger(v) && (v as number) >= 0;
    default:
      return Number.isSafeInteger(v);
  }
}

/**
 * One line back into the write it stands for; undefined for anything that is not a whole, well
 * formed record the host could have written (the torn end of a write cut short by a crash or a
 * power cut, damage, values out of range, a time later than `latestMs`), so that nothing the
 * statements could refuse, and nothing that would inflate a count, ever reaches them.
 */
export function decodeRecord(line: string, latestMs: number = Number.MAX_SAFE_INTEGER): JournalRecord | undefined {
  // Junk (an empty line, a torn one) is refused before JSON.parse, whose exceptions cost microseconds each.
  if (line.length > MAX_LINE_CHARS || line.charCodeAt(0) !== 0x5b || line.charCodeAt(line.length - 1) !== 0x5d) return undefined;
  let a: unknown;
  try {
    a = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(a) || !Number.isSafeInteger(a[0]) || a[0] < 1 || a[0] > MAX_SEQ) return undefined;
  const fields = FIELDS[a[1] as string];
  if (fields === undefined || a.length !== fields.length + 2) return undefined;
  for (let i = 0; i < fields.length; i++) {
    if (!plausible(fields[i]!, a[i + 2], latestMs)) return undefined;
  }
  // A refused request's client row exists only when it named an application and a machine.
  if (a[1] === REFUSED && a[2] === 1 && (a[6] === '' || a[9] === '')) return undefined;
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
    const facts = { previousCmid: s(12), requestTimeMs: n(13), currentCount: n(14) };
    return { seq, write: { kind: 'served', row, previous, ...facts, persistRequired: n(15), servedMs: n(16) } };
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
