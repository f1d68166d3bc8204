import t from 'tap';
import { generateStore, syntheticCmid } from '../../scripts/generate-store';
import { Inventory } from '../../src/store/inventory';
import { tempDataDir } from '../store/observations';
import { WINDOWS_APP } from '../ids';

const DAY = 86_400_000;

t.test('fills a store with the requested clients, spread over applications and groups', async (t) => {
  const dir = tempDataDir(t);
  const now = Date.UTC(2026, 5, 1);
  const progress: number[] = [];
  const result = generateStore(dir, { clients: 45_000, nowMs: now, onProgress: (done) => progress.push(done) });
  t.equal(result.clients, 45_000);
  t.same(progress, [20_000, 40_000, 45_000], 'one progress call per batch');
  const inventory = Inventory.open(dir);
  t.teardown(() => inventory.close());
  t.equal(inventory.info().clients, 45_000);
  const summary = inventory.summary(now);
  t.equal(summary.length, 3, 'Windows, Office 2013+ and Office 2010');
  const [windows, office, office2010] = summary;
  t.equal(windows?.applicationId, WINDOWS_APP);
  t.equal(windows?.threshold, 25);
  t.equal(office?.threshold, 5);
  // Last seen spread over 60 days: about half the machines are inside the 30-day window.
  const active = summary.reduce((n, a) => n + a.activeMachines, 0);
  t.ok(active > 0.4 * 45_000 && active < 0.6 * 45_000, `${active} active`);
  t.ok((windows?.groups.length ?? 0) > 10, 'many Windows groups');
  t.ok((office2010?.activeMachines ?? 0) > 0);
  const silent = [...inventory.clients({ notSeenSinceMs: now - 59 * DAY }, now)];
  t.ok(silent.length > 0 && silent.length < 45_000 * 0.05);
  t.equal(syntheticCmid(255), '9e4e0000-0000-4000-8000-0000000000ff');
});
