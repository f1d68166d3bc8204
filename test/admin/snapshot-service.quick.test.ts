// The snapshot worker service: the status is computed in a worker, shared by concurrent callers,
// kept for 10 s, and afterwards answered from the last one while the next is computed.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateStore } from '../../scripts/generate-store';
import { AdminBusyError, SnapshotService, waitAtMost } from '../../src/admin/snapshot-service';
import { until } from '../wait';

t.test('one computation per interval; stale-while-revalidate after it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-snap-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  generateStore(dir, { clients: 500, nowMs: Date.parse('2026-12-01T00:00:00Z') });
  let now = Date.parse('2026-12-01T12:00:00Z');
  const warnings: unknown[] = [];
  const service = new SnapshotService({ dataDir: dir, catalogFile: '' }, { warn: (o) => warnings.push(o) }, () => now);
  t.teardown(() => service.close());
  const [a, b] = await Promise.all([service.inventory([]), service.inventory([])]);
  t.equal(a, b, 'concurrent callers share one computation');
  t.equal(a.machinesKnown, 500);
  now += 5_000;
  t.equal(await service.inventory([]), a, 'within 10 s: the same status');
  now += 6_000;
  t.equal(await service.inventory([]), a, 'after 10 s: the last status at once, while the next is computed');
  // The refresh runs in the worker and tells nobody: asked again every 10 ms until it is in.
  const fresh = await until(
    async () => {
      const next = await service.inventory([]);
      return next === a ? undefined : next;
    },
    'the refreshed status',
    { everyMs: 10 },
  );
  t.not(fresh, a, 'then the new one');
  const page = await service.machines({ q: '', sort: 'application', limit: 10 });
  t.equal(page.rows.length, 10);
  t.ok(page.next, 'a cursor to the next page');
  const counts = await service.refreshCounts();
  t.ok(counts.distinctMachines > 0 && counts.distinctMachines <= 500);
  t.same(warnings, []);
});

t.test('a caller waits a bounded time for a status still being computed; the work goes on', async (t) => {
  // waitAtMost's timer is unref'd (it must not keep a stopping server alive): keep this test's loop alive.
  const keep = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(keep));
  let finish: (v: string) => void = () => undefined;
  const work = new Promise<string>((r) => (finish = r));
  await t.rejects(waitAtMost(work, 20, 'still computing'), { message: 'still computing' });
  t.type(await waitAtMost(work, 20, 'x').catch((e: unknown) => e), AdminBusyError, 'a busy answer (503), not a failure');
  finish('done');
  t.equal(await work, 'done', 'the computation itself was not cancelled');
  t.equal(await waitAtMost(Promise.resolve(1), 20, 'x'), 1);
});
