// Cryptographic randomness for the per-request path, drawn from a pre-filled pool: one
// crypto.randomBytes call per 4 KiB instead of one per response (each call costs about as much as
// a whole AES block chain). The bytes are the same CSPRNG output (PROTOCOL.md §7.7), handed out
// once each and copied, so no caller sees bytes another caller got.
import { randomBytes } from 'node:crypto';

export function pooledRandomBytes(poolSize = 4096): (n: number) => Buffer {
  let pool = randomBytes(poolSize);
  let at = 0;
  return (n) => {
    if (n > poolSize) return randomBytes(n);
    if (at + n > poolSize) {
      pool = randomBytes(poolSize);
      at = 0;
    }
    const out = Buffer.allocUnsafe(n);
    pool.copy(out, 0, at, at + n);
    pool.fill(0, at, at + n); // handed out once: never reused, never readable again from the pool
    at += n;
    return out;
  };
}
