import t from 'tap';
import { Reader } from '../../src/protocol/reader';
import { Writer } from '../../src/protocol/writer';
import { bytesToGuid, guidToBytes } from '../../src/protocol/guid';
import { KmsError } from '../../src/errors';

t.test('GUID wire layout is mixed-endian (PROTOCOL.md conventions)', async (t) => {
  // KMS interface UUID and its wire bytes from §2.4.
  const wire = '7521c8514e845047b0d8ec255555bc06';
  t.equal(guidToBytes('51C82175-844E-4750-B0D8-EC255555BC06').toString('hex'), wire);
  t.equal(bytesToGuid(Buffer.from(wire, 'hex')), '51c82175-844e-4750-b0d8-ec255555bc06');
  t.throws(() => guidToBytes('not-a-guid'));
});

t.test('reader reads little-endian and fails with a coded error when short', async (t) => {
  const r = new Reader(Buffer.from('0102030405060708090a0b0c0d0e0f', 'hex'));
  t.equal(r.u8(), 0x01);
  t.equal(r.u16(), 0x0302);
  t.equal(r.u32(), 0x07060504);
  t.equal(r.remaining, 8);
  r.u8();
  const err = t.throws(() => r.u64()) as unknown;
  t.ok(err instanceof KmsError);
  t.equal((err as KmsError).code, 'KMS_ERR_PDU_TRUNCATED');
  t.match((err as KmsError).details, { need: 8, have: 7, at: 8 });
});

t.test('reader honours a slice and aligns relative to a base', async (t) => {
  const r = new Reader(Buffer.from('ff00112233445566778899', 'hex'), 1, 9);
  r.u8();
  r.align(4, 1);
  t.equal(r.offset, 5);
  t.equal(r.u32(), 0x77665544);
  t.equal(r.remaining, 0);
  t.throws(() => r.u8(), { code: 'KMS_ERR_PDU_TRUNCATED' });
  r.expectEnd();
});

t.test('writer grows, aligns and back-fills', async (t) => {
  const w = new Writer(2);
  const at = w.reserve(2);
  w.u8(1)
    .align(4)
    .u32(0xdeadbeef)
    .u64(0x0102030405060708n)
    .bytes(Buffer.from([9]));
  w.backfillU16(at, w.offset);
  t.equal(w.finish().toString('hex'), '1100' + '01' + '00' + 'efbeadde' + '0807060504030201' + '09');
});
