// Both documented client behaviours (PROTOCOL.md §8.1): priority/weight honoured (Windows 7 and
// later) or ignored (older clients). dns check points out layouts that rely on the first.
import t from 'tap';
import { legacyClientWarnings } from '../../src/dns/dns-check';

const rec = (target: string, priority: number, weight: number) => ({ target, priority, weight, port: 1688 });

t.test('a backup host at a higher priority value is flagged; equal records are not', async (t) => {
  const backup = legacyClientWarnings([rec('kms1.example', 0, 0), rec('kms2.example', 10, 0)]);
  t.equal(backup.length, 1);
  t.match(backup[0], /kms2\.example/);
  t.notMatch(backup[0], /kms1\.example/);
  const weighted = legacyClientWarnings([rec('a', 0, 10), rec('b', 0, 90)]);
  t.match(weighted[0], /ignore SRV weight/);
  t.same(legacyClientWarnings([rec('a', 0, 0), rec('b', 0, 0)]), []);
  t.same(legacyClientWarnings([rec('a', 5, 5)]), []);
});
