import t from 'tap';
import { COUNT_WINDOW_MS, effectiveRequiredCount, isInsideWindow, reportedCount } from '../../src/host/counting';

t.test('the window is 30 days, inclusive at its end (C29)', async (t) => {
  t.equal(COUNT_WINDOW_MS, 2_592_000_000);
  t.ok(isInsideWindow(0, COUNT_WINDOW_MS, COUNT_WINDOW_MS), 'exactly 30 days ago still counts');
  t.notOk(isInsideWindow(0, COUNT_WINDOW_MS + 1, COUNT_WINDOW_MS), 'more than 30 days ago does not');
  t.ok(isInsideWindow(5000, 1000, COUNT_WINDOW_MS), 'seen "in the future" (clock went back) counts');
});

t.test('reported count = min(active, 2 × max threshold) (C28)', async (t) => {
  t.equal(reportedCount({ activeClients: 3, maxRequiredClientCount: 25 }), 3);
  t.equal(reportedCount({ activeClients: 60, maxRequiredClientCount: 25 }), 50);
  t.equal(reportedCount({ activeClients: 60, maxRequiredClientCount: 5 }), 10);
  t.equal(reportedCount({ activeClients: 10, maxRequiredClientCount: 5 }), 10);
  t.equal(reportedCount({ activeClients: 11, maxRequiredClientCount: 5 }), 10);
  t.equal(reportedCount({ activeClients: 5, maxRequiredClientCount: 0 }), 2, 'a threshold of 0 counts as 1');
  t.equal(effectiveRequiredCount(0), 1);
  t.equal(effectiveRequiredCount(25), 25);
});
