// Cuts a TCP byte stream into whole DCE/RPC PDUs by their frag_length (PROTOCOL.md §1.5): TCP may
// split a PDU across reads or carry several in one, so nothing here assumes one read = one PDU.
import { ProtocolError } from '../../errors';
import { COMMON_HEADER_LENGTH, FRAG_LENGTH_KNOWN_AFTER, FRAG_LENGTH_OFFSET } from './constants';

export class FragmentAssembler {
  /**
   * The start of a PDU that has not arrived whole, copied into one buffer of its frag_length (of
   * FRAG_LENGTH_KNOWN_AFTER bytes until that is known). Never a view of the reads it came in: a
   * read has its own backing store, so a view of the last 16 bytes of a 64 KiB read would hold all
   * 64 KiB, and a PDU dripped a byte per read would hold a buffer per byte.
   */
  private held: Buffer | undefined;
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
    // The usual read: exactly one whole PDU and nothing held. Handed on as it is, not as a view.
    if (this.size === 0 && chunk.length >= FRAG_LENGTH_KNOWN_AFTER) {
      const fragLength = chunk.readUInt16LE(FRAG_LENGTH_OFFSET);
      if (fragLength === chunk.length && fragLength >= COMMON_HEADER_LENGTH && fragLength <= this.maxPduBytes) return [chunk];
    }
    const out: Buffer[] = [];
    let at = this.size > 0 ? this.continueHeld(chunk, out) : 0;
    if (this.failure) return this.broken(out);
    while (chunk.length - at >= FRAG_LENGTH_KNOWN_AFTER) {
      const fragLength = chunk.readUInt16LE(at + FRAG_LENGTH_OFFSET);
      if (!this.acceptable(fragLength)) return this.broken(out);
      if (chunk.length - at < fragLength) break;
      out.push(chunk.subarray(at, at + fragLength));
      at += fragLength;
    }
    if (at < chunk.length) this.hold(chunk, at);
    return out;
  }

  /** Adds the first bytes of `chunk` to the held PDU start, handing the PDU to `out` once whole; returns the bytes used. */
  private continueHeld(chunk: Buffer, out: Buffer[]): number {
    let used = 0;
    if (this.size < FRAG_LENGTH_KNOWN_AFTER) {
      used = Math.min(chunk.length, FRAG_LENGTH_KNOWN_AFTER - this.size);
      this.append(chunk, 0, used);
      if (this.size < FRAG_LENGTH_KNOWN_AFTER) return used;
      const fragLength = this.held!.readUInt16LE(FRAG_LENGTH_OFFSET);
      if (!this.acceptable(fragLength)) return used;
      const grown = Buffer.allocUnsafeSlow(fragLength);
      this.held!.copy(grown, 0, 0, this.size);
      this.held = grown;
    }
    const missing = this.held!.length - this.size;
    const n = Math.min(missing, chunk.length - used);
    this.append(chunk, used, used + n);
    if (n === missing) {
      out.push(this.held!);
      this.held = undefined;
      this.size = 0;
    }
    return used + n;
  }

  /** Keeps `chunk` from `at` on (less than a whole PDU, its frag_length already judged when known) as a copy. */
  private hold(chunk: Buffer, at: number): void {
    const rest = chunk.length - at;
    const capacity = rest >= FRAG_LENGTH_KNOWN_AFTER ? chunk.readUInt16LE(at + FRAG_LENGTH_OFFSET) : FRAG_LENGTH_KNOWN_AFTER;
    this.held = Buffer.allocUnsafeSlow(capacity);
    this.size = 0;
    this.append(chunk, at, chunk.length);
  }

  private append(chunk: Buffer, from: number, to: number): void {
    chunk.copy(this.held!, this.size, from, to);
    this.size += to - from;
  }

  /**
   * §2.1: judged from the first 10 bytes, before any of the body is buffered, so a hostile length
   * can never make the host hold more than maxPduBytes for one connection.
   */
  private acceptable(fragLength: number): boolean {
    if (fragLength >= COMMON_HEADER_LENGTH && fragLength <= this.maxPduBytes) return true;
    this.failure = new ProtocolError(
      'KMS_ERR_PDU_FRAG_LENGTH',
      `frag_length ${fragLength} outside ${COMMON_HEADER_LENGTH}..${this.maxPduBytes}`,
      {
        fragLength,
        maxPduBytes: this.maxPduBytes,
      },
    );
    this.held = undefined;
    this.size = 0;
    return false;
  }

  /** The PDUs cut before the framing broke, or the failure when there are none. */
  private broken(out: Buffer[]): Buffer[] {
    if (out.length > 0) return out;
    throw this.failure!;
  }
}
