// Bounds-checked little-endian cursor over a received buffer. Only this module and writer.ts
// touch offsets; a short read is a ProtocolError with the offset, never Node's bare RangeError.
import { ProtocolError, type ErrorCode } from '../errors';
import { bytesToGuid } from './guid';

export class Reader {
  private pos: number;
  private readonly end: number;

  /** `start`/`end` let a reader cover a slice of a larger buffer without copying it. */
  constructor(
    readonly buf: Buffer,
    start = 0,
    end = buf.length,
    private readonly truncatedCode: ErrorCode = 'KMS_ERR_PDU_TRUNCATED',
  ) {
    this.pos = start;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): number {
    if (n < 0 || this.pos + n > this.end) {
      throw new ProtocolError(this.truncatedCode, `need ${n} bytes for ${what} at offset ${this.pos}, have ${this.end - this.pos}`, {
        need: n,
        have: this.end - this.pos,
        at: this.pos,
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
    return this.buf.readUInt16LE(this.need(2, what));
  }

  u32(what = 'u32'): number {
    return this.buf.readUInt32LE(this.need(4, what));
  }

  u64(what = 'u64'): bigint {
    return this.buf.readBigUInt64LE(this.need(8, what));
  }

  /** A view into the underlying buffer (no copy): callers must not keep it past the buffer's life. */
  bytes(n: number, what = 'bytes'): Buffer {
    const at = this.need(n, what);
    return this.buf.subarray(at, at + n);
  }

  skip(n: number, what = 'padding'): void {
    this.need(n, what);
  }

  /** GUID in Windows mixed-endian wire order (PROTOCOL.md conventions), as a lowercase string. */
  guid(what = 'GUID'): string {
    return bytesToGuid(this.buf, this.need(16, what));
  }

  /** NDR alignment relative to `base` (the stub start, §3): skips to the next multiple of n. */
  align(n: number, base = 0): void {
    const misalign = (this.pos - base) % n;
    if (misalign !== 0) this.need(n - misalign, 'alignment padding');
  }

  expectEnd(what = 'structure'): void {
    if (this.pos !== this.end) {
      throw new ProtocolError(this.truncatedCode, `${this.end - this.pos} unexpected bytes after ${what}`, {
        at: this.pos,
        extra: this.end - this.pos,
      });
    }
  }
}
