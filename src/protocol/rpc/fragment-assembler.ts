// Cuts a TCP byte stream into whole DCE/RPC PDUs by their frag_length (PROTOCOL.md §1.5): TCP may
// split a PDU across reads or carry several in one, so nothing here assumes one read = one PDU.
import { ProtocolError } from '../../errors';
import { COMMON_HEADER_LENGTH, FRAG_LENGTH_KNOWN_AFTER, FRAG_LENGTH_OFFSET } from './constants';

export class FragmentAssembler {
  private parts: Buffer[] = [];
  private size = 0;
  private failure: ProtocolError | undefined;

  constructor(private readonly maxPduBytes: number) {}

  /** Bytes held for an incomplete PDU. */
  get buffered(): number {
    return this.size;
  }

  /** Set once the stream has lost its framing; the connection must close (§2.1). */
  get failed(): ProtocolError | undefined {
    return this.failure;
  }

  /**
   * Feeds one chunk; returns the PDUs it completes, in order. A PDU that lies inside one chunk is a
   * view of it; one spread over chunks is a fresh copy. An impossible frag_length throws
   * KMS_ERR_PDU_FRAG_LENGTH, and every later push throws it again: the stream has lost its framing
   * and the connection must close (§2.1). Whole PDUs before it in the same chunk are still returned
   * (with `failed` set, so the caller answers them, then closes): how TCP split the stream must not
   * decide whether they are answered (§1.5).
   */
  push(chunk: Buffer): Buffer[] {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.parts.push(chunk);
      this.size += chunk.length;
    }
    const out: Buffer[] = [];
    while (this.size >= FRAG_LENGTH_KNOWN_AFTER) {
      const fragLength = this.peekByte(FRAG_LENGTH_OFFSET) | (this.peekByte(FRAG_LENGTH_OFFSET + 1) << 8);
      // §2.1: judged from the first 10 bytes, before any of the body is buffered, so a hostile
      // length can never make the host hold more than maxPduBytes for one connection.
      if (fragLength < COMMON_HEADER_LENGTH || fragLength > this.maxPduBytes) {
        this.failure = new ProtocolError(
          'KMS_ERR_PDU_FRAG_LENGTH',
          `frag_length ${fragLength} outside ${COMMON_HEADER_LENGTH}..${this.maxPduBytes}`,
          {
            fragLength,
            maxPduBytes: this.maxPduBytes,
          },
        );
        this.parts = [];
        this.size = 0;
        if (out.length > 0) return out;
        throw this.failure;
      }
      if (this.size < fragLength) break;
      out.push(this.take(fragLength));
    }
    return out;
  }

  private peekByte(at: number): number {
    for (const part of this.parts) {
      if (at < part.length) return part[at]!;
      at -= part.length;
    }
    throw new RangeError('peek beyond buffered bytes'); // unreachable: callers check size first
  }

  private take(n: number): Buffer {
    const first = this.parts[0]!;
    let pdu: Buffer;
    if (first.length >= n) {
      pdu = first.subarray(0, n);
      if (first.length === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
    } else {
      pdu = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const part = this.parts[0]!;
        const used = Math.min(part.length, n - filled);
        part.copy(pdu, filled, 0, used);
        filled += used;
        if (used === part.length) this.parts.shift();
        else this.parts[0] = part.subarray(used);
      }
    }
    this.size -= n;
    return pdu;
  }
}
