// The ePID shape of PROTOCOL.md §7.4 (and the §4.3 length limit it implies).
import t from 'tap';
import { isWellFormedEpid } from '../../../src/protocol/kms';
import { exchangeFiles, readFixture } from './fixtures';

t.test('well-formed ePIDs', async (t) => {
  for (const epid of [
    '03612-00206-556-123727-03-1033-17763.0000-2972018', // §7.4 example
    '06401-00206-471-111111-03-1033-17763.0000-2822018',
    '05426-00206-271-392041-03-1031-9200.0000-0012012', // day 001
    '03612-04573-000-000000-03-10333-20348.0000-3652021', // 5-digit LCID, day 365
    '03612-04918-999-999999-03-2057-26100.0000-3662024', // day 366 of a leap year
  ]) {
    t.ok(isWellFormedEpid(epid), epid);
  }
});

t.test('every ePID the reference hosts sent has the shape', async (t) => {
  const seen = new Set<string>();
  for (const f of exchangeFiles()) {
    for (const c of readFixture(`exchanges/${f}`).decoded.calls) if (c.response?.fields?.epid) seen.add(c.response.fields.epid);
  }
  t.ok(seen.size >= 5, `${seen.size} distinct ePIDs`);
  for (const epid of seen) t.ok(isWellFormedEpid(epid), epid);
});

t.test('malformed ePIDs', async (t) => {
  for (const [epid, why] of <[string, string][]>[
    ['', 'empty'],
    ['03612-00206-556-123727-04-1033-17763.0000-2972018', 'channel other than 03'],
    ['3612-00206-556-123727-03-1033-17763.0000-2972018', 'platform id of 4 digits'],
    ['03612-00206-556-12372-03-1033-17763.0000-2972018', 'key id part of 5 digits'],
    ['03612-00206-556-123727-03-103-17763.0000-2972018', 'LCID of 3 digits'],
    ['03612-00206-556-123727-03-1033-176.0000-2972018', 'build of 3 digits'],
    ['03612-00206-556-123727-03-1033-17763.0001-2972018', 'revision other than .0000'],
    ['03612-00206-556-123727-03-1033-17763.0000-0002018', 'day 000'],
    ['03612-00206-556-123727-03-1033-17763.0000-3672020', 'day 367'],
    ['03612-00206-556-123727-03-1033-17763.0000-3662018', 'day 366 of a common year'],
    ['03612-00206-556-123727-03-1033-17763.0000-297201', 'year of 3 digits'],
    ['03612-00206-556-123727-03-1033-17763.0000-2972018\0', 'trailing NUL'],
    [' 03612-00206-556-123727-03-1033-17763.0000-2972018', 'leading space'],
    ['03612-00206-556-123727-03-1033-17763.0000-2972018\n', 'trailing newline'],
    ['０3612-00206-556-123727-03-1033-17763.0000-2972018', 'a non-ASCII digit'],
  ]) {
    t.notOk(isWellFormedEpid(epid), why);
  }
});
