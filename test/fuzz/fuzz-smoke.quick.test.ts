// A second of the loopback fuzzer (npm run test:fuzz) with one round on every target it finds at
// least, seeded: the campaign machinery works, the targets load, and the host survives and keeps
// serving. The long campaigns are npm run test:fuzz's.
import t from 'tap';
import { runCampaign } from './loopback-fuzz';

t.test('a short seeded campaign: inputs sent, no crash, every health check passed', async (t) => {
  const lines: string[] = [];
  const report = await runCampaign({ seed: 20261204, seconds: 1, minRounds: 3, out: (l) => lines.push(l) });
  t.same(report.crashes, [], 'no crash');
  t.same(report.findings, [], 'a well-behaved client was served after every round');
  t.same(report.missing, [], 'every target module loaded');
  t.same(report.targets, ['kms', 'dns', 'admin-http'], 'the three surfaces');
  for (const target of report.targets) t.ok((report.inputsByTarget[target] ?? 0) > 0, `${target}: inputs sent`);
  t.ok(report.inputs > 0 && report.rounds > 0, `${report.inputs} inputs in ${report.rounds} rounds`);
  t.ok(report.peakRssBytes > 0);
  t.match(lines[0], /seed 20261204/, 'the seed is printed for a replay');
});
