// JSON text written straight into a Buffer. The request log line and the request journal's line
// are made once per KMS request, on the reply path. Built as strings they were a third of what
// the server allocated per activation (about 4 KB of pieces joined, flattened, measured and copied
// into a Buffer again), and the garbage collector paid for it: the log line alone cost a keep-alive
// activation 10–15 µs in the server against 2 µs in a loop.

/** The most bytes string() writes for `s`: one \uXXXX escape per UTF-16 unit, and the quotes. */
export function jsonStringBound(s: string): number {
  return 6 * s.length + 2;
}

/** The most bytes number() writes (JSON.stringify's longest: "-0.0000012345678901234567"). */
export const JSON_NUMBER_BOUND = 25;

const QUOTE = 0x22;

/**
 * A cursor in a Buffer the caller has made room in (jsonStringBound, JSON_NUMBER_BOUND): the
 * writes do not check the end, as Buffer's own writes cut text short instead of failing.
 */
export class JsonBytes {
  constructor(
    public buf: Buffer,
    public at: number,
  ) {}

  /** Text the caller knows is ASCII that needs no escape: member names, punctuation, fixed values. */
  raw(s: string): void {
    // A loop: Buffer.write's argument checks cost more than copying these few bytes.
    const buf = this.buf;
    let p = this.at;
    for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i);
    this.at = p;
  }

  /**
   * `s` as a JSON string literal, the bytes of `escapeJson(JSON.stringify(s))` in UTF-8. Printable
   * ASCII without `"` or `\` (GUIDs, addresses, catalogue names: nearly every value) is copied as
   * it is; anything else takes the slow path.
   */
  string(s: string, escapeJson?: (json: string) => string): void {
    const buf = this.buf;
    let p = this.at;
    buf[p++] = QUOTE;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x7f) {
        // What was copied is written over.
        const json = JSON.stringify(s);
        this.at += buf.write(escapeJson === undefined ? json : escapeJson(json), this.at, 'utf8');
        return;
      }
      buf[p++] = c;
    }
    buf[p++] = QUOTE;
    this.at = p;
  }

  /** `n` as JSON.stringify writes it, non-finite as null (JSON has no NaN). */
  number(n: number): void {
    if (n >= 0 && Number.isSafeInteger(n)) {
      // Digits from the right: no string for the timestamps and counts every line carries.
      let digits = 1;
      for (let v = n; v >= 10; v = Math.floor(v / 10)) digits++;
      const buf = this.buf;
      let p = this.at + digits;
      let v = n;
      do {
        const q = Math.floor(v / 10);
        buf[--p] = 0x30 + (v - q * 10);
        v = q;
      } while (v > 0);
      this.at += digits;
      return;
    }
    this.raw(Number.isFinite(n) ? String(n) : 'null');
  }
}
