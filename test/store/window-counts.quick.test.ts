// Counts kept in memory (src/store/window-counts.ts) must equal the count over the file for any
// sequence of requests. Two seeded random walks: the counter alone against a model of the SQL rows
// with only 3 machines held (so trimming, left-out machines and reloads happen all the time), and
// the whole SqliteStore against a SQL count on its own file with more machines than it holds.

import t from 'tap';
import { WindowCounts, type CountSource } from '../../src/store/window-counts';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { cmid, DAY, obs, tempDataDir, WINDOW } from './observations';
import { NIL_GUID, WINDOWS_APP } from '../ids';
import { seededRandom as rng } from '../prng';

const SEED = 0xc0ffee;

t.test(`memory counts equal a model of the rows with 3 machines held (seed ${SEED})`, async (t) => {
  // The rows as the SQL statements leave them: cmid → last counted (null = refused only).
  const rows = new Map<string, number | null>();
  const source: CountSource = {
    lastCounted: (_app, id) => rows.get(id),
    mostRecent: (_app, limit) =>
      [...rows]
        .filter((r): r is [string, number] => r[1] !== null)
        .sort((a, b) => b[1] - a[1])
        .slice(0, limit),
  };
  const counts = new WindowCounts(source, 3);
  counts.load(['app']);
  const next = rng(SEED);
  const pick = (n: number): number => Math.floor(next() * n);
  let now = 1_000 * DAY;
  let mismatches = 0;
  let reached = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = next();
    if (r < 0.03) now -= pick(20) * DAY;
    else if (r < 0.08) now += pick(35) * DAY;
    else now += pick(12 * 3600_000);
    const id = `m${pick(40)}`;
    if (next() < 0.1) {
      if (!rows.has(id)) rows.set(id, null); // a refusal creates the row, never counts
      continue;
    }
    const previous = next() < 0.1 ? `m${pick(40)}` : undefined;
    const prev = previous === id ? undefined : previous;
    const cap = 1 + pick(3);
    const got = counts.served('app', id, prev, now, now - WINDOW, cap);
    // The SQL writes: rename when the new id has no row, delete the old, then upsert.
    if (prev !== undefined && rows.has(prev)) {
      if (!rows.has(id)) rows.set(id, rows.get(prev)!);
      rows.delete(prev);
    }
    const before = rows.get(id);
    rows.set(id, before === undefined || before === null ? now : Math.max(before, now));
    let inWindow = 0;
    for (const v of rows.values()) if (v !== null && v >= now - WINDOW) inWindow++;
    const expected = Math.min(inWindow, cap);
    if (got !== expected) mismatches++;
    if (expected === cap && inWindow > 3) reached++;
  }
  t.equal(mismatches, 0);
  t.ok(reached > 1000, 'most steps had more machines in the window than are held');
});

t.test(`SqliteStore counts equal the SQL count on its file, more machines than held (seed ${SEED})`, async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, {});
  const db = connectionOf(store);
  const sqlCount = db
    .prepare('SELECT count(*) FROM (SELECT 1 FROM clients WHERE application = ? AND last_counted_ms >= ? LIMIT ?)')
    .pluck();
  const next = rng(SEED ^ 0x55aa);
  const pick = (n: number): number => Math.floor(next() * n);
  let now = Date.UTC(2025, 0, 1);
  const mine: number[] = [];
  const sql: number[] = [];
  for (let step = 0; step < 9000; step++) {
    const r = next();
    if (r < 0.002) now -= pick(10) * DAY;
    else if (r < 0.004) now += pick(20) * DAY;
    else now += pick(60_000);
    const machine = step < 5000 ? step : pick(6000);
    const previous = next() < 0.05 ? cmid(pick(6000)) : NIL_GUID;
    const o = obs(machine, { requiredClientCount: next() < 0.5 ? 1000 : 25, previousClientMachineId: previous });
    if (next() < 0.05) {
      store.recordRefusal(o, 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
      continue;
    }
    const s = store.recordActivation(o, now, WINDOW);
    mine.push(Math.min(s.activeClients, 2 * s.maxRequiredClientCount));
    sql.push(sqlCount.get(WINDOWS_APP, now - WINDOW, 2 * s.maxRequiredClientCount) as number);
  }
  t.ok(
    sql.some((c) => c === 2000),
    'the walk reaches the largest cap',
  );
  t.same(mine, sql);

  // A reopened store builds the same counts from the file, at any cutoff.
  store.close();
  const reopened = SqliteStore.open(dir, {});
  t.teardown(() => reopened.close());
  const count = connectionOf(reopened).prepare(sqlCount.source).pluck();
  const cutoffs = [0, 10, 20, 30, 35].map((d) => now - d * DAY);
  for (const cap of [50, 2000]) {
    t.same(
      cutoffs.map((c) => reopened.countSince(WINDOWS_APP, c, cap)),
      cutoffs.map((c) => count.get(WINDOWS_APP, c, cap)),
      `after a restart, cap ${cap}`,
    );
  }
});
