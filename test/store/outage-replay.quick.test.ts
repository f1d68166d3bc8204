// Writes kept in memory during an outage (coalesced per machine, pending-writes.ts) must leave
// exactly the rows that writing each request on time leaves. A seeded walk of served and refused
// requests, re-imaged machines (also replacing machines that are themselves waiting), changing
// names and addresses and a clock that jumps, runs against two stores: one always writable, one
// whose disk is full for most of the walk. Afterwards both files hold the same clients, column
// for column, and the same events.

import t from 'tap';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { cmid, DAY, obs, tempDataDir, WINDOW } from './observations';
import { NIL_GUID } from '../ids';
import { seededRandom as rng } from '../prng';

for (const seed of [0x0abc1234, 0x5151ab, 0x77e1]) {
  t.test(`an outage's coalesced writes equal writing on time (seed ${seed})`, async (t) => {
    const onTime = SqliteStore.open(tempDataDir(t), {});
    const late = SqliteStore.open(tempDataDir(t), { retryIntervalMs: 3_600_000, retryTimerMs: 3_600_000 });
    t.teardown(() => {
      onTime.close();
      late.close();
    });
    const db = connectionOf(late);
    const next = rng(seed);
    const pick = (n: number): number => Math.floor(next() * n);
    let now = Date.UTC(2025, 3, 1);
    for (let step = 0; step < 1500; step++) {
      if (step === 200) db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
      const r = next();
      if (r < 0.03) now -= pick(5) * DAY;
      else if (r < 0.06) now += pick(40) * DAY;
      else now += pick(3_600_000);
      const machine = pick(120);
      const o = obs(machine, {
        previousClientMachineId: next() < 0.08 ? cmid(pick(120)) : NIL_GUID,
        workstationName: `pc-${machine}-${pick(3)}`,
        clientAddress: next() < 0.1 ? '' : `10.0.0.${pick(4)}`,
        licenseStatus: pick(6),
        requiredClientCount: next() < 0.5 ? 25 : 5,
      });
      const refuse = pick(10) === 0;
      for (const store of [onTime, late]) {
        if (refuse) store.recordRefusal(o, 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
        else store.recordActivation(o, now, WINDOW);
      }
    }
    t.ok(late.hasPendingWrites, 'the outage lasted');
    t.ok(late.stats().pendingMachines > 0);
    t.equal(late.stats().droppedEvents, 0);
    db.pragma('max_page_count = 1073741823');
    t.equal(late.flushPending(), true);
    const rows = (s: SqliteStore) => connectionOf(s).prepare('SELECT * FROM clients ORDER BY application, cmid').all();
    const events = (s: SqliteStore) =>
      connectionOf(s)
        .prepare('SELECT * FROM events ORDER BY id')
        .all()
        .map((e) => ({ ...(e as object), id: 0 }));
    t.same(rows(late), rows(onTime), 'the same clients, column for column');
    t.same(events(late), events(onTime), 'the same events in the same order (the buffer did not overflow here)');
  });
}
