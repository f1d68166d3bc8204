// Domain names on the wire (RFC 1035 §3.1, §4.1.4) and in presentation form. Decoding is the
// part hostile input attacks, so every limit is checked here: label ≤ 63 octets, name ≤ 255
// octets, and compression pointers may only point backwards, which makes loops impossible.
import { ProtocolError } from '../../errors';

const MAX_LABEL_OCTETS = 63;
const MAX_NAME_OCTETS = 255; // wire length including the root label (RFC 1035 §2.3.4)
const POINTER_MASK = 0xc0;
// Compression pointers followed in one name, as BIND allows (DNS_POINTER_MAXHOPS). An encoder
// needs one per suffix it reuses; without a bound, a message of pointers to pointers makes each
// name walk all those before it, and decoding cost grows with the square of the message length.
const MAX_POINTER_HOPS = 16;

function malformed(message: string, at: number): ProtocolError {
  return new ProtocolError('KMS_ERR_DNS_MALFORMED', message, { at });
}

/**
 * Decodes the name at `offset`; returns it in presentation form without the trailing dot
 * ('' = root) and the offset just after its in-place bytes.
 */
export function decodeName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let octets = 1;
  // Every pointer must point strictly before the label sequence it was found in (RFC 1035
  // §4.1.4: "a prior occurrence"), so the walk cannot revisit a position and always ends.
  let floor = offset;
  let hops = 0;
  for (;;) {
    if (pos >= msg.length) throw malformed(`name runs past the end of the message`, pos);
    const len = msg[pos]!;
    if ((len & POINTER_MASK) === POINTER_MASK) {
      if (pos + 1 >= msg.length) throw malformed('compression pointer cut short', pos);
      const target = ((len & 0x3f) << 8) | msg[pos + 1]!;
      if (target >= floor) throw malformed(`compression pointer to ${target} does not point backwards`, pos);
      if (++hops > MAX_POINTER_HOPS) throw malformed(`more than ${MAX_POINTER_HOPS} compression pointers in one name`, pos);
      if (next < 0) next = pos + 2;
      floor = target;
      pos = target;
      continue;
    }
    if (len & POINTER_MASK) throw malformed(`reserved label type 0x${len.toString(16)}`, pos);
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    octets += len + 1;
    if (octets > MAX_NAME_OCTETS) throw malformed(`name longer than ${MAX_NAME_OCTETS} octets`, pos);
    if (pos + 1 + len > msg.length) throw malformed('label runs past the end of the message', pos);
    labels.push(escapeLabel(msg.subarray(pos + 1, pos + 1 + len)));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function escapeLabel(bytes: Buffer): string {
  let s = '';
  for (const b of bytes) {
    if (b === 0x2e || b === 0x5c) s += '\\' + String.fromCharCode(b);
    else if (b > 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += '\\' + b.toString().padStart(3, '0');
  }
  return s;
}

/** Splits a presentation-form name into wire labels; throws a TypeError for names we must never emit. */
export function nameToLabels(name: string): Buffer[] {
  const trimmed = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  if (trimmed === '') return [];
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed.charCodeAt(i);
    if (c === 0x5c) {
      const digits = /^\d{3}/.exec(trimmed.slice(i + 1, i + 4));
      if (digits) {
        cur.push(Number(digits[0]) & 0xff);
        i += 3;
      } else {
        cur.push(trimmed.charCodeAt(i + 1) & 0xff);
        i += 1;
      }
    } else if (c === 0x2e) {
      labels.push(Buffer.from(cur));
      cur = [];
    } else {
      if (c > 0x7f) throw new TypeError(`non-ASCII character in DNS name "${name}" (use its xn-- form)`);
      cur.push(c);
    }
  }
  labels.push(Buffer.from(cur));
  let octets = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > MAX_LABEL_OCTETS) throw new TypeError(`bad label length in DNS name "${name}"`);
    octets += l.length + 1;
  }
  if (octets > MAX_NAME_OCTETS) throw new TypeError(`DNS name "${name}" is longer than ${MAX_NAME_OCTETS} octets`);
  return labels;
}

/** Lower-cased, without trailing dot: the key names are compared by (RFC 4343: ASCII only). */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  return n.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export function sameName(a: string, b: string): boolean {
  return canonicalName(a) === canonicalName(b);
}

/** True when `name` equals `zone` or lies below it. */
export function isInZone(name: string, zone: string): boolean {
  const n = canonicalName(name);
  const z = canonicalName(zone);
  return z === '' || n === z || n.endsWith('.' + z);
}

/** Uncompressed, lower-cased wire form (RFC 4034 §6.2), as TSIG digests it. */
export function canonicalWireName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of nameToLabels(canonicalName(name))) parts.push(Buffer.from([l.length]), l);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}
