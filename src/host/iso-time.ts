// A request's client time as the log line and the event log show it (the text of
// Date.prototype.toISOString), built without a Date per request.
import { JsonBytes } from '../json-bytes';

/** Date's limit (ECMA-262 §21.4.1.22): ±8.64 × 10^15 ms around 1970. */
const MAX_DATE_MS = 8.64e15;
const DAY_MS = 86_400_000;
// Most clients' clocks are on the same day: its "YYYY-MM-DDT" is kept, and only the time of day
// is formatted per request (a Date and toISOString per request cost about half a µs).
let isoDay = Number.NaN;
let isoDayText = '';

/** Whether `time` (ms since 1970) is within Date's range, so that it has an ISO text. */
export function inDateRange(time: number): boolean {
  return Math.abs(time) <= MAX_DATE_MS;
}

/** Date.prototype.toISOString's text for `ms`, or undefined outside Date's range. */
export function isoTime(time: number): string | undefined {
  scratch.at = 0;
  return writeIsoTime(scratch, time) ? scratch.buf.toString('latin1', 0, scratch.at) : undefined;
}

/** Room for the longest text, "+275760-09-13T00:00:00.000Z". */
const scratch = new JsonBytes(Buffer.alloc(32), 0);

/**
 * isoTime(time)'s text written as ASCII into `out` (the log line, no string made); false, and
 * nothing written, outside Date's range.
 */
export function writeIsoTime(out: JsonBytes, time: number): boolean {
  if (!inDateRange(time)) return false;
  const ms = Math.trunc(time);
  const day = dayOf(ms);
  out.raw(isoDayText);
  let rest = ms - day * DAY_MS;
  const millis = rest % 1000;
  rest = (rest - millis) / 1000;
  const seconds = rest % 60;
  rest = (rest - seconds) / 60;
  const minutes = rest % 60;
  const hours = (rest - minutes) / 60;
  const buf = out.buf;
  let p = out.at;
  p = digits2(buf, p, hours);
  buf[p++] = COLON;
  p = digits2(buf, p, minutes);
  buf[p++] = COLON;
  p = digits2(buf, p, seconds);
  buf[p++] = DOT;
  buf[p++] = ZERO + Math.floor(millis / 100);
  p = digits2(buf, p, millis % 100);
  buf[p++] = Z;
  out.at = p;
  return true;
}

/**
 * The day of `ms` (UTC), with its "YYYY-MM-DDT" in isoDayText. Two days are kept: a log line
 * writes its own time and the client's clock, which lie on two days around midnight (or for a
 * client whose clock is off), and one kept day would be made anew twice per line.
 */
function dayOf(ms: number): number {
  const day = Math.floor(ms / DAY_MS);
  if (day === isoDay) return day;
  if (day === otherDay) {
    [isoDay, otherDay] = [otherDay, isoDay];
    [isoDayText, otherDayText] = [otherDayText, isoDayText];
    return day;
  }
  otherDay = isoDay;
  otherDayText = isoDayText;
  isoDay = day;
  isoDayText = new Date(day * DAY_MS).toISOString().slice(0, -'00:00:00.000Z'.length);
  return day;
}

let otherDay = Number.NaN;
let otherDayText = '';

function digits2(buf: Buffer, p: number, n: number): number {
  const tens = Math.floor(n / 10);
  buf[p] = ZERO + tens;
  buf[p + 1] = ZERO + (n - tens * 10);
  return p + 2;
}

const ZERO = 0x30;
const COLON = 0x3a;
const DOT = 0x2e;
const Z = 0x5a;
