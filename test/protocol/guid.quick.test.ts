// writeGuid writes what guidToBytes gives for every form guidToBytes accepts, refuses what it
// refuses, and reads the canonical form in place.
import t, { type Test } from 'tap';
import { bytesToGuid, guidToBytes, lowerId, RepeatedGuids, writeGuid } from '../../src/protocol/guid';
import { seededRandom } from '../prng';

function written(t: Test, guid: string): Buffer {
  const out = Buffer.alloc(20, 0xee);
  writeGuid(out, 2, guid);
  t.equal(out.readUInt16LE(0), 0xeeee, 'nothing before');
  t.equal(out.readUInt16LE(18), 0xeeee, 'nothing after');
  return out.subarray(2, 18);
}

t.test('the KMS interface UUID in its wire layout (PROTOCOL.md §2.4)', async (t) => {
  t.equal(written(t, '51c82175-844e-4750-b0d8-ec255555bc06').toString('hex'), '7521c8514e845047b0d8ec255555bc06');
});

t.test('random GUIDs round-trip through bytesToGuid and agree with guidToBytes', async (t) => {
  const seed = 0x6e1d;
  const random = seededRandom(seed);
  const differing: string[] = [];
  for (let n = 0; n < 500; n++) {
    const bytes = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) bytes[i] = Math.floor(random() * 256);
    const text = bytesToGuid(bytes);
    const out = written(t, text);
    if (!out.equals(bytes) || !out.equals(guidToBytes(text))) differing.push(`GUID ${n}: ${text}`);
  }
  t.same(differing, [], `seed ${seed}: 500 GUIDs round-trip`);
});

t.test('RepeatedGuids gives the text of any bytes, repeated or not, whatever slots they share', async (t) => {
  const seed = 0x6e1e;
  const random = seededRandom(seed);
  const known = Array.from({ length: 300 }, () => Buffer.from(Array.from({ length: 16 }, () => Math.floor(random() * 256))));
  // Differing in one byte only, and the all-zero GUID: the slots' easy confusions.
  known.push(Buffer.alloc(16), Buffer.from(known[0]!).fill(1, 15), Buffer.from(known[0]!).fill(0, 0, 1));
  const repeated = new RepeatedGuids();
  const wire = Buffer.alloc(40);
  const differing: string[] = [];
  for (let n = 0; n < 5000; n++) {
    // Mostly a few GUIDs again and again (a site's products), sometimes any of them.
    const g = known[random() < 0.8 ? Math.floor(random() * 4) : Math.floor(random() * known.length)]!;
    const at = Math.floor(random() * 24);
    g.copy(wire, at);
    if (repeated.text(wire, at) !== bytesToGuid(g)) differing.push(`call ${n}: ${bytesToGuid(g)}`);
  }
  t.same(differing.slice(0, 5), [], `seed ${seed}: 5000 lookups`);
});

t.test('lowerId is toLowerCase for any text, capitals and letters beyond ASCII included', async (t) => {
  const seed = 0x10e1;
  const random = seededRandom(seed);
  const alphabet = [...'0189abcdefABCDEF-{}ZzÄäİıẞßΣσ💻\u0130'];
  const samples = ['', '55c92734-d682-4d71-983e-d6ec3f16059f', '55C92734-D682-4D71-983E-D6EC3F16059F', '{İ}', 'ẞ'];
  for (let n = 0; n < 500; n++) {
    let s = '';
    for (let i = Math.floor(random() * 40); i > 0; i--) s += alphabet[Math.floor(random() * alphabet.length)];
    samples.push(s);
  }
  t.same(
    samples.filter((s) => lowerId(s) !== s.toLowerCase()),
    [],
    `seed ${seed}: ${samples.length} texts`,
  );
});

t.test('the other forms guidToBytes accepts: upper case, braces, spaces', async (t) => {
  for (const form of [
    '51C82175-844E-4750-B0D8-EC255555BC06',
    '{51c82175-844e-4750-b0d8-ec255555bc06}',
    ' 51c82175-844e-4750-b0d8-ec255555bc06 ',
  ]) {
    t.same(written(t, form), guidToBytes(form), form);
  }
});

t.test('what is not a GUID is refused, as by guidToBytes', async (t) => {
  const bad = [
    '',
    'not-a-guid',
    '51c82175-844e-4750-b0d8-ec255555bc0g',
    '51c82175-844e-4750-b0d8-ec255555bc0',
    '51c82175+844e-4750-b0d8-ec255555bc06',
    '51c82175-844e-4750-b0d8-ec255555bc06x',
    '51c8217-5844e-4750-b0d8-ec255555bc06',
    '51c82175-844e-4750-b0d8-ec255555bc\u0660\u0666',
  ];
  for (const s of bad) {
    t.throws(() => writeGuid(Buffer.alloc(16), 0, s), TypeError, JSON.stringify(s));
    t.throws(() => guidToBytes(s), TypeError);
  }
});
