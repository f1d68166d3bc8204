// Rijndael with a 128-bit block (PROTOCOL.md §5.1): AES-128 and the KMS variants Node's OpenSSL
// cannot do (a 160-bit key with 11 rounds for the v4 MAC, an altered AES-128 schedule for v6).
// Table-driven: the state is four big-endian column words and each round is 16 table lookups.
// A cipher expands its key once; encrypting or decrypting a block allocates nothing.

/** One block transform reading 16 bytes at `srcOff` and writing 16 at `dstOff`; src may equal dst. */
export interface BlockCipher {
  encryptBlock(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void;
  decryptBlock(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void;
  /** CBC of whole blocks in place, when the cipher has its own (faster) chaining; cbc.ts checks the range first. */
  encryptCbc?(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void;
  decryptCbc?(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void;
}

// ---- GF(2^8) arithmetic and tables, built once from the field definition (FIPS-197 §4, §5.1.1) ----

const EXP = new Uint8Array(256); // powers of the generator 0x03
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x ^= xtime(x); // x × 3 = x × 2 ⊕ x
  }
  EXP[255] = 1;
}

function xtime(b: number): number {
  return ((b << 1) ^ (b & 0x80 ? 0x1b : 0)) & 0xff;
}

function gmul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return EXP[(LOG[a]! + LOG[b]!) % 255]!;
}

function rotl8(b: number, n: number): number {
  return ((b << n) | (b >>> (8 - n))) & 0xff;
}

const SBOX = new Uint8Array(256);
const INV_SBOX = new Uint8Array(256);
for (let a = 0; a < 256; a++) {
  const inv = a === 0 ? 0 : EXP[(255 - LOG[a]!) % 255]!;
  const s = inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^ rotl8(inv, 4) ^ 0x63;
  SBOX[a] = s;
  INV_SBOX[s] = a;
}

// Te*: SubBytes + MixColumns contribution of one state byte in row 0…3; Td*: the inverse pair.
// Int32Array keeps every value a small integer for V8 (no heap numbers in the round loop).
const TE0 = new Int32Array(256);
const TE1 = new Int32Array(256);
const TE2 = new Int32Array(256);
const TE3 = new Int32Array(256);
const TD0 = new Int32Array(256);
const TD1 = new Int32Array(256);
const TD2 = new Int32Array(256);
const TD3 = new Int32Array(256);

function rotr32(w: number, n: number): number {
  return (w >>> n) | (w << (32 - n));
}

for (let a = 0; a < 256; a++) {
  const s = SBOX[a]!;
  const e = (gmul(s, 2) << 24) | (s << 16) | (s << 8) | gmul(s, 3);
  TE0[a] = e;
  TE1[a] = rotr32(e, 8);
  TE2[a] = rotr32(e, 16);
  TE3[a] = rotr32(e, 24);
  const si = INV_SBOX[a]!;
  const d = (gmul(si, 0x0e) << 24) | (gmul(si, 0x09) << 16) | (gmul(si, 0x0d) << 8) | gmul(si, 0x0b);
  TD0[a] = d;
  TD1[a] = rotr32(d, 8);
  TD2[a] = rotr32(d, 16);
  TD3[a] = rotr32(d, 24);
}

function subWord(w: number): number {
  return (SBOX[w >>> 24]! << 24) | (SBOX[(w >>> 16) & 0xff]! << 16) | (SBOX[(w >>> 8) & 0xff]! << 8) | SBOX[w & 0xff]!;
}

/** InvMixColumns of one word: Td(S(b)) cancels the inverse S-box folded into the Td tables. */
function invMixColumnsWord(w: number): number {
  return TD0[SBOX[w >>> 24]!]! ^ TD1[SBOX[(w >>> 16) & 0xff]!]! ^ TD2[SBOX[(w >>> 8) & 0xff]!]! ^ TD3[SBOX[w & 0xff]!]!;
}

function readWord(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

function writeWords(b: Uint8Array, at: number, w: Int32Array): void {
  writeWord(b, at, w[0]!);
  writeWord(b, at + 4, w[1]!);
  writeWord(b, at + 8, w[2]!);
  writeWord(b, at + 12, w[3]!);
}

function writeWord(b: Uint8Array, at: number, w: number): void {
  b[at] = w >>> 24;
  b[at + 1] = w >>> 16;
  b[at + 2] = w >>> 8;
  b[at + 3] = w;
}

/**
 * Key expansion for Nk = key bytes / 4 (4…8) with Nr = Nk + 6 rounds (FIPS-197 §5.2; PROTOCOL.md
 * §5.1 spells out Nk = 5). Returns the round-key words, round key r = words 4r … 4r+3.
 */
function expandKey(key: Uint8Array): Int32Array {
  if (key.length % 4 !== 0 || key.length < 16 || key.length > 32) {
    throw new Error(`Rijndael key must be 16, 20, 24, 28 or 32 bytes, got ${key.length}`);
  }
  const nk = key.length / 4;
  const rounds = nk + 6;
  const w = new Int32Array(4 * (rounds + 1));
  for (let i = 0; i < nk; i++) w[i] = readWord(key, 4 * i);
  let rcon = 1;
  for (let i = nk; i < w.length; i++) {
    let t = w[i - 1]!;
    if (i % nk === 0) {
      t = subWord(rotr32(t, 24)) ^ (rcon << 24); // RotWord is a left byte rotation of the word
      rcon = xtime(rcon);
    } else if (nk > 6 && i % nk === 4) {
      t = subWord(t);
    }
    w[i] = w[i - nk]! ^ t;
  }
  return w;
}

export interface RijndaelOptions {
  /** [byte offset into the expanded schedule, xor mask] pairs applied after expansion (§5.1 K6). */
  readonly scheduleXors?: readonly (readonly [number, number])[];
}

/** Rijndael-128 with one fixed key; the encryption and decryption schedules are built here, once. */
export class RijndaelCipher implements BlockCipher {
  readonly rounds: number;
  private readonly ek: Int32Array;
  private readonly dk: Int32Array;
  /** A block's result as four words (encryptWords, decryptWords). */
  private readonly words = new Int32Array(4);

  constructor(key: Uint8Array, options: RijndaelOptions = {}) {
    const ek = expandKey(key);
    for (const [offset, mask] of options.scheduleXors ?? []) {
      if (offset < 0 || offset >= ek.length * 4) throw new Error(`schedule offset ${offset} out of range`);
      ek[offset >>> 2] = ek[offset >>> 2]! ^ ((mask & 0xff) << (24 - 8 * (offset & 3)));
    }
    this.ek = ek;
    this.rounds = ek.length / 4 - 1;
    // Equivalent inverse cipher (FIPS-197 §5.3.5): round keys in reverse order, the inner ones
    // passed through InvMixColumns, so decryption uses the same round shape as encryption. It is
    // derived from the (possibly altered) encryption schedule, as §5.1 requires for K6.
    const dk = new Int32Array(ek.length);
    const nr = this.rounds;
    for (let r = 0; r <= nr; r++) {
      for (let c = 0; c < 4; c++) {
        const w = ek[4 * (nr - r) + c]!;
        dk[4 * r + c] = r === 0 || r === nr ? w : invMixColumnsWord(w);
      }
    }
    this.dk = dk;
  }

  /** The expanded (and altered) encryption schedule as bytes, round key r at 16·r. */
  scheduleBytes(): Buffer {
    const out = Buffer.allocUnsafe(this.ek.length * 4);
    for (let i = 0; i < this.ek.length; i++) writeWord(out, 4 * i, this.ek[i]!);
    return out;
  }

  encryptBlock(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
    this.encryptWords(readWord(src, srcOff), readWord(src, srcOff + 4), readWord(src, srcOff + 8), readWord(src, srcOff + 12));
    writeWords(dst, dstOff, this.words);
  }

  decryptBlock(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
    this.decryptWords(readWord(src, srcOff), readWord(src, srcOff + 4), readWord(src, srcOff + 8), readWord(src, srcOff + 12));
    writeWords(dst, dstOff, this.words);
  }

  /**
   * CBC encryption of buf[start, end) where it lies (cbc.ts checks the range): the chaining value
   * stays in four words instead of being XORed into the buffer byte by byte before each block.
   */
  encryptCbc(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
    const w = this.words;
    let c0 = readWord(iv, 0);
    let c1 = readWord(iv, 4);
    let c2 = readWord(iv, 8);
    let c3 = readWord(iv, 12);
    for (let at = start; at < end; at += 16) {
      this.encryptWords(readWord(buf, at) ^ c0, readWord(buf, at + 4) ^ c1, readWord(buf, at + 8) ^ c2, readWord(buf, at + 12) ^ c3);
      c0 = w[0]!;
      c1 = w[1]!;
      c2 = w[2]!;
      c3 = w[3]!;
      writeWords(buf, at, w);
    }
  }

  /** CBC decryption of buf[start, end) where it lies, from the front: each ciphertext block is read before it is overwritten. */
  decryptCbc(iv: Uint8Array, buf: Uint8Array, start: number, end: number): void {
    const w = this.words;
    let c0 = readWord(iv, 0);
    let c1 = readWord(iv, 4);
    let c2 = readWord(iv, 8);
    let c3 = readWord(iv, 12);
    for (let at = start; at < end; at += 16) {
      const x0 = readWord(buf, at);
      const x1 = readWord(buf, at + 4);
      const x2 = readWord(buf, at + 8);
      const x3 = readWord(buf, at + 12);
      this.decryptWords(x0, x1, x2, x3);
      writeWord(buf, at, w[0]! ^ c0);
      writeWord(buf, at + 4, w[1]! ^ c1);
      writeWord(buf, at + 8, w[2]! ^ c2);
      writeWord(buf, at + 12, w[3]! ^ c3);
      c0 = x0;
      c1 = x1;
      c2 = x2;
      c3 = x3;
    }
  }

  /** The cipher on one block as four big-endian words; the result in this.words. */
  private encryptWords(w0: number, w1: number, w2: number, w3: number): void {
    const k = this.ek;
    let s0 = w0 ^ k[0]!;
    let s1 = w1 ^ k[1]!;
    let s2 = w2 ^ k[2]!;
    let s3 = w3 ^ k[3]!;
    let i = 4;
    // ShiftRows is folded into which column each row's byte is taken from.
    for (let r = 1; r < this.rounds; r++, i += 4) {
      const t0 = TE0[s0 >>> 24]! ^ TE1[(s1 >>> 16) & 0xff]! ^ TE2[(s2 >>> 8) & 0xff]! ^ TE3[s3 & 0xff]! ^ k[i]!;
      const t1 = TE0[s1 >>> 24]! ^ TE1[(s2 >>> 16) & 0xff]! ^ TE2[(s3 >>> 8) & 0xff]! ^ TE3[s0 & 0xff]! ^ k[i + 1]!;
      const t2 = TE0[s2 >>> 24]! ^ TE1[(s3 >>> 16) & 0xff]! ^ TE2[(s0 >>> 8) & 0xff]! ^ TE3[s1 & 0xff]! ^ k[i + 2]!;
      const t3 = TE0[s3 >>> 24]! ^ TE1[(s0 >>> 16) & 0xff]! ^ TE2[(s1 >>> 8) & 0xff]! ^ TE3[s2 & 0xff]! ^ k[i + 3]!;
      s0 = t0;
      s1 = t1;
      s2 = t2;
      s3 = t3;
    }
    // Last round: no MixColumns.
    const w = this.words;
    w[0] = ((SBOX[s0 >>> 24]! << 24) | (SBOX[(s1 >>> 16) & 0xff]! << 16) | (SBOX[(s2 >>> 8) & 0xff]! << 8) | SBOX[s3 & 0xff]!) ^ k[i]!;
    w[1] = ((SBOX[s1 >>> 24]! << 24) | (SBOX[(s2 >>> 16) & 0xff]! << 16) | (SBOX[(s3 >>> 8) & 0xff]! << 8) | SBOX[s0 & 0xff]!) ^ k[i + 1]!;
    w[2] = ((SBOX[s2 >>> 24]! << 24) | (SBOX[(s3 >>> 16) & 0xff]! << 16) | (SBOX[(s0 >>> 8) & 0xff]! << 8) | SBOX[s1 & 0xff]!) ^ k[i + 2]!;
    w[3] = ((SBOX[s3 >>> 24]! << 24) | (SBOX[(s0 >>> 16) & 0xff]! << 16) | (SBOX[(s1 >>> 8) & 0xff]! << 8) | SBOX[s2 & 0xff]!) ^ k[i + 3]!;
  }

  /** The inverse cipher on one block (equivalent inverse, FIPS-197 §5.3.5); the result in this.words. */
  private decryptWords(w0: number, w1: number, w2: number, w3: number): void {
    const k = this.dk;
    let s0 = w0 ^ k[0]!;
    let s1 = w1 ^ k[1]!;
    let s2 = w2 ^ k[2]!;
    let s3 = w3 ^ k[3]!;
    let i = 4;
    // InvShiftRows moves row r right by r columns, hence the mirrored column choice.
    for (let r = 1; r < this.rounds; r++, i += 4) {
      const t0 = TD0[s0 >>> 24]! ^ TD1[(s3 >>> 16) & 0xff]! ^ TD2[(s2 >>> 8) & 0xff]! ^ TD3[s1 & 0xff]! ^ k[i]!;
      const t1 = TD0[s1 >>> 24]! ^ TD1[(s0 >>> 16) & 0xff]! ^ TD2[(s3 >>> 8) & 0xff]! ^ TD3[s2 & 0xff]! ^ k[i + 1]!;
      const t2 = TD0[s2 >>> 24]! ^ TD1[(s1 >>> 16) & 0xff]! ^ TD2[(s0 >>> 8) & 0xff]! ^ TD3[s3 & 0xff]! ^ k[i + 2]!;
      const t3 = TD0[s3 >>> 24]! ^ TD1[(s2 >>> 16) & 0xff]! ^ TD2[(s1 >>> 8) & 0xff]! ^ TD3[s0 & 0xff]! ^ k[i + 3]!;
      s0 = t0;
      s1 = t1;
      s2 = t2;
      s3 = t3;
    }
    const w = this.words;
    w[0] =
      ((INV_SBOX[s0 >>> 24]! << 24) | (INV_SBOX[(s3 >>> 16) & 0xff]! << 16) | (INV_SBOX[(s2 >>> 8) & 0xff]! << 8) | INV_SBOX[s1 & 0xff]!) ^
      k[i]!;
    w[1] =
      ((INV_SBOX[s1 >>> 24]! << 24) | (INV_SBOX[(s0 >>> 16) & 0xff]! << 16) | (INV_SBOX[(s3 >>> 8) & 0xff]! << 8) | INV_SBOX[s2 & 0xff]!) ^
      k[i + 1]!;
    w[2] =
      ((INV_SBOX[s2 >>> 24]! << 24) | (INV_SBOX[(s1 >>> 16) & 0xff]! << 16) | (INV_SBOX[(s0 >>> 8) & 0xff]! << 8) | INV_SBOX[s3 & 0xff]!) ^
      k[i + 2]!;
    w[3] =
      ((INV_SBOX[s3 >>> 24]! << 24) | (INV_SBOX[(s2 >>> 16) & 0xff]! << 16) | (INV_SBOX[(s1 >>> 8) & 0xff]! << 8) | INV_SBOX[s0 & 0xff]!) ^
      k[i + 3]!;
  }
}
