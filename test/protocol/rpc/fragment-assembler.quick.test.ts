// Framing by frag_length (PROTOCOL.md §1.5, §2.1; C1, C2): any split of the stream gives the same
// PDUs, and impossible lengths fail after 10 bytes, before the body is buffered.
import t from 'tap';
import { FragmentAssembler } from '../../../src/protocol/rpc/fragment-assembler';
import { bytes } from '../../bytes';
import { EXCHANGES, pduBytes } from './exchanges';

const MAX = 4096;

function clientStreams(): { name: string; pdus: Buffer[] }[] {
  const out: { name: string; pdus: Buffer[] }[] = [];
  for (const ex of EXCHANGES) {
    for (const conn of new Set(ex.pdus.map((p) => p.connection))) {
      out.push({ name: `${ex.name}#${conn}`, pdus: ex.pdus.filter((p) => p.connection === conn && p.dir === 'c2s').map(pduBytes) });
    }
  }
  return out;
}

function feed(a: FragmentAssembler, chunks: Buffer[]): string[] {
  return chunks.flatMap((c) => a.push(c)).map((p) => p.toString('hex'));
}

t.test("every capture's client stream: whole, byte at a time, split at every offset (C1)", async (t) => {
  const streams = clientStreams();
  t.equal(streams.length, 64, 'client streams (one per connection)');
  for (const { name, pdus } of streams) {
    const expected = pdus.map((p) => p.toString('hex'));
    const stream = Buffer.concat(pdus);

    const whole = new FragmentAssembler(MAX);
    t.same(feed(whole, [stream]), expected, `${name}: one chunk`);
    t.equal(whole.buffered, 0);

    const bytewise = new FragmentAssembler(MAX);
    const oneByte = [...stream].map((b) => Buffer.from([b]));
    t.same(feed(bytewise, oneByte), expected, `${name}: byte at a time`);
    t.equal(bytewise.buffered, 0);

    let allSplits = true;
    for (let cut = 1; cut < stream.length; cut++) {
      const a = new FragmentAssembler(MAX);
      const got = feed(a, [stream.subarray(0, cut), stream.subarray(cut)]);
      if (got.join('|') !== expected.join('|') || a.buffered !== 0) {
        allSplits = false;
        t.fail(`${name}: split at ${cut}`);
        break;
      }
    }
    t.ok(allSplits, `${name}: every 2-way split`);
  }
});

t.test('two PDUs in one chunk, and a PDU plus the start of the next (C1)', async (t) => {
  const ex = EXCHANGES.find((e) => e.name === 'vlmcs-vlmcsd-win10-v6-three-requests-one-connection.json')!;
  const [bind, alter, req] = ex.pdus.filter((p) => p.dir === 'c2s').map(pduBytes);
  const a = new FragmentAssembler(MAX);
  t.same(feed(a, [Buffer.concat([bind!, alter!])]), [bind!.toString('hex'), alter!.toString('hex')]);
  const out = a.push(Buffer.concat([req!, alter!.subarray(0, 12)]));
  t.same(
    out.map((p) => p.toString('hex')),
    [req!.toString('hex')],
  );
  t.equal(a.buffered, 12, 'the next PDU start is held');
  t.same(feed(a, [alter!.subarray(12)]), [alter!.toString('hex')]);
  t.equal(a.buffered, 0);
});

t.test('frag_length below 16 fails as soon as 10 bytes are buffered (§2.1, C2)', async (t) => {
  const a = new FragmentAssembler(MAX);
  t.same(a.push(bytes('05 00 0b 03 10 00 00 00 0f')), [], '9 bytes: frag_length not known yet');
  t.equal(a.buffered, 9);
  t.throws(() => a.push(Buffer.from('00', 'hex')), { code: 'KMS_ERR_PDU_FRAG_LENGTH' });
  t.throws(() => a.push(Buffer.from('00', 'hex')), { code: 'KMS_ERR_PDU_FRAG_LENGTH' }, 'stays failed');
});

t.test('frag_length above the maximum fails before the body is buffered (§2.1, C2)', async (t) => {
  const a = new FragmentAssembler(300);
  t.throws(() => a.push(bytes('05 00 00 03 10 00 00 00 2d 01  # frag_length 301')), { code: 'KMS_ERR_PDU_FRAG_LENGTH' });
  t.equal(a.buffered, 0, 'nothing kept');
  const b = new FragmentAssembler(300);
  const exact = Buffer.alloc(300);
  exact.writeUInt16LE(300, 8);
  t.equal(b.push(exact).length, 1, 'exactly the maximum is fine');
});

t.test('a length of exactly 16 is a whole PDU; an empty chunk changes nothing', async (t) => {
  const a = new FragmentAssembler(MAX);
  const pdu = bytes('05 00 11 03 10 00 00 00 10 00 00 00 01 00 00 00  # a 16-byte shutdown');
  t.same(a.push(Buffer.alloc(0)), []);
  t.same(feed(a, [pdu]), [pdu.toString('hex')]);
});
