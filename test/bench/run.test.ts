// `npm run bench` must keep working: a one-second run of each phase prints every figure and no
// errors. No timing is asserted here (targets live in the benchmark, not in tests).
import t from 'tap';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { ROOT } from '../paths';

const RUN = path.join(ROOT, 'dist', 'bench', 'run.js');

t.test('the benchmark runs end to end and prints every figure', async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [RUN, '--seconds', '1', '--skip-large', '--skip-footprint'], { timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
  for (const label of [
    'sequential: keep-alive',
    'sequential: new connection per activation',
    'new connection per request',
    '20 requests per connection',
    'paced at half that rate',
  ]) {
    // The sequential runs also print the server's CPU time per activation.
    const cpu = label.startsWith('sequential') ? '\\s+server CPU \\d+ µs/activation' : '';
    t.match(out, new RegExp(`${label}.*\\s\\d+ activations/s\\s+p50 \\d+\\.\\d+ ms\\s+p99 \\d+\\.\\d+ ms${cpu}\\n`), label);
  }
  t.notMatch(out, /errors:/, 'no request failed');
  t.match(out, /server peak RSS under the sequential loads \d+\.\d MB/);
  t.match(out, /server peak RSS \d+\.\d MB/);
  t.match(out, /store per activation, one at a time: \d+\.\d µs with its own commit/);
  t.match(out, /DNS: \d+ SRV queries\/s over UDP/);
});
