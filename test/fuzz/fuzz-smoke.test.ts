// A few seconds of the loopback fuzzer (npm run test:fuzz) on every target it finds, seeded: the
// campaign machinery works, the targets load, and the host survives and keeps serving.
import t from 'tap';
import { runCampaign } from './loopback-fuzz';

t.test('a short seeded campaign: inputs sent, no crash, every health check passed', async (t) => {
  const lines: string[] = [];
  const report = await runCampaign({ seed: 20261204, seconds: 3, out: (l) => lines.push(l) });
  t.same(report.crashes, [], 'no crash');
  t.same(report.findings, [], 'a well-behaved client was served after every round');
  t.ok(report.targets.includes('kms'), 'the KMS target ran');
  t.ok(report.inputs > 0 && report.rounds > 0, `${report.inputs} inputs in ${report.rounds} rounds`);
  t.ok(report.peakRssBytes > 0);
  t.match(lines[0], /seed 20261204/, 'the seed is printed for a replay');
});
