// Under sustained new-client load the -wal file must stay bounded (issue: 972 MB in 20 s with
// PASSIVE checkpoints alone). Every write here is its own transaction, the worst case: each
// checkpoint cycle (src/store/wal-checkpoints.ts) is ended by the next write, its fsyncs on the
// loop, and the WAL is started again from its beginning after it. The writes come three times
// faster than a loaded server can make them (no network).
import t from 'tap';
import * as fs from 'node:fs';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { obs, tempDataDir, WINDOW } from './observations';

t.test('the -wal file stays bounded while thousands of new machines are written one by one', async (t) => {
  // The production thresholds (STORE_TUNING): a cycle every 512 writes, truncated past 8 MB.
  const store = SqliteStore.open(tempDataDir(t), { backgroundCheckpointMs: 1000 });
  t.teardown(() => store.close());
  const wal = `${store.file}-wal`;
  const pageSize = connectionOf(store).pragma('page_size', { simple: true }) as number;
  const walSize = (): number => (fs.existsSync(wal) ? fs.statSync(wal).size : 0);
  let largest = 0;
  let written = 0;
  const T0 = Date.now();
  // Bounded: stop after 40,000 machines or once the WAL has seen 200 MB of frames pass.
  for (let n = 1; n <= 40_000 && written < 200 << 20; n++) {
    store.recordActivation(obs(n, { requiredClientCount: 1000 }), T0 + n, WINDOW);
    written += 3 * pageSize; // at least the client, index and event pages of each commit
    if (n % 200 === 0) {
      largest = Math.max(largest, walSize());
      // let the timers and fsync callbacks through now and then
      if (n % 5000 === 0) await new Promise((r) => setImmediate(r));
    }
  }
  t.ok(written > 64 << 20, `more than 64 MB of WAL frames were written (${Math.round(written / 2 ** 20)} MB)`);
  t.ok(largest < 64 << 20, `the -wal file never passed 64 MB (largest ${(largest / 2 ** 20).toFixed(1)} MB)`);
  t.ok(store.stats().walBytes !== undefined, 'stats report the -wal size');
  t.same(
    { failures: store.stats().writeFailures, error: store.stats().lastWriteError },
    { failures: 0, error: null },
    'no write ever failed (the checkpoints never lock a writer out)',
  );
});
