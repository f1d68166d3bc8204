// `npm run bench` must keep working: a short run of each phase prints every figure and no errors.
// No timing is asserted here (targets live in the benchmark, not in tests), so each run lasts only
// long enough to send some requests.
import t from 'tap';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { ROOT } from '../paths';
import { withoutTapRecorder } from '../plain-child';

const RUN = path.join(ROOT, 'dist', 'bench', 'run.js');

t.test('the benchmark runs end to end and prints every figure', async (t) => {
  // The bench's server and client processes run without tap's recorder, which slowed each of them:
  // the bench measures, it is not what coverage is for.
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      // The DNS part has its own test (test/dns/dns-bench.quick.test.ts).
      ...withoutTapRecorder(process.execPath, [RUN, '--seconds', '0.25', '--skip-large', '--skip-footprint', '--skip-dns']),
      { timeout: 120_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
  const withC = !/sequential \(C clients\): skipped/.test(out);
  for (const label of [
    ...(withC ? ['sequential (C clients): keep-alive', 'sequential (C clients): new connection each'] : []),
    'sequential (Node clients): keep-alive',
    'sequential (Node clients): new connection each',
    'new connection per request',
    '20 requests per connection',
    'paced at half that rate',
  ]) {
    // The sequential runs also print the server's CPU time per activation.
    const cpu = label.startsWith('sequential') ? '\\s+server CPU \\d+ µs/activation' : '';
    const escaped = label.replace(/[()]/g, '\\$&');
    t.match(out, new RegExp(`${escaped}.*\\s\\d+ activations/s\\s+p50 \\d+\\.\\d+ ms\\s+p99 \\d+\\.\\d+ ms${cpu}\\n`), label);
  }
  t.notMatch(out, /errors:/, 'no request failed');
  t.match(out, /server peak RSS under the sequential loads \d+\.\d MB/);
  t.match(out, /server peak RSS \d+\.\d MB/);
  t.match(out, /store per activation, one at a time: \d+\.\d µs with the request journal .*, \d+\.\d µs with its own commit/);
});
