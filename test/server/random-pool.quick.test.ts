// The per-request random pool hands out every byte once, refills, and passes large requests through.
import t from 'tap';
import { pooledRandomBytes } from '../../src/server/random-pool';

t.test('bytes are handed out once, as copies, across refills', async (t) => {
  const take = pooledRandomBytes(64);
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const b = take(32);
    t.equal(b.length, 32);
    const hex = b.toString('hex');
    t.notOk(seen.has(hex), `draw ${i} is new`);
    seen.add(hex);
    const copy = Buffer.from(b);
    take(16); // later draws must not change what an earlier caller holds
    t.same(b, copy);
  }
  t.equal(take(1000).length, 1000, 'larger than the pool: drawn directly');
  t.not(take(16).toString('hex'), '00'.repeat(16), 'never the zeroed slots');
});
