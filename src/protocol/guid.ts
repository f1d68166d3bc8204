// GUIDs on the wire use the Windows "mixed-endian" layout (PROTOCOL.md conventions): the first
// three groups little-endian, the last eight bytes as written. In code they are lowercase strings.

const GUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export const NIL_GUID = '00000000-0000-0000-0000-000000000000';

/**
 * An id in the canonical lowercase, for lookups and storage. The codec writes ids lowercase, so a
 * request's ids come back as they are: toLowerCase makes a new string every time (and the maps
 * keyed by it hash that string again), about a dozen times per request.
 */
export function lowerId(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c >= 0x80) return s.toLowerCase();
  }
  return s;
}

export function isGuid(s: string): boolean {
  return GUID_SHAPE.test(s.toLowerCase());
}

function normalizeGuid(s: string): string {
  const g = s
    .trim()
    .replace(/^\{|\}$/g, '')
    .toLowerCase();
  if (!GUID_SHAPE.test(g)) throw new TypeError(`not a GUID: ${s}`);
  return g;
}

/** The two ASCII hex digits of each byte value, at 2 × value. */
const HEX_DIGITS = Buffer.from(HEX.join(''), 'latin1');
/** Which wire byte goes to each of the 16 hex pairs of the text (−1: the dash between groups). */
const TEXT_ORDER = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15];
// The text is assembled here and read out as one string: 5 GUIDs per request, each built from 20
// concatenations before, were about 600 bytes of intermediate strings apiece.
const scratch = Buffer.alloc(36, '-');

export function bytesToGuid(b: Uint8Array, at = 0): string {
  let p = 0;
  for (const i of TEXT_ORDER) {
    if (i < 0) {
      p++;
      continue;
    }
    const v = b[at + i]!;
    scratch[p++] = HEX_DIGITS[2 * v]!;
    scratch[p++] = HEX_DIGITS[2 * v + 1]!;
  }
  return scratch.toString('latin1', 0, 36);
}

/**
 * bytesToGuid for GUIDs that repeat from message to message (a site's few application, SKU and KMS
 * group IDs): the text made the first time is handed out again while its slot keeps it. Fewer
 * strings per request, and one text per product, whose hash the maps keyed by it already know.
 * Any 16 bytes give the right text: a stranger only takes a slot over.
 */
export class RepeatedGuids {
  private readonly words = new Int32Array(4 * REPEATED_SLOTS);
  private readonly texts: (string | undefined)[] = new Array<string | undefined>(REPEATED_SLOTS).fill(undefined);

  text(b: Uint8Array, at = 0): string {
    const w0 = word(b, at);
    const w1 = word(b, at + 4);
    const w2 = word(b, at + 8);
    const w3 = word(b, at + 12);
    const slot = (w0 ^ w1 ^ w2 ^ w3 ^ (w3 >>> 16)) & (REPEATED_SLOTS - 1);
    const k = 4 * slot;
    const words = this.words;
    const known = this.texts[slot];
    if (known !== undefined && words[k] === w0 && words[k + 1] === w1 && words[k + 2] === w2 && words[k + 3] === w3) return known;
    const text = bytesToGuid(b, at);
    words[k] = w0;
    words[k + 1] = w1;
    words[k + 2] = w2;
    words[k + 3] = w3;
    this.texts[slot] = text;
    return text;
  }
}

/** A power of two. */
const REPEATED_SLOTS = 64;

function word(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

export function guidToBytes(guid: string): Buffer {
  const hex = normalizeGuid(guid).replace(/-/g, '');
  const raw = Buffer.from(hex, 'hex');
  const out = Buffer.from(raw);
  out[0] = raw[3]!;
  out[1] = raw[2]!;
  out[2] = raw[1]!;
  out[3] = raw[0]!;
  out[4] = raw[5]!;
  out[5] = raw[4]!;
  out[6] = raw[7]!;
  out[7] = raw[6]!;
  return out;
}

/** Where each of the 16 wire bytes is in the canonical text: the first three groups reversed. */
const WIRE_BYTE_AT = [6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34];

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * guidToBytes(guid) written into out[at, at + 16). The canonical lowercase form (what the codecs
 * produce: every GUID on the request path) is read in place, without the normalising copies and
 * the buffer guidToBytes allocates; any other accepted form goes through guidToBytes.
 */
export function writeGuid(out: Buffer, at: number, guid: string): void {
  if (guid.length === 36 && guid[8] === '-' && guid[13] === '-' && guid[18] === '-' && guid[23] === '-') {
    let ok = true;
    for (let i = 0; i < 16; i++) {
      const p = WIRE_BYTE_AT[i]!;
      const hi = hexDigit(guid.charCodeAt(p));
      const lo = hexDigit(guid.charCodeAt(p + 1));
      if (hi < 0 || lo < 0) {
        ok = false;
        break;
      }
      out[at + i] = (hi << 4) | lo;
    }
    if (ok) return;
  }
  guidToBytes(guid).copy(out, at);
}
