// The SQLite store must count exactly like the reference in-memory store (src/host/memory-store.ts)
// for any sequence of requests: a seeded random walk with repeats, re-imaged machines, refusals,
// two applications, two thresholds and a clock that jumps both ways. The same walk runs again
// while the file cannot be written, so the in-memory overlay is held to the same rules.

import t from 'tap';
import { MemoryActivationStore } from '../../src/host/memory-store';
import { reportedCount } from '../../src/host/counting';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import {
  cmid,
  DAY,
  obs,
  OFFICE_2019_EXCEL,
  OFFICE_2019_GROUP,
  SERVER_2022_GROUP,
  SERVER_2022_STANDARD,
  tempDataDir,
  WINDOW,
} from './observations';
import { NIL_GUID, OFFICE_2013_APP } from '../ids';
import { seededRandom as rng } from '../prng';

const SEED = 0x5eed1234;
const STEPS = 1500;

function walk(store: SqliteStore, onStep: (step: number) => void): { mine: number[]; reference: number[] } {
  const reference = new MemoryActivationStore();
  const next = rng(SEED);
  const pick = (n: number): number => Math.floor(next() * n);
  const office = {
    applicationId: OFFICE_2013_APP,
    kmsCountedId: OFFICE_2019_GROUP,
    activationId: OFFICE_2019_EXCEL,
    requiredClientCount: 5,
  };
  const server = { kmsCountedId: SERVER_2022_GROUP, activationId: SERVER_2022_STANDARD, requiredClientCount: 5 };
  let now = Date.UTC(2025, 0, 1);
  const mine: number[] = [];
  const ref: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    onStep(step);
    const r = next();
    if (r < 0.05)
      now -= pick(15) * DAY; // clock set back
    else if (r < 0.12)
      now += pick(40) * DAY; // long silence or clock forward
    else now += pick(6 * 3600_000);
    const machine = pick(90);
    const kind = pick(3);
    const over = kind === 0 ? office : kind === 1 ? server : {};
    const previous = next() < 0.08 ? cmid(pick(90)) : NIL_GUID;
    const o = obs(machine, { ...over, previousClientMachineId: previous });
    if (next() < 0.1) {
      store.recordRefusal(o, 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
      reference.recordRefusal(o, 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
      continue;
    }
    mine.push(reportedCount(store.recordActivation(o, now, WINDOW)));
    ref.push(reportedCount(reference.recordActivation(o, now, WINDOW)));
  }
  return { mine, reference: ref };
}

t.test(`SQLite and reference stores report the same counts (seed ${SEED})`, async (t) => {
  const store = SqliteStore.open(tempDataDir(t), {});
  t.teardown(() => store.close());
  const { mine, reference } = walk(store, () => {});
  t.ok(
    reference.some((c) => c >= 10),
    'the walk reaches the cap region',
  );
  t.same(mine, reference);
});

t.test(`the same while the disk is full for a stretch, then after recovery (seed ${SEED})`, async (t) => {
  const store = SqliteStore.open(tempDataDir(t), { retryIntervalMs: 60_000, retryTimerMs: 3_600_000 });
  t.teardown(() => store.close());
  const db = connectionOf(store);
  let outage = false;
  const { mine, reference } = walk(store, (step) => {
    if (step === 400) {
      // Freeze the file at its current size: every write that needs a page fails SQLITE_FULL.
      db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
      outage = true;
    }
    if (step === 1100) {
      db.pragma('max_page_count = 1073741823');
      t.ok(store.hasPendingWrites, 'writes were pending during the outage');
      t.equal(store.flushPending(), true);
      outage = false;
    }
  });
  t.equal(outage, false);
  t.same(mine, reference);
  t.equal(store.hasPendingWrites, false);
});
