// A small, strict DNS message codec (RFC 1035 §4, RFC 6891 OPT, RFC 8945 TSIG, RFC 2782 SRV), pure
// like the rest of src/protocol. Strict because the responder must tell FORMERR from silence and
// TSIG must hash exact byte ranges; every message has decode, encode and size (encodingLength).
import { ProtocolError } from '../../errors';
import { ipv4ToBytes, ipv6ToBytes, ipv6ToText } from './addresses';
import { DnsReader, DnsWriter } from './wire';

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

export function decodeHeader(msg: Buffer): DnsHeader {
  const r = new DnsReader(msg);
  const id = r.u16('header');
  const flags = r.u16('header');
  r.u32('header');
  r.u32('header');
  return {
    id,
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
function headerCounts(msg: Buffer): [number, number, number, number] {
  const r = new DnsReader(msg, 4);
  return [r.u16('header'), r.u16('header'), r.u16('header'), r.u16('header')];
}

/** Reads a name that must end inside RDATA (before `end`). */
function nameWithin(r: DnsReader, end: number): string {
  const at = r.offset;
  const name = r.name();
  if (r.offset > end) throw malformed('name runs past RDLENGTH', at);
  return name;
}

function decodeRData(r: DnsReader, type: number, end: number): RData {
  const start = r.offset;
  const len = end - start;
  switch (type) {
    case RR_TYPE.A:
      if (len !== 4) throw malformed(`A record with RDLENGTH ${len}`, start);
      return { kind: 'a', address: Array.from(r.bytes(4, 'A')).join('.') };
    case RR_TYPE.AAAA:
      if (len !== 16) throw malformed(`AAAA record with RDLENGTH ${len}`, start);
      return { kind: 'aaaa', address: ipv6ToText(r.bytes(16, 'AAAA')) };
    case RR_TYPE.NS:
    case RR_TYPE.CNAME:
    case RR_TYPE.PTR: {
      const target = nameWithin(r, end);
      r.expectAt(end, 'trailing bytes after the name in RDATA');
      return { kind: 'name', target };
    }
    case RR_TYPE.SRV: {
      if (len < 7) throw malformed(`SRV record with RDLENGTH ${len}`, start);
      const priority = r.u16();
      const weight = r.u16();
      const port = r.u16();
      const target = nameWithin(r, end);
      r.expectAt(end, 'trailing bytes after the SRV target');
      return { kind: 'srv', priority, weight, port, target };
    }
    case RR_TYPE.SOA: {
      const mname = nameWithin(r, end);
      const rname = nameWithin(r, end);
      if (r.offset + 20 !== end) throw malformed('SOA RDATA has the wrong length', r.offset);
      return { kind: 'soa', mname, rname, serial: r.u32(), refresh: r.u32(), retry: r.u32(), expire: r.u32(), minimum: r.u32() };
    }
    case RR_TYPE.TXT: {
      const strings: Buffer[] = [];
      while (r.offset < end) {
        const at = r.offset;
        const n = r.u8('TXT string length');
        if (r.offset + n > end) throw malformed('TXT string runs past RDLENGTH', at);
        strings.push(r.bytes(n, 'TXT string'));
      }
      return { kind: 'txt', strings };
    }
    case RR_TYPE.TSIG: {
      // The algorithm name is never compressed (RFC 8945 §4.2), but a backwards pointer is
      // accepted here; the MAC check fails then anyway.
      const algorithm = nameWithin(r, end);
      if (r.offset + 10 > end) throw malformed('TSIG RDATA too short', r.offset);
      const timeSigned = r.u16('TSIG time') * 2 ** 32 + r.u32('TSIG time');
      const fudge = r.u16('TSIG fudge');
      const macSize = r.u16('TSIG MAC size');
      if (r.offset + macSize + 6 > end) throw malformed('TSIG MAC runs past RDLENGTH', r.offset);
      const mac = r.bytes(macSize, 'TSIG MAC');
      const originalId = r.u16();
      const error = r.u16();
      const otherLen = r.u16();
      if (r.offset + otherLen !== end) throw malformed('TSIG other data does not match RDLENGTH', r.offset);
      return { kind: 'tsig', algorithm, timeSigned, fudge, mac, originalId, error, other: r.bytes(otherLen, 'TSIG other data') };
    }
    default:
      return { kind: 'raw', bytes: r.bytes(len, 'RDATA') };
  }
}

function decodeRecord(r: DnsReader): DecodedRecord {
  const offset = r.offset;
  const name = r.name();
  const type = r.u16('record header');
  const klass = r.u16('record header');
  const ttl = r.u32('record header');
  const rdlength = r.u16('record header');
  const end = r.offset + rdlength;
  if (end > r.buf.length) throw malformed('RDATA runs past the end of the message', r.offset);
  // Update messages carry RRs with no RDATA (RFC 2136 §2.5.2/§2.5.3); keep them raw.
  const data = rdlength === 0 ? ({ kind: 'raw', bytes: Buffer.alloc(0) } as const) : decodeRData(r, type, end);
  return { name, type, class: klass, ttl, data, offset };
}

/**
 * Decodes a whole message. Any inconsistency (counts that promise more than the bytes hold,
 * bad names, RDATA that does not fill RDLENGTH, trailing bytes) is a ProtocolError with code
 * KMS_ERR_DNS_MALFORMED: the caller answers FORMERR or stays silent.
 */
export function decodeMessage(msg: Buffer): DecodedMessage {
  const header = decodeHeader(msg);
  const [qd, an, ns, ar] = headerCounts(msg);
  const r = new DnsReader(msg, HEADER_LENGTH);
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const name = r.name();
    questions.push({ name, type: r.u16('question'), class: r.u16('question') });
  }
  const sections: DecodedRecord[][] = [[], [], []];
  const counts = [an, ns, ar];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) sections[s]!.push(decodeRecord(r));
  }
  if (r.remaining !== 0) throw malformed(`${r.remaining} bytes after the last record the header announces`, r.offset);
  return { header, questions, answers: sections[0]!, authorities: sections[1]!, additionals: sections[2]! };
}

// ---------------------------------------------------------------- encoding

function encodeFlags(h: DnsHeader): number {
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

function writeRData(w: DnsWriter, rr: DnsRecord): void {
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

function writeRecord(w: DnsWriter, rr: DnsRecord): void {
  w.name(rr.name, rr.type !== RR_TYPE.TSIG);
  w.u16(rr.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lenAt = w.reserve16();
  writeRData(w, rr);
  w.backfill16(lenAt, w.length - lenAt - 2);
}

function writeMessage(w: DnsWriter, m: DnsMessage): void {
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
}

/** Encodes a message; the header counts come from the sections. */
export function encodeMessage(m: DnsMessage): Buffer {
  const w = new DnsWriter();
  writeMessage(w, m);
  return w.finish();
}

/** The exact size encodeMessage(m) will have, compression included, without building it. */
export function encodingLength(m: DnsMessage): number {
  const w = new DnsWriter(0, true);
  writeMessage(w, m);
  return w.length;
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
  return {
    name: '',
    type: RR_TYPE.OPT,
    class: udpPayloadSize,
    ttl: ((extendedRcode & 0xff) << 24) >>> 0,
    data: { kind: 'raw', bytes: Buffer.alloc(0) },
  };
}

// ---------------------------------------------------------------- the common query, read fast

/** A plain QUERY: one uncompressed question and at most an OPT record, as almost every client sends. */
export interface SimpleQuery {
  /** Offset just past the question (the question is raw[12, questionEnd)). */
  readonly questionEnd: number;
  readonly type: number;
  readonly class: number;
  /** The question name's wire bytes, ASCII lower-cased (RFC 4343), as a latin1 string: a cache key. */
  readonly nameKey: string;
  /** The OPT record's UDP payload size; 0 when the query carries no OPT. */
  readonly udpPayloadSize: number;
}

/**
 * Recognises the common query shape without building a message, or returns null so the caller
 * takes the full decodeMessage path (which also produces the right FORMERR/NOTIMP/BADVERS).
 * Accepts only what decodeMessage would accept the same way; the header's QR and opcode are the
 * caller's to check.
 */
export function readSimpleQuery(msg: Buffer): SimpleQuery | null {
  if (msg.length < HEADER_LENGTH + 5) return null;
  if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0) return null;
  const ar = msg.readUInt16BE(10);
  if (ar > 1) return null;
  let p = HEADER_LENGTH;
  for (;;) {
    const len = msg[p];
    if (len === undefined || len >= 0x40) return null; // a pointer or reserved type: full path
    p += 1 + len;
    if (p - HEADER_LENGTH > 255) return null;
    if (len === 0) break;
  }
  const nameEnd = p;
  if (p + 4 > msg.length) return null;
  const type = msg.readUInt16BE(p);
  const klass = msg.readUInt16BE(p + 2);
  p += 4;
  const questionEnd = p;
  let udpPayloadSize = 0;
  if (ar === 1) {
    // OPT: root owner, type 41, class = payload size, TTL = ext-rcode/version/flags, RDLENGTH.
    if (p + 11 > msg.length || msg[p] !== 0 || msg.readUInt16BE(p + 1) !== RR_TYPE.OPT) return null;
    if (msg[p + 6] !== 0) return null; // EDNS version other than 0: BADVERS on the full path
    if (p + 11 + msg.readUInt16BE(p + 9) !== msg.length) return null;
    udpPayloadSize = msg.readUInt16BE(p + 3) || 1;
  } else if (p !== msg.length) {
    return null;
  }
  let nameKey = msg.toString('latin1', HEADER_LENGTH, nameEnd);
  if (/[A-Z]/.test(nameKey)) nameKey = nameKey.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return { questionEnd, type, class: klass, nameKey, udpPayloadSize };
}
