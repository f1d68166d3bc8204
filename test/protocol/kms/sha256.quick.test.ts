// The one-call SHA-256 and the HMAC built from it give what Node's createHash and createHmac give,
// whatever the key and message lengths and however keys alternate or change in place.
import { createHash, createHmac } from 'node:crypto';
import t from 'tap';
import { hmacSha256, hmacSha256Into, sha256, sha256Into } from '../../../src/protocol/kms/sha256';
import { seededRandom } from '../../prng';

function randomBuffer(random: () => number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(random() * 256);
  return b;
}

t.test('SHA-256 of 0 to 300 bytes', async (t) => {
  const random = seededRandom(0x256);
  for (let n = 0; n <= 300; n += 7) {
    const data = randomBuffer(random, n);
    t.equal(sha256(data).toString('hex'), createHash('sha256').update(data).digest('hex'), `${n} bytes`);
  }
  t.equal(
    sha256(Buffer.from('abc')).toString('hex'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    'FIPS 180-2 "abc"',
  );
});

t.test('HMAC-SHA256 for keys of 0 to 100 bytes and messages up to 2000 bytes, keys alternating', async (t) => {
  const seed = 0x2104;
  const random = seededRandom(seed);
  const keys = [0, 1, 16, 32, 63, 64, 65, 100].map((n) => randomBuffer(random, n));
  const differing: string[] = [];
  for (let i = 0; i < 400; i++) {
    const key = keys[Math.floor(random() * keys.length)]!;
    const msg = randomBuffer(random, Math.floor(random() * (i < 300 ? 400 : 2000)));
    const expected = createHmac('sha256', key).update(msg).digest('hex');
    if (hmacSha256(key, msg).toString('hex') !== expected)
      differing.push(`call ${i}: key ${key.length} bytes, message ${msg.length} bytes`);
  }
  t.same(differing, [], `seed ${seed}: 400 calls equal to createHmac`);
});

t.test('a key changed in place is not mistaken for the one before', async (t) => {
  const key = Buffer.alloc(16, 1);
  const msg = Buffer.from('the v6 response');
  t.equal(hmacSha256(key, msg).toString('hex'), createHmac('sha256', key).update(msg).digest('hex'));
  key[15] = 2;
  t.equal(hmacSha256(key, msg).toString('hex'), createHmac('sha256', key).update(msg).digest('hex'));
  t.equal(
    hmacSha256(key.subarray(0, 8), msg).toString('hex'),
    createHmac('sha256', key.subarray(0, 8)).update(msg).digest('hex'),
    'a prefix of the last key',
  );
});

t.test('RFC 4231 test case 2', async (t) => {
  const mac = hmacSha256(Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?'));
  t.equal(mac.toString('hex'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
});

t.test('the Into forms write the digest (or its tail) at an offset and nothing else', async (t) => {
  const seed = 0x1770;
  const random = seededRandom(seed);
  const key = randomBuffer(random, 16);
  // Lengths that repeat, change, and outgrow the first buffer.
  for (const length of [230, 230, 231, 0, 600, 230, 3000, 230]) {
    const msg = randomBuffer(random, length + 10);
    const out = Buffer.alloc(80, 0xee);
    sha256Into(msg.subarray(5, 5 + length), out, 7);
    t.equal(
      out.toString('hex', 7, 39),
      createHash('sha256')
        .update(msg.subarray(5, 5 + length))
        .digest('hex'),
      `SHA-256 of ${length}`,
    );
    t.equal(out[6], 0xee);
    t.equal(out[39], 0xee);
    const mac = createHmac('sha256', key)
      .update(msg.subarray(5, 5 + length))
      .digest();
    for (const from of [0, 16]) {
      const o = Buffer.alloc(50, 0xee);
      hmacSha256Into(key, msg, 5, 5 + length, from, o, 3);
      t.equal(o.toString('hex', 3, 3 + 32 - from), mac.toString('hex', from), `HMAC of ${length} from byte ${from}`);
      t.equal(o[2], 0xee);
      t.equal(o[3 + 32 - from], 0xee);
    }
  }
});

t.test('on a Node without crypto.hash (before 20.12) the same results come from createHash and createHmac', async (t) => {
  const crypto = require('node:crypto') as { hash?: unknown };
  const modulePath = require.resolve('../../../src/protocol/kms/sha256');
  const saved = crypto.hash;
  const cached = require.cache[modulePath];
  delete require.cache[modulePath];
  crypto.hash = undefined;
  let fallback: typeof import('../../../src/protocol/kms/sha256');
  try {
    fallback = require(modulePath) as typeof fallback;
  } finally {
    crypto.hash = saved;
    if (cached) require.cache[modulePath] = cached;
  }
  const random = seededRandom(0x1220);
  for (const [keyLength, msgLength] of [
    [16, 260],
    [100, 33],
    [0, 0],
  ] as const) {
    const key = randomBuffer(random, keyLength);
    const msg = randomBuffer(random, msgLength);
    t.equal(fallback.sha256(msg).toString('hex'), createHash('sha256').update(msg).digest('hex'), `SHA-256 of ${msgLength} bytes`);
    const mac = createHmac('sha256', key).update(msg).digest();
    t.equal(fallback.hmacSha256(key, msg).toString('hex'), mac.toString('hex'), `HMAC, key ${keyLength} bytes`);
    const out = Buffer.alloc(40, 0xee);
    fallback.hmacSha256Into(key, msg, 0, msg.length, 16, out, 4);
    t.equal(out.subarray(4, 20).toString('hex'), mac.subarray(16).toString('hex'), 'its tail written in place');
  }
  t.not(fallback.sha256, sha256, 'a fresh copy of the module was tested');
});
