import t from 'tap';
import { benchDns } from '../../bench/dns-bench';

t.test('benchDns measures answered SRV queries over loopback UDP, bounded by count', async (t) => {
  const r = await benchDns({ seconds: 2, maxQueries: 500, window: 16 });
  t.equal(r.queries, 500, 'stops at the count bound');
  t.equal(r.answered + r.lost, r.queries);
  t.ok(r.answered >= 490, `nearly every query answered (${r.answered})`);
  t.ok(r.queriesPerSecond > 0);
  t.ok(r.answerBytes / r.answered > 100, 'answers carry the SRV set and addresses');
});
