// DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): each message is preceded by its 2-byte
// length. Chunks in, whole messages out, whatever the segment boundaries. The length field caps
// what one connection can make us buffer at 2 + 65,535 bytes plus the chunk being read; the
// caller decides when to stop reading (backpressure) and how long a partial message may wait.

const EMPTY = Buffer.alloc(0);

export class DnsFrameReader {
  // Unread bytes are buf[start, end). `owned` means buf is our own accumulation buffer (partial
  // messages are copied into it, growing by doubling so a byte-by-byte drip costs linear time);
  // otherwise it is the received chunk itself, and whole messages in it are returned as views.
  private buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  private owned = false;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const left = this.end - this.start;
    if (left === 0) {
      this.buf = chunk;
      this.owned = false;
      this.start = 0;
      this.end = chunk.length;
      return;
    }
    if (this.owned && this.buf.length - left >= chunk.length) {
      if (this.buf.length - this.end < chunk.length) {
        this.buf.copy(this.buf, 0, this.start, this.end);
        this.start = 0;
        this.end = left;
      }
    } else {
      const grown = Buffer.allocUnsafe(Math.max(left + chunk.length, this.owned ? this.buf.length * 2 : 0, 512));
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
      this.start = 0;
      this.end = left;
      this.owned = true;
    }
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /** Bytes received and not yet returned as a message. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** True when the next message is complete and next() will return it. */
  get hasMessage(): boolean {
    const left = this.end - this.start;
    return left >= 2 && left >= 2 + this.buf.readUInt16BE(this.start);
  }

  /** The next whole message, or null until more bytes arrive. */
  next(): Buffer | null {
    if (!this.hasMessage) return null;
    const from = this.start + 2;
    const to = from + this.buf.readUInt16BE(this.start);
    this.start = to;
    // A view into our own buffer would be overwritten by the next push: hand out a copy.
    const message = this.owned ? Buffer.from(this.buf.subarray(from, to)) : this.buf.subarray(from, to);
    if (this.start === this.end) {
      this.buf = EMPTY;
      this.start = this.end = 0;
      this.owned = false;
    }
    return message;
  }
}

/** One message with its length prefix, in a single buffer so it leaves in one write. */
export function frameDnsMessage(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}
