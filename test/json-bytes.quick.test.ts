// JsonBytes writes the bytes JSON.stringify's text would have in UTF-8, for strings of every kind
// (the fast ASCII path and the escaped one) and for every kind of number, within the bounds it
// publishes.
import t from 'tap';
import { JSON_NUMBER_BOUND, jsonStringBound, JsonBytes } from '../src/json-bytes';
import { escapeJsonText } from '../src/logging/json-escape';
import { seededRandom } from './prng';

/** The bytes written, with a guard byte after the bound that must stay untouched. */
function written(bound: number, write: (w: JsonBytes) => void): { bytes: Buffer; guardKept: boolean } {
  const buf = Buffer.alloc(bound + 3, 0xee);
  const w = new JsonBytes(buf, 2);
  write(w);
  return { bytes: buf.subarray(2, w.at), guardKept: w.at <= bound + 2 && buf[bound + 2] === 0xee };
}

t.test('strings: the bytes of JSON.stringify, with or without the log escaping, within the bound', async (t) => {
  const seed = 0x15_0b_e5;
  const random = seededRandom(seed);
  const alphabet = [...'abcXYZ019.-_ {}:,"\\/\x00\x01\x1f\x7f\x85\u00ad\u200e\u2028\u202e\ufeffé日💻'];
  const samples = ['', 'plain.name', '7ad7c6a0-40c1-4b5a-9e55-7b61b5e1f2c4', 'a"b', '\\', 'half\ud83d-pair\udcbb', '\udc00\ud800'];
  for (let n = 0; n < 400; n++) {
    let s = '';
    const length = Math.floor(random() * 60);
    for (let i = 0; i < length; i++) s += alphabet[Math.floor(random() * alphabet.length)];
    samples.push(s);
  }
  const wrong = samples.filter((s) => {
    const plain = written(jsonStringBound(s), (w) => w.string(s));
    const escaped = written(jsonStringBound(s), (w) => w.string(s, escapeJsonText));
    return !(
      plain.bytes.equals(Buffer.from(JSON.stringify(s), 'utf8')) &&
      escaped.bytes.equals(Buffer.from(escapeJsonText(JSON.stringify(s)), 'utf8')) &&
      plain.guardKept &&
      escaped.guardKept &&
      JSON.parse(escaped.bytes.toString('utf8')) === s
    );
  });
  t.same(wrong.slice(0, 3), [], `seed ${seed}: ${samples.length} strings written as JSON.stringify writes them`);
});

t.test('numbers: the text of JSON.stringify (null for what JSON lacks), within the bound', async (t) => {
  const numbers = [
    0,
    -0,
    1,
    9,
    10,
    99,
    100,
    12290,
    2 ** 31 - 1,
    2 ** 31,
    1_733_390_400_123,
    Number.MAX_SAFE_INTEGER,
    2 ** 53,
    1e21,
    -1,
    -12345,
    0.5,
    1 / 3,
    -1.2345678901234567e-308,
    -0.0000012345678901234567,
    -1.0000000000000002e-7,
    Number.MIN_VALUE,
    Number.MAX_VALUE,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ];
  const random = seededRandom(7);
  for (let i = 0; i < 200; i++) numbers.push(Math.floor(random() * 10 ** Math.floor(random() * 16)));
  const wrong = numbers.flatMap((n) => {
    const { bytes, guardKept } = written(JSON_NUMBER_BOUND, (w) => w.number(n));
    return bytes.toString('latin1') === JSON.stringify(n) && guardKept ? [] : [`${n}: wrote ${bytes.toString('latin1')}`];
  });
  t.same(wrong.slice(0, 3), [], `${numbers.length} numbers written as JSON.stringify writes them, within the bound`);
});

t.test('raw text and a sequence of writes land one after the other', async (t) => {
  const { bytes } = written(64, (w) => {
    w.raw('{"a":');
    w.number(12);
    w.raw(',"b":');
    w.string('x"y');
    w.raw('}');
  });
  t.equal(bytes.toString(), '{"a":12,"b":"x\\"y"}');
  t.same(JSON.parse(bytes.toString()), { a: 12, b: 'x"y' });
});
