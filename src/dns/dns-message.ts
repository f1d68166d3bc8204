// A small, strict DNS message codec (RFC 1035 §4, RFC 6891 OPT, RFC 8945 TSIG, RFC 2782 SRV).
// dns2's parser is lenient (it keeps going past broken records and gives no offsets), while the
// server must tell FORMERR from silence and TSIG must hash exact byte ranges, so both use this.
import net from 'node:net';
import { ProtocolError } from '../errors';
import { decodeName, nameToLabels, canonicalName } from './dns-names';

export const RR_TYPE = Object.freeze({
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41, // EDNS(0) pseudo-record (RFC 6891)
  TSIG: 250, // RFC 8945
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const);

export const RR_CLASS = Object.freeze({
  IN: 1,
  CH: 3,
  NONE: 254, // RFC 2136 §2.4: delete an RR from an RRset
  ANY: 255,
} as const);

export const OPCODE = Object.freeze({ QUERY: 0, NOTIFY: 4, UPDATE: 5 } as const);

export const RCODE = Object.freeze({
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
  BADVERS: 16, // extended rcode, needs an OPT (RFC 6891 §6.1.3); BADSIG in a TSIG error field
  BADKEY: 17,
  BADTIME: 18,
} as const);

export const RCODE_NAME: ReadonlyMap<number, string> = new Map(
  Object.entries(RCODE).map(([k, v]) => [v, k === 'BADVERS' ? 'BADVERS/BADSIG' : k]),
);

export const HEADER_LENGTH = 12;

export interface DnsHeader {
  readonly id: number;
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly ad: boolean;
  readonly cd: boolean;
  /** The 4-bit header rcode; an OPT record may extend it. */
  readonly rcode: number;
}

export interface DnsQuestion {
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

export type RData =
  | { readonly kind: 'a'; readonly address: string }
  | { readonly kind: 'aaaa'; readonly address: string }
  | { readonly kind: 'name'; readonly target: string } // NS, CNAME, PTR
  | { readonly kind: 'srv'; readonly priority: number; readonly weight: number; readonly port: number; readonly target: string }
  | {
      readonly kind: 'soa';
      readonly mname: string;
      readonly rname: string;
      readonly serial: number;
      readonly refresh: number;
      readonly retry: number;
      readonly expire: number;
      readonly minimum: number;
    }
  | { readonly kind: 'txt'; readonly strings: readonly Buffer[] }
  | {
      readonly kind: 'tsig';
      readonly algorithm: string;
      readonly timeSigned: number; // seconds since the epoch (48-bit on the wire)
      readonly fudge: number;
      readonly mac: Buffer;
      readonly originalId: number;
      readonly error: number;
      readonly other: Buffer;
    }
  | { readonly kind: 'raw'; readonly bytes: Buffer }; // unknown types, OPT options, empty update RRs

export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  readonly data: RData;
}

/** A decoded record also knows where it started, so TSIG can cut the message there. */
export interface DecodedRecord extends DnsRecord {
  readonly offset: number;
}

export interface DnsMessage {
  readonly header: DnsHeader;
  readonly questions: readonly DnsQuestion[];
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
}

export interface DecodedMessage extends DnsMessage {
  readonly answers: readonly DecodedRecord[];
  readonly authorities: readonly DecodedRecord[];
  readonly additionals: readonly DecodedRecord[];
}

/** Zero-valued header fields, to spread over. */
export const EMPTY_HEADER: DnsHeader = Object.freeze({
  id: 0,
  qr: false,
  opcode: 0,
  aa: false,
  tc: false,
  rd: false,
  ra: false,
  ad: false,
  cd: false,
  rcode: 0,
});

// ---------------------------------------------------------------- decoding

function malformed(message: string, at: number): ProtocolError {
  return new ProtocolError('KMS_ERR_DNS_MALFORMED', message, { at });
}

function need(msg: Buffer, at: number, n: number, what: string): void {
  if (at + n > msg.length) throw malformed(`${what} runs past the end of the message`, at);
}

export function decodeHeader(msg: Buffer): DnsHeader {
  need(msg, 0, HEADER_LENGTH, 'header');
  const flags = msg.readUInt16BE(2);
  return {
    id: msg.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
  };
}

/** Section counts as declared in the header. */
export function headerCounts(msg: Buffer): [number, number, number, number] {
  need(msg, 0, HEADER_LENGTH, 'header');
  return [msg.readUInt16BE(4), msg.readUInt16BE(6), msg.readUInt16BE(8), msg.readUInt16BE(10)];
}

function decodeRData(msg: Buffer, type: number, start: number, end: number): RData {
  const len = end - start;
  const nameAt = (at: number): { name: string; next: number } => {
    const r = decodeName(msg, at);
    if (r.next > end) throw malformed('name runs past RDLENGTH', at);
    return r;
  };
  switch (type) {
    case RR_TYPE.A:
      if (len !== 4) throw malformed(`A record with RDLENGTH ${len}`, start);
      return { kind: 'a', address: Array.from(msg.subarray(start, end)).join('.') };
    case RR_TYPE.AAAA:
      if (len !== 16) throw malformed(`AAAA record with RDLENGTH ${len}`, start);
      return { kind: 'aaaa', address: ipv6ToText(msg.subarray(start, end)) };
    case RR_TYPE.NS:
    case RR_TYPE.CNAME:
    case RR_TYPE.PTR: {
      const r = nameAt(start);
      if (r.next !== end) throw malformed('trailing bytes after the name in RDATA', r.next);
      return { kind: 'name', target: r.name };
    }
    case RR_TYPE.SRV: {
      if (len < 7) throw malformed(`SRV record with RDLENGTH ${len}`, start);
      const r = nameAt(start + 6);
      if (r.next !== end) throw malformed('trailing bytes after the SRV target', r.next);
      return { kind: 'srv', priority: msg.readUInt16BE(start), weight: msg.readUInt16BE(start + 2), port: msg.readUInt16BE(start + 4), target: r.name };
    }
    case RR_TYPE.SOA: {
      const m = nameAt(start);
      const r = nameAt(m.next);
      if (r.next + 20 !== end) throw malformed('SOA RDATA has the wrong length', r.next);
      const at = r.next;
      return {
        kind: 'soa',
        mname: m.name,
        rname: r.name,
        serial: msg.readUInt32BE(at),
        refresh: msg.readUInt32BE(at + 4),
        retry: msg.readUInt32BE(at + 8),
        expire: msg.readUInt32BE(at + 12),
        minimum: msg.readUInt32BE(at + 16),
      };
    }
    case RR_TYPE.TXT: {
      const strings: Buffer[] = [];
      let at = start;
      while (at < end) {
        const n = msg[at]!;
        if (at + 1 + n > end) throw malformed('TXT string runs past RDLENGTH', at);
        strings.push(Buffer.from(msg.subarray(at + 1, at + 1 + n)));
        at += 1 + n;
      }
      return { kind: 'txt', strings };
    }
    case RR_TYPE.TSIG: {
      // The algorithm name is never compressed (RFC 8945 §4.2), but decodeName accepts a
      // backwards pointer; the MAC check fails then anyway.
      const a = nameAt(start);
      let at = a.next;
      need(msg, at, 10, 'TSIG fixed fields');
      if (at + 10 > end) throw malformed('TSIG RDATA too short', at);
      const timeSigned = msg.readUInt16BE(at) * 2 ** 32 + msg.readUInt32BE(at + 2);
      const fudge = msg.readUInt16BE(at + 6);
      const macSize = msg.readUInt16BE(at + 8);
      at += 10;
      if (at + macSize + 6 > end) throw malformed('TSIG MAC runs past RDLENGTH', at);
      const mac = Buffer.from(msg.subarray(at, at + macSize));
      at += macSize;
      const originalId = msg.readUInt16BE(at);
      const error = msg.readUInt16BE(at + 2);
      const otherLen = msg.readUInt16BE(at + 4);
      at += 6;
      if (at + otherLen !== end) throw malformed('TSIG other data does not match RDLENGTH', at);
      return { kind: 'tsig', algorithm: a.name, timeSigned, fudge, mac, originalId, error, other: Buffer.from(msg.subarray(at, end)) };
    }
    default:
      return { kind: 'raw', bytes: Buffer.from(msg.subarray(start, end)) };
  }
}

function decodeRecord(msg: Buffer, at: number): { rr: DecodedRecord; next: number } {
  const n = decodeName(msg, at);
  let p = n.next;
  need(msg, p, 10, 'record header');
  const type = msg.readUInt16BE(p);
  const klass = msg.readUInt16BE(p + 2);
  const ttl = msg.readUInt32BE(p + 4);
  const rdlength = msg.readUInt16BE(p + 8);
  p += 10;
  need(msg, p, rdlength, 'RDATA');
  // Update messages carry RRs with no RDATA (RFC 2136 §2.5.2/§2.5.3); keep them raw.
  const data = rdlength === 0 ? ({ kind: 'raw', bytes: Buffer.alloc(0) } as const) : decodeRData(msg, type, p, p + rdlength);
  return { rr: { name: n.name, type, class: klass, ttl, data, offset: at }, next: p + rdlength };
}

/**
 * Decodes a whole message. Any inconsistency (counts that promise more than the bytes hold,
 * bad names, RDATA that does not fill RDLENGTH, trailing bytes) is a ProtocolError with code
 * KMS_ERR_DNS_MALFORMED: the caller answers FORMERR or stays silent.
 */
export function decodeMessage(msg: Buffer): DecodedMessage {
  const header = decodeHeader(msg);
  const [qd, an, ns, ar] = headerCounts(msg);
  let at = HEADER_LENGTH;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const n = decodeName(msg, at);
    need(msg, n.next, 4, 'question');
    questions.push({ name: n.name, type: msg.readUInt16BE(n.next), class: msg.readUInt16BE(n.next + 2) });
    at = n.next + 4;
  }
  const sections: DecodedRecord[][] = [[], [], []];
  const counts = [an, ns, ar];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const r = decodeRecord(msg, at);
      sections[s]!.push(r.rr);
      at = r.next;
    }
  }
  if (at !== msg.length) throw malformed(`${msg.length - at} bytes after the last record the header announces`, at);
  return { header, questions, answers: sections[0]!, authorities: sections[1]!, additionals: sections[2]! };
}

// ---------------------------------------------------------------- encoding

export function encodeFlags(h: DnsHeader): number {
  return (
    (h.qr ? 0x8000 : 0) |
    ((h.opcode & 0xf) << 11) |
    (h.aa ? 0x0400 : 0) |
    (h.tc ? 0x0200 : 0) |
    (h.rd ? 0x0100 : 0) |
    (h.ra ? 0x0080 : 0) |
    (h.ad ? 0x0020 : 0) |
    (h.cd ? 0x0010 : 0) |
    (h.rcode & 0xf)
  );
}

/** Appends records to a growing message, compressing names where RFC 3597 §4 allows it. */
class MessageWriter {
  private buf = Buffer.alloc(512);
  private len = 0;
  // canonical suffix → offset of its first occurrence (pointer targets must be < 0x4000)
  private readonly suffixes = new Map<string, number>();

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  get length(): number {
    return this.len;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  backfill16(at: number, v: number): void {
    this.buf.writeUInt16BE(v, at);
  }

  name(name: string, compress: boolean): void {
    const labels = nameToLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = canonicalName(labels.slice(i).map((l) => escapeForKey(l)).join('.'));
      const known = compress ? this.suffixes.get(key) : undefined;
      if (known !== undefined) {
        this.u16(0xc000 | known);
        return;
      }
      if (this.len < 0x4000 && !this.suffixes.has(key)) this.suffixes.set(key, this.len);
      const l = labels[i]!;
      this.u8(l.length);
      this.bytes(l);
    }
    this.u8(0);
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

function escapeForKey(l: Buffer): string {
  return l.toString('latin1').replace(/[\\.]/g, (c) => '\\' + c);
}

function writeRData(w: MessageWriter, rr: DnsRecord): void {
  const d = rr.data;
  switch (d.kind) {
    case 'a':
      w.bytes(ipv4ToBytes(d.address));
      return;
    case 'aaaa':
      w.bytes(ipv6ToBytes(d.address));
      return;
    case 'name':
      w.name(d.target, true);
      return;
    case 'srv':
      w.u16(d.priority);
      w.u16(d.weight);
      w.u16(d.port);
      w.name(d.target, false); // RFC 2782: "name compression is not to be used for this field"
      return;
    case 'soa':
      w.name(d.mname, true);
      w.name(d.rname, true);
      for (const v of [d.serial, d.refresh, d.retry, d.expire, d.minimum]) w.u32(v);
      return;
    case 'txt':
      for (const s of d.strings) {
        if (s.length > 255) throw new TypeError('TXT string longer than 255 bytes');
        w.u8(s.length);
        w.bytes(s);
      }
      return;
    case 'tsig':
      w.name(d.algorithm, false);
      w.u16(Math.floor(d.timeSigned / 2 ** 32));
      w.u32(d.timeSigned % 2 ** 32);
      w.u16(d.fudge);
      w.u16(d.mac.length);
      w.bytes(d.mac);
      w.u16(d.originalId);
      w.u16(d.error);
      w.u16(d.other.length);
      w.bytes(d.other);
      return;
    case 'raw':
      w.bytes(d.bytes);
      return;
  }
}

function writeRecord(w: MessageWriter, rr: DnsRecord): void {
  w.name(rr.name, rr.type !== RR_TYPE.TSIG);
  w.u16(rr.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lenAt = w.length;
  w.u16(0);
  writeRData(w, rr);
  w.backfill16(lenAt, w.length - lenAt - 2);
}

/** Encodes a message; the header counts come from the sections. */
export function encodeMessage(m: DnsMessage): Buffer {
  const w = new MessageWriter();
  w.u16(m.header.id);
  w.u16(encodeFlags(m.header));
  w.u16(m.questions.length);
  w.u16(m.answers.length);
  w.u16(m.authorities.length);
  w.u16(m.additionals.length);
  for (const q of m.questions) {
    w.name(q.name, true);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const rr of m.answers) writeRecord(w, rr);
  for (const rr of m.authorities) writeRecord(w, rr);
  for (const rr of m.additionals) writeRecord(w, rr);
  return w.finish();
}

// ---------------------------------------------------------------- EDNS(0)

export interface EdnsInfo {
  readonly udpPayloadSize: number;
  readonly extendedRcode: number; // the upper 8 bits
  readonly version: number;
  readonly dnssecOk: boolean;
}

/** Reads the OPT pseudo-record (RFC 6891 §6.1.2): the class is the UDP size, the TTL packs the rest. */
export function ednsOf(rr: DnsRecord): EdnsInfo {
  return {
    udpPayloadSize: rr.class,
    extendedRcode: (rr.ttl >>> 24) & 0xff,
    version: (rr.ttl >>> 16) & 0xff,
    dnssecOk: (rr.ttl & 0x8000) !== 0,
  };
}

export function buildOptRecord(udpPayloadSize: number, extendedRcode = 0): DnsRecord {
  return { name: '', type: RR_TYPE.OPT, class: udpPayloadSize, ttl: ((extendedRcode & 0xff) << 24) >>> 0, data: { kind: 'raw', bytes: Buffer.alloc(0) } };
}

// ---------------------------------------------------------------- addresses

export function ipv4ToBytes(address: string): Buffer {
  if (!net.isIPv4(address)) throw new TypeError(`not an IPv4 address: ${address}`);
  return Buffer.from(address.split('.').map(Number));
}

export function ipv6ToBytes(address: string): Buffer {
  if (!net.isIPv6(address)) throw new TypeError(`not an IPv6 address: ${address}`);
  let text = address.replace(/%.*$/, '');
  const out = Buffer.alloc(16);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes the last two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipv4ToBytes(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 5952 text form: lower case, the longest run of two or more zero groups as "::". */
export function ipv6ToText(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}
