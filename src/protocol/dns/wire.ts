// The big-endian siblings of ../reader.ts and ../writer.ts for DNS (network byte order, RFC 1035
// §2.3.2). Only these two classes touch offsets in DNS messages. The writer also compresses names
// (RFC 1035 §4.1.4) and can run without a buffer, only counting, so a message's size is known
// before it is encoded (encodingLength in message.ts).
import { ProtocolError } from '../../errors';
import { canonicalName, decodeName, nameToLabels } from './names';

export class DnsReader {
  private pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): number {
    if (this.pos + n > this.buf.length) {
      throw new ProtocolError('KMS_ERR_DNS_MALFORMED', `${what} runs past the end of the message`, {
        at: this.pos,
        need: n,
        have: this.buf.length - this.pos,
      });
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(what = 'u8'): number {
    return this.buf[this.need(1, what)]!;
  }

  u16(what = 'u16'): number {
    return this.buf.readUInt16BE(this.need(2, what));
  }

  u32(what = 'u32'): number {
    return this.buf.readUInt32BE(this.need(4, what));
  }

  /** A copy, so decoded records never pin the (possibly large) received buffer. */
  bytes(n: number, what = 'bytes'): Buffer {
    const at = this.need(n, what);
    return Buffer.from(this.buf.subarray(at, at + n));
  }

  /** A possibly compressed name; pointers may reach anywhere before it in the whole message. */
  name(): string {
    const r = decodeName(this.buf, this.pos);
    this.pos = r.next;
    return r.name;
  }

  /** Fails unless the cursor stands exactly at `end` (RDATA must fill RDLENGTH, no trailing bytes). */
  expectAt(end: number, what: string): void {
    if (this.pos !== end)
      throw new ProtocolError('KMS_ERR_DNS_MALFORMED', `${what}: ${end - this.pos} bytes unaccounted for`, { at: this.pos });
  }
}

/** Growable writer; `measureOnly` counts the bytes (compression included) without storing them. */
export class DnsWriter {
  private buf: Buffer;
  private len = 0;
  // canonical suffix → offset of its first occurrence (pointer targets must be < 0x4000)
  private readonly suffixes = new Map<string, number>();

  constructor(
    size = 512,
    private readonly measureOnly = false,
  ) {
    this.buf = Buffer.alloc(measureOnly ? 0 : size);
  }

  get length(): number {
    return this.len;
  }

  private ensure(n: number): number {
    const at = this.len;
    this.len += n;
    if (!this.measureOnly && this.len > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len));
      this.buf.copy(next, 0, 0, at);
      this.buf = next;
    }
    return at;
  }

  u8(v: number): void {
    const at = this.ensure(1);
    if (!this.measureOnly) this.buf[at] = v & 0xff;
  }

  u16(v: number): void {
    const at = this.ensure(2);
    if (!this.measureOnly) this.buf.writeUInt16BE(v & 0xffff, at);
  }

  u32(v: number): void {
    const at = this.ensure(4);
    if (!this.measureOnly) this.buf.writeUInt32BE(v >>> 0, at);
  }

  bytes(b: Uint8Array): void {
    const at = this.ensure(b.length);
    if (!this.measureOnly) this.buf.set(b, at);
  }

  /** Reserves a 16-bit length field; backfill it once the body is written. */
  reserve16(): number {
    const at = this.len;
    this.u16(0);
    return at;
  }

  backfill16(at: number, v: number): void {
    if (!this.measureOnly) this.buf.writeUInt16BE(v & 0xffff, at);
  }

  name(name: string, compress: boolean): void {
    const labels = nameToLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = canonicalName(labels.slice(i).map(escapeForKey).join('.'));
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

  /** The written bytes, in a buffer of their own. */
  finish(): Buffer {
    if (this.measureOnly) throw new TypeError('a measuring DnsWriter holds no bytes');
    return this.len === this.buf.length ? this.buf : Buffer.from(this.buf.subarray(0, this.len));
  }
}

function escapeForKey(l: Buffer): string {
  return l.toString('latin1').replace(/[\\.]/g, (c) => '\\' + c);
}
