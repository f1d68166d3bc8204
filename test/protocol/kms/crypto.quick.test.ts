// Every primitive vector of test/fixtures/crypto.json against the own cipher code, and standard
// AES-128 cross-checked with OpenSSL (PROTOCOL.md §5, §6.1, §6.5).
import t from 'tap';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import {
  RijndaelCipher,
  V4_CIPHER,
  V5_CIPHER,
  V6_CIPHER,
  cbcDecrypt,
  cbcDecryptInPlace,
  cbcEncrypt,
  decryptBlockV6,
  encryptBlockV4,
  encryptBlockV6,
  pad,
  unpaddedLength,
  v4Mac,
  v6Hmac,
  v6HmacKey,
  v6TimeSlot,
  KMS_V4_KEY,
  KMS_V5_KEY,
  KMS_V6_KEY,
} from '../../../src/protocol/kms';
import type { BlockCipher } from '../../../src/protocol/kms/rijndael';
import { bytes } from '../../bytes';
import { readFixture } from './fixtures';

const vectors = readFixture('crypto.json');
const cipherOf = { v4: V4_CIPHER, v5: V5_CIPHER, v6: V6_CIPHER } as const;

t.test('the keys are those of PROTOCOL.md §5.1 and crypto.json', async (t) => {
  t.equal(KMS_V4_KEY.toString('hex'), vectors.constants.v4_key);
  t.equal(KMS_V5_KEY.toString('hex'), vectors.constants.v5_key);
  t.equal(KMS_V6_KEY.toString('hex'), vectors.constants.v6_key);
});

t.test('expanded key schedules (v4: 12 round keys, v5/v6: 11, v6 altered)', async (t) => {
  t.equal(vectors.key_schedules.length, 3);
  for (const ks of vectors.key_schedules) {
    const c = cipherOf[ks.name as keyof typeof cipherOf];
    t.equal(c.scheduleBytes().toString('hex'), ks.expanded, ks.name);
    t.equal(c.rounds, ks.name === 'v4' ? 11 : 10, `${ks.name} rounds`);
  }
  // The v6 schedule differs from plain AES-128 in exactly the three bytes of §5.1.
  const plain = new RijndaelCipher(KMS_V6_KEY).scheduleBytes();
  const altered = V6_CIPHER.scheduleBytes();
  const diffs = [...plain.keys()].filter((i) => plain[i] !== altered[i]).map((i) => [i, plain[i]! ^ altered[i]!]);
  t.same(diffs, [
    [64, 0x73],
    [96, 0x09],
    [128, 0xe4],
  ]);
});

t.test('single blocks: every aes_block entry, both directions, plus FIPS-197 C.1', async (t) => {
  t.equal(vectors.aes_block.length, 13);
  for (const b of vectors.aes_block) {
    const c = b.cipher in cipherOf ? cipherOf[b.cipher as keyof typeof cipherOf] : new RijndaelCipher(bytes(b.key));
    const out = Buffer.alloc(16);
    c.encryptBlock(bytes(b.plaintext), 0, out, 0);
    t.equal(out.toString('hex'), b.ciphertext, `${b.cipher} encrypt ${b.plaintext}`);
    const back = Buffer.alloc(16);
    c.decryptBlock(out, 0, back, 0);
    t.equal(back.toString('hex'), b.plaintext, `${b.cipher} decrypt`);
    if (b.cipher === 'v4') t.equal(encryptBlockV4(bytes(b.plaintext)).toString('hex'), b.ciphertext);
    if (b.cipher === 'v6') {
      t.equal(encryptBlockV6(bytes(b.plaintext)).toString('hex'), b.ciphertext);
      t.equal(decryptBlockV6(bytes(b.ciphertext)).toString('hex'), b.plaintext);
    }
    if (b.cipher === 'v5' || b.cipher.startsWith('standard')) {
      const ecb = createCipheriv('aes-128-ecb', bytes(b.key), null).setAutoPadding(false);
      t.equal(ecb.update(bytes(b.plaintext)).toString('hex'), b.ciphertext, 'OpenSSL agrees');
    }
  }
  // §5.1 sanity value, written out in the spec.
  t.equal(encryptBlockV4(Buffer.alloc(16)).toString('hex'), '933030f10e2e7782b80915d5778a4957');
  t.throws(() => encryptBlockV4(Buffer.alloc(15)));
});

t.test('a block can be transformed in place and at offsets', async (t) => {
  const b = vectors.aes_block.find((x: any) => x.cipher === 'v6');
  const buf = Buffer.concat([Buffer.from('ffffff', 'hex'), bytes(b.plaintext), Buffer.from('ee', 'hex')]);
  V6_CIPHER.encryptBlock(buf, 3, buf, 3);
  t.equal(buf.toString('hex'), 'ffffff' + b.ciphertext + 'ee');
  V6_CIPHER.decryptBlock(buf, 3, buf, 3);
  t.equal(buf.toString('hex'), 'ffffff' + b.plaintext + 'ee');
});

t.test('v4 MAC: every v4_mac entry (CBC-MAC, 0x80 padding, zero IV)', async (t) => {
  t.ok(vectors.v4_mac.length >= 9);
  for (const m of vectors.v4_mac) {
    t.equal(v4Mac(bytes(m.input)).toString('hex'), m.mac, `length ${m.length}`);
  }
  // A MAC over a slice equals the MAC of the copied bytes.
  const m = vectors.v4_mac.find((x: any) => x.length === 100);
  const framed = Buffer.concat([Buffer.alloc(7, 0xaa), bytes(m.input), Buffer.alloc(5, 0xbb)]);
  t.equal(v4Mac(framed, 7, 107).toString('hex'), m.mac);
});

for (const [name, cipher, nodeKey] of [
  ['v5_cbc', V5_CIPHER, KMS_V5_KEY],
  ['v6_cbc', V6_CIPHER, undefined],
] as const) {
  t.test(`${name}: every entry encrypts and decrypts, padding 1–16 bytes`, async (t) => {
    t.equal(vectors[name].length, 8);
    for (const v of vectors[name]) {
      const label = `${name} ${v.plaintext.length / 2} bytes`;
      t.equal(pad(bytes(v.plaintext)).toString('hex'), v.padded_plaintext, `${label} padding`);
      t.equal(cbcEncrypt(cipher, bytes(v.iv), bytes(v.plaintext)).toString('hex'), v.ciphertext, `${label} encrypt`);
      t.equal(cbcDecrypt(cipher, bytes(v.iv), bytes(v.ciphertext)).toString('hex'), v.plaintext, `${label} decrypt`);
      // The same through the block-at-a-time chaining cbc.ts falls back to for a cipher without its own.
      const blocksOnly: BlockCipher = {
        encryptBlock: (...a) => cipher.encryptBlock(...a),
        decryptBlock: (...a) => cipher.decryptBlock(...a),
      };
      t.equal(cbcEncrypt(blocksOnly, bytes(v.iv), bytes(v.plaintext)).toString('hex'), v.ciphertext, `${label} encrypt, by blocks`);
      t.equal(cbcDecrypt(blocksOnly, bytes(v.iv), bytes(v.ciphertext)).toString('hex'), v.plaintext, `${label} decrypt, by blocks`);
      if (nodeKey) {
        const enc = createCipheriv('aes-128-cbc', nodeKey, bytes(v.iv)).setAutoPadding(false);
        t.equal(enc.update(bytes(v.padded_plaintext)).toString('hex'), v.ciphertext, `${label} OpenSSL`);
        const dec = createDecipheriv('aes-128-cbc', nodeKey, bytes(v.iv));
        t.equal(Buffer.concat([dec.update(bytes(v.ciphertext)), dec.final()]).toString('hex'), v.plaintext, `${label} OpenSSL PKCS#7`);
      }
    }
  });
}

t.test('padding validation (§5.2)', async (t) => {
  t.equal(unpaddedLength(bytes('0102030404040404'), 0, 8), 4);
  t.equal(unpaddedLength(bytes('10'.repeat(16)), 0, 16), 0);
  t.equal(unpaddedLength(bytes('0102030400040404'), 0, 8), -1, 'a pad byte differs');
  t.equal(unpaddedLength(bytes('0102030405060700'), 0, 8), -1, 'pad length 0');
  t.equal(unpaddedLength(bytes('11'.repeat(32)), 0, 32), -1, 'pad length 17');
  t.equal(unpaddedLength(bytes('0303'), 0, 2), -1, 'longer than the data');
  const v = vectors.v6_cbc.find((x: any) => x.plaintext.length === 2 * 17);
  const ct = bytes(v.ciphertext);
  ct[ct.length - 1]! ^= 0x01;
  t.throws(() => cbcDecrypt(V6_CIPHER, bytes(v.iv), ct), { code: 'KMS_ERR_KMS_PADDING' });
  t.throws(() => cbcDecryptInPlace(V6_CIPHER, bytes(v.iv), Buffer.alloc(20), 0, 20), 'not whole blocks');
});

t.test('v6 HMAC key: every v6_hmac_key entry, tolerance −1/0/+1, 64-bit wrap-around', async (t) => {
  t.equal(vectors.v6_hmac_key.length, 17);
  for (const k of vectors.v6_hmac_key) {
    const ft = BigInt(k.filetime);
    const label = `t=${k.filetime} tol=${k.tolerance}`;
    t.equal(v6TimeSlot(ft, k.tolerance).toString('hex'), k.time_slot_le, `${label} slot`);
    t.equal(v6HmacKey(ft, k.tolerance).toString('hex'), k.hmac_key, `${label} key`);
    t.equal(k.sha256.slice(32), k.hmac_key);
  }
  // §6.5 worked value.
  t.equal(v6TimeSlot(0n).toString('hex'), '7a4728c65acd5631');
  t.equal(v6HmacKey(0n).toString('hex'), 'ac0c6f55aa8cabc264c0642eb961540a');
  // The returned key is the caller's own copy.
  const k = v6HmacKey(0n);
  k.fill(0);
  t.equal(v6HmacKey(0n).toString('hex'), 'ac0c6f55aa8cabc264c0642eb961540a');
});

t.test('v6 HMAC: every v6_hmac entry (last 16 bytes of HMAC-SHA256)', async (t) => {
  t.equal(vectors.v6_hmac.length, 3);
  for (const h of vectors.v6_hmac) {
    t.equal(v6HmacKey(BigInt(h.filetime)).toString('hex'), h.hmac_key);
    t.equal(v6Hmac(bytes(h.hmac_key), bytes(h.message)).toString('hex'), h.kms_hmac, `message of ${h.message.length / 2} bytes`);
    t.equal(h.hmac_sha256.slice(32), h.kms_hmac);
  }
});
