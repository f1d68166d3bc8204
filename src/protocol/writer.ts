// Growable little-endian writer. Length fields are reserved and back-filled once the body is
// known, so encoders never compute sizes twice.

export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  get offset(): number {
    return this.pos;
  }

  private ensure(n: number): number {
    if (this.pos + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(grown, 0, 0, this.pos);
      this.buf = grown;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(v: number): this {
    // ensure() may replace this.buf, so it must run before this.buf is read.
    const at = this.ensure(1);
    this.buf[at] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    const at = this.ensure(2);
    this.buf.writeUInt16LE(v & 0xffff, at);
    return this;
  }

  u32(v: number): this {
    const at = this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  u64(v: bigint): this {
    const at = this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
    return this;
  }

  bytes(b: Uint8Array): this {
    const at = this.ensure(b.length);
    this.buf.set(b, at);
    return this;
  }

  zeros(n: number): this {
    const at = this.ensure(n);
    this.buf.fill(0, at, at + n);
    return this;
  }

  /** NDR alignment relative to `base` (the stub start): zero bytes up to the next multiple of n. */
  align(n: number, base = 0): this {
    const misalign = (this.pos - base) % n;
    return misalign === 0 ? this : this.zeros(n - misalign);
  }

  /** Reserve `n` zero bytes and return their offset for a later backfill. */
  reserve(n: number): number {
    const at = this.pos;
    this.zeros(n);
    return at;
  }

  backfillU16(at: number, v: number): void {
    this.buf.writeUInt16LE(v & 0xffff, at);
  }

  backfillU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }

  /** The written bytes. The writer must not be used afterwards (the result may share memory). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
