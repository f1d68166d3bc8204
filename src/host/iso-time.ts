// A request's client time as the log line and the event log show it (the text of
// Date.prototype.toISOString), built without a Date per request.

/** Date's limit (ECMA-262 §21.4.1.22): ±8.64 × 10^15 ms around 1970. */
const MAX_DATE_MS = 8.64e15;
const DAY_MS = 86_400_000;
// Most clients' clocks are on the same day: its "YYYY-MM-DDT" is kept, and only the time of day
// is formatted per request (a Date and toISOString per request cost about half a µs).
let isoDay = Number.NaN;
let isoDayText = '';

/** Date.prototype.toISOString's text for `ms`, or undefined outside Date's range. */
export function isoTime(time: number): string | undefined {
  if (!(Math.abs(time) <= MAX_DATE_MS)) return undefined;
  const ms = Math.trunc(time); // as Date's TimeClip
  const day = Math.floor(ms / DAY_MS);
  if (day !== isoDay) {
    isoDay = day;
    isoDayText = new Date(day * DAY_MS).toISOString().slice(0, -'00:00:00.000Z'.length);
  }
  let rest = ms - day * DAY_MS;
  const millis = rest % 1000;
  rest = (rest - millis) / 1000;
  const seconds = rest % 60;
  rest = (rest - seconds) / 60;
  const minutes = rest % 60;
  const hours = (rest - minutes) / 60;
  return `${isoDayText}${two(hours)}:${two(minutes)}:${two(seconds)}.${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
}

function two(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}
