import t from 'tap';
import { COUNT_WINDOW_MS, reportedCount } from '../../src/host/counting';
import { MemoryActivationStore } from '../../src/host/memory-store';
import type { ClientObservation } from '../../src/host/ports';
import { NIL_GUID, OFFICE_2010_APP, OFFICE_2013_APP, WIN10_ENTERPRISE_SKU, WIN10_VOLUME_GROUP, WINDOWS_APP } from '../ids';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function cmid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function obs(n: number, over: Partial<ClientObservation> = {}): ClientObservation {
  return {
    applicationId: WINDOWS_APP,
    kmsCountedId: WIN10_VOLUME_GROUP,
    activationId: WIN10_ENTERPRISE_SKU,
    clientMachineId: cmid(n),
    previousClientMachineId: NIL_GUID,
    workstationName: `pc${n}`,
    requiredClientCount: 25,
    licenseStatus: 2,
    vmInfo: 0,
    protocolVersion: 6,
    clientAddress: '192.0.2.1',
    requestTimeMs: T0,
    ...over,
  };
}

function count(store: MemoryActivationStore, o: ClientObservation, now: number): number {
  return reportedCount(store.recordActivation(o, now, COUNT_WINDOW_MS));
}

t.test('distinct CMIDs per application; a repeat does not raise the count', async (t) => {
  const s = new MemoryActivationStore();
  t.same(
    [1, 2, 3].map((n) => count(s, obs(n), T0)),
    [1, 2, 3],
  );
  t.equal(count(s, obs(2), T0 + 1000), 3);
  t.equal(count(s, obs(1, { applicationId: OFFICE_2010_APP, requiredClientCount: 5 }), T0), 1, 'Office 2010 is separate');
  t.equal(count(s, obs(1, { applicationId: OFFICE_2013_APP, requiredClientCount: 5 }), T0), 1, 'Office 2013+ is separate');
  t.equal(count(s, obs(9, { applicationId: OFFICE_2013_APP, requiredClientCount: 5 }), T0), 2);
  t.equal(count(s, obs(4), T0), 4);
  t.equal(s.snapshot(WINDOWS_APP, T0, COUNT_WINDOW_MS).activeClients, 4);
});

t.test('the cap follows the largest threshold in the window', async (t) => {
  const s = new MemoryActivationStore();
  for (let n = 1; n <= 12; n++) count(s, obs(n, { requiredClientCount: 5 }), T0);
  t.same(s.snapshot(WINDOWS_APP, T0, COUNT_WINDOW_MS), { activeClients: 12, maxRequiredClientCount: 5 });
  t.equal(count(s, obs(13, { requiredClientCount: 5 }), T0), 10, 'servers only: capped at 10');
  t.equal(count(s, obs(14, { requiredClientCount: 25 }), T0), 14, 'after a Windows client the cap is 50');
  // the threshold 25 ages out with its request: back to 10
  t.equal(count(s, obs(15, { requiredClientCount: 5 }), T0 + 31 * DAY), 1);
  for (let n = 16; n <= 30; n++) count(s, obs(n, { requiredClientCount: 5 }), T0 + 31 * DAY);
  t.equal(s.snapshot(WINDOWS_APP, T0 + 31 * DAY, COUNT_WINDOW_MS).maxRequiredClientCount, 5);
  t.equal(count(s, obs(31, { requiredClientCount: 0 }), T0 + 31 * DAY), 10, 'a threshold of 0 does not lower the cap');
});

t.test('30-day expiry at the boundary (C29)', async (t) => {
  const s = new MemoryActivationStore();
  count(s, obs(1), T0);
  t.equal(count(s, obs(2), T0 + COUNT_WINDOW_MS), 2, 'exactly 30 days later: still counted');
  t.equal(count(s, obs(3), T0 + COUNT_WINDOW_MS + 1), 2, 'one millisecond more: dropped');
  t.equal(count(s, obs(1), T0 + COUNT_WINDOW_MS + 2), 3, 'it counts again when it comes back');
  t.equal(s.machine(WINDOWS_APP, cmid(1))?.firstSeenMs, T0, 'first seen is kept');
});

t.test('PreviousClientMachineID replaces a known machine of the same application', async (t) => {
  const s = new MemoryActivationStore();
  count(s, obs(1), T0);
  count(s, obs(2), T0);
  t.equal(count(s, obs(3, { previousClientMachineId: cmid(1) }), T0 + 1000), 2, 're-imaged machine counts once');
  t.equal(s.machine(WINDOWS_APP, cmid(1)), undefined);
  t.equal(s.machine(WINDOWS_APP, cmid(3))?.firstSeenMs, T0, 'the new CMID inherits the history');
  t.equal(count(s, obs(4, { previousClientMachineId: cmid(99) }), T0), 3, 'unknown previous CMID: just a new machine');
  count(s, obs(5, { applicationId: OFFICE_2013_APP, requiredClientCount: 5 }), T0);
  t.equal(count(s, obs(6, { previousClientMachineId: cmid(5) }), T0), 4, "another application's CMID is not replaced");
  t.equal(s.snapshot(OFFICE_2013_APP, T0, COUNT_WINDOW_MS).activeClients, 1);
  t.equal(count(s, obs(6, { previousClientMachineId: cmid(6) }), T0), 4, 'previous = current changes nothing');
});

t.test('refusals are recorded, never counted (C30)', async (t) => {
  const s = new MemoryActivationStore();
  count(s, obs(1), T0);
  s.recordRefusal(obs(2), 0xc004f042, 'KMS_ERR_KMS_UNKNOWN_GROUP', T0);
  s.recordRefusal({ clientAddress: '192.0.2.9' }, 0x8007000d, 'KMS_ERR_KMS_VERSION', T0);
  t.same(s.snapshot(WINDOWS_APP, T0, COUNT_WINDOW_MS), { activeClients: 1, maxRequiredClientCount: 25 });
  t.equal(s.events.length, 3);
  t.same(
    s.events.map((e) => e.kind),
    ['activation', 'refusal', 'refusal'],
  );
  t.equal(s.events[1]?.code, 'KMS_ERR_KMS_UNKNOWN_GROUP');
  t.equal(count(s, obs(2), T0), 2);
});

t.test('clock jumps never drop or double-count a client', async (t) => {
  const s = new MemoryActivationStore();
  count(s, obs(1), T0 + 10 * DAY);
  count(s, obs(2), T0 + 10 * DAY);
  // the host clock goes back 5 days: both still count, a repeat is not a new machine
  t.equal(count(s, obs(1), T0 + 5 * DAY), 2);
  t.equal(s.machine(WINDOWS_APP, cmid(1))?.lastCountedMs, T0 + 10 * DAY, 'last seen never moves backwards');
  // forward past the window of the first requests: only the one seen since counts
  t.equal(count(s, obs(3), T0 + 10 * DAY + COUNT_WINDOW_MS + 1), 1);
  // back again: the old entries are still there (nothing was thrown away)
  t.equal(count(s, obs(3), T0 + 11 * DAY), 3);
});

t.test('settings and the event-log bound', async (t) => {
  const s = new MemoryActivationStore(3);
  t.equal(s.getSetting('a'), undefined);
  s.setSetting('a', '1');
  s.setSetting('a', '2');
  t.equal(s.getSetting('a'), '2');
  for (let n = 0; n < 20; n++) s.recordRefusal({}, 0x8007000d, 'KMS_ERR_KMS_VERSION', T0 + n);
  t.ok(s.events.length < 6);
  t.equal(s.events[s.events.length - 1]?.nowMs, T0 + 19, 'newest kept');
});
