// Red team: the numbers an administrator reads (the count, the threshold, "machines still
// missing") against a client that sends any RequiredClientCount, a host clock set far ahead and
// then corrected, and a re-imaged machine at the machine cap. The wire behaviour (PROTOCOL.md §7.2:
// the count is capped at twice the largest RequiredClientCount seen) is not changed; what the
// admin is shown must not be steered by one request.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCatalog } from '../../src/catalog/load';
import { catalogNames } from '../../src/catalog/names';
import { command as statusCommand } from '../../src/cli/commands/status';
import { Inventory, thresholdNotes, type ApplicationSummary } from '../../src/store/inventory';
import { SqliteStore } from '../../src/store/sqlite-store';
import { buildCountFacts, buildInventoryView, type AdminSnapshot, type InventoryView } from '../../src/admin/snapshot';
import { renderAdminPage } from '../../src/admin/page';
import { createApplianceMetrics } from '../../src/metrics/appliance-metrics';
import { captureIo } from '../cli/commands/inventory-fixture';
import { cmid as storeCmid, DAY, obs, recordingLog, tempDataDir, WINDOW } from '../store/observations';
import { connectionOf } from '../../src/store/testing';
import { unusualThresholdLogger } from '../../src/host/unusual-thresholds';
import { cmid, makeHost } from './host-harness';

const catalog = loadCatalog();
const names = catalogNames(catalog);
const policy = (groupId: string): number | undefined => catalog.kmsGroupById(groupId)?.nCountPolicy;

interface Scenario {
  readonly name: string;
  /** Requests as (machine number, RequiredClientCount). */
  readonly requests: readonly (readonly [number, number])[];
  readonly active: number;
  /** What the catalogue's Windows 10/11 clients ask for: the truth for "missing". */
  readonly missing: number;
  readonly odd: RegExp;
}

const genuine = (from: number, to: number): [number, number][] => Array.from({ length: to - from + 1 }, (_, i) => [from + i, 25]);

const SCENARIOS: readonly Scenario[] = [
  // A test tool (or forger) that asks for 1: the page said "Clients activate (they need 1)".
  {
    name: 'forged low',
    requests: [
      [1, 1],
      [2, 1],
      [3, 1],
    ],
    active: 3,
    missing: 22,
    odd: /Requests asked for 1 machine: 3 machines of .*whose clients ask for 25/,
  },
  // One machine asks for 1000 among 24 genuine ones: status said "976 more machines".
  { name: 'forged high', requests: [...genuine(1, 24), [25, 1000]], active: 25, missing: 0, odd: /asked for 1000 machines/ },
  // 60 genuine machines and one asking for 1000: clients are told 61 (the wire cap is 2000 now).
  { name: 'forged high over the cap', requests: [...genuine(1, 60), [61, 1000]], active: 61, missing: 0, odd: /asked for 1000/ },
];

interface Tap {
  teardown(fn: () => void): void;
}

function prepared(t: Tap, s: Scenario, nowMs: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-red-counts-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = SqliteStore.open(dir, { clock: { now: () => nowMs } });
  for (const [n, required] of s.requests) store.recordActivation(obs(n, { requiredClientCount: required }), nowMs - 60_000, WINDOW);
  store.close();
  return dir;
}

function windowsOf(summary: readonly ApplicationSummary[]): ApplicationSummary {
  const w = summary.find((a) => a.applicationName === 'Windows');
  if (w === undefined) throw new Error('no Windows summary');
  return w;
}

for (const s of SCENARIOS) {
  t.test(`${s.name}: the inventory counts against the catalogue's threshold and names the request`, async (t) => {
    const now = Date.now();
    const dir = prepared(t, s, now);
    const inventory = Inventory.open(dir, { names });
    t.teardown(() => inventory.close());
    const w = windowsOf(inventory.summary(now, policy));
    t.match(w, { activeMachines: s.active, threshold: 25, missing: s.missing, activates: s.missing === 0 });
    t.same(
      w.groups.map((g) => [g.requiredCount, g.activates]),
      [[25, s.missing === 0]],
      'the product group needs what its clients ask for',
    );
    const largest = Math.max(...s.requests.map(([, r]) => r));
    t.equal(w.largestRequested, largest, 'what the wire cap follows is still reported');
    t.equal(w.reportedCount, Math.min(s.active, 2 * largest), 'and what clients are told is the wire truth');
  });

  t.test(`${s.name}: kms-appliance status`, async (t) => {
    const dir = prepared(t, s, Date.now());
    const c = captureIo();
    t.equal(await statusCommand.run(['--data-dir', dir], c.io), 0);
    const out = c.stdout();
    const line = out.split('\n').find((l) => l.startsWith('Windows:')) ?? '';
    t.match(line, /clients need 25: /, 'the catalogue threshold');
    if (s.missing > 0) t.match(line, new RegExp(`${s.missing} more machines must contact`));
    else t.match(line, /Windows clients activate/);
    t.notMatch(out, /need (1|1000)\b/, 'no forged threshold as what is needed');
    t.match(out, s.odd, 'the odd request is named');
    const json = JSON.parse((await runJson(dir)) || '{}') as { applications: { threshold: number; missing: number }[] };
    t.match(json.applications[0], { threshold: 25, missing: s.missing });
  });

  t.test(`${s.name}: the metrics threshold and the admin page`, async (t) => {
    const now = Date.now();
    const dir = prepared(t, s, now);
    const inventory = Inventory.open(dir, { names });
    t.teardown(() => inventory.close());
    const db = inventory['db'];
    const facts = buildCountFacts(db, inventory, now, policy);
    const metrics = createApplianceMetrics(
      {
        kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
        store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true }),
        counts: () => facts,
      },
      { processMetrics: false },
    );
    const body = (await metrics.scrape()).body;
    t.match(body, /kms_appliance_application_threshold\{application="Windows"\} 25\n/);

    const snapshot = snapshotOf(buildInventoryView(db, inventory, now, [], policy), dir, now);
    const html = renderAdminPage({ snapshot, machines: { rows: [] }, query: { q: '', sort: 'name', limit: 50 }, session: false });
    const card = /<section class="card app"><h3>Windows<\/h3>(.*?)<\/section>/s.exec(html)?.[1] ?? '';
    t.match(card, new RegExp(`${s.active}</span> / 25 machines`), 'the bar is against the catalogue threshold');
    if (s.missing > 0) t.match(card, new RegExp(`${s.missing} more machines`));
    else t.match(card, /Clients activate \(they need 25\)/);
    t.match(card.replace(/<[^>]+>/g, ''), s.odd, 'the odd request is named on the card');
    if (s.active > 50) t.match(card, /Clients are told 61, not 50/, 'the lifted cap is explained');
  });
}

function snapshotOf(inventory: InventoryView, dir: string, now: number): AdminSnapshot {
  return {
    generatedAt: new Date(now).toISOString(),
    version: 'test',
    databaseFile: dir,
    catalog: 'built-in',
    kmsListen: [],
    dnsListen: [],
    health: { ok: true, problems: [] },
    inventory,
  };
}

async function runJson(dir: string): Promise<string> {
  const c = captureIo();
  await statusCommand.run(['--json', '--data-dir', dir], c.io);
  return c.stdout();
}

t.test('an odd RequiredClientCount is served as PROTOCOL.md §7.2 says and logged once per group and value', async (t) => {
  const h = makeHost();
  const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
  const hook = unusualThresholdLogger({ warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }) });
  Object.assign(h.deps, { onUnusualThreshold: hook });
  for (let i = 1; i <= 60; i++) h.request({ clientMachineId: cmid(i) });
  t.same(warnings, [], 'what the catalogue says Windows 10/11 clients send is not odd');
  // Forged high: the wire cap follows the largest threshold seen (2 × 1000), as the spec prescribes.
  t.equal(h.request({ clientMachineId: cmid(61), requiredClientCount: 1000 }).verified?.base.currentCount, 61);
  t.equal(h.request({ clientMachineId: cmid(61), requiredClientCount: 1000 }).verified?.base.currentCount, 61);
  // Forged low: 0 is read as 1 (§7.1 step 4, U8), and 1 and 0 are the same odd value.
  h.request({ clientMachineId: cmid(62), requiredClientCount: 1 });
  h.request({ clientMachineId: cmid(63), requiredClientCount: 0 });
  t.equal(warnings.length, 2, 'one line per group and value, not per request');
  t.match(warnings[0], { obj: { requiredClientCount: 1000, usual: 25, cmid: cmid(61) }, msg: /asked for 1000 machines .* ask for 25/ });
  t.match(warnings[1], { obj: { requiredClientCount: 1, usual: 25 }, msg: /asked for 1 machine for / });
});

t.test('a client cycling through every threshold cannot flood the log', async (t) => {
  const h = makeHost();
  const warnings: string[] = [];
  Object.assign(h.deps, { onUnusualThreshold: unusualThresholdLogger({ warn: (_obj, msg) => warnings.push(msg) }, 8) });
  for (let r = 1; r <= 40; r++) h.request({ clientMachineId: cmid(r), requiredClientCount: r });
  t.equal(warnings.length, 9, 'eight values, then one line saying the rest are not logged');
  t.match(warnings[8], /further ones are not/);
});

t.test('host clock set a year ahead, then corrected: machines seen meanwhile count 30 days from the correction', async (t) => {
  const dir = tempDataDir(t);
  const T0 = Date.UTC(2026, 10, 20, 12, 0, 0);
  const AHEAD = T0 + 365 * DAY;
  let now = AHEAD;
  const clock = { now: () => now };
  const log = recordingLog();
  let store = SqliteStore.open(dir, { clock, log });
  // Five machines ask while the clock is a year ahead; one forged threshold lifts the cap then.
  for (let i = 1; i <= 5; i++) store.recordActivation(obs(i, { requiredClientCount: i === 5 ? 1000 : 25 }), now, WINDOW);
  store.close();
  now = T0; // NTP (or the administrator) corrects the clock; the service restarts
  store = SqliteStore.open(dir, { clock, log });
  t.teardown(() => store.close());
  t.notOk(
    log.lines.find((l) => l.level === 'warn' && /ahead/.test(l.msg)),
    'nothing is moved at start: the clock may not be set yet (a box without a real-time clock, NTP not yet synced)',
  );
  store.prune(); // the next prune: hourly, or after store.maxEvents/20 requests
  const warned = log.lines.find((l) => l.level === 'warn' && /ahead/.test(l.msg));
  t.match(warned, { obj: { machines: 5 } }, 'the correction is logged, naming how many machines it moved');
  for (let i = 6; i <= 7; i++) store.recordActivation(obs(i), T0 + 10 * DAY, WINDOW);
  // 35 days after the correction: the five are 35 days old, machines 6 and 7 25 days.
  const later = T0 + 35 * DAY;
  const served = store.recordActivation(obs(8), later, WINDOW);
  t.equal(served.activeClients, 3, 'the in-memory count: 6, 7 and 8');
  t.equal(served.maxRequiredClientCount, 25, 'the forged threshold of the wrong year left the window with its request');
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => inventory.close());
  const w = windowsOf(inventory.summary(later, policy));
  t.equal(w.activeMachines, served.activeClients, 'the SQL count agrees with the in-memory one');
  t.equal(w.largestRequested, 25);
  t.match(inventory.clockCorrection(), { correctedAtMs: T0, aheadUntilMs: AHEAD, machines: 5 }, 'status can name it');
});

t.test('a clock that reads before this version existed (no real-time clock, no NTP yet) is wrong now: nothing is moved', async (t) => {
  const dir = tempDataDir(t);
  const T0 = Date.UTC(2026, 11, 4, 12, 0, 0);
  let now = T0;
  const log = recordingLog();
  const store = SqliteStore.open(dir, { clock: { now: () => now }, log });
  t.teardown(() => store.close());
  for (let i = 1; i <= 3; i++) store.recordActivation(obs(i), T0, WINDOW);
  now = 0; // the box restarted without its clock: 1970 until NTP answers
  store.prune();
  store.prune();
  t.equal(log.lines.filter((l) => /before this version of kms-appliance was made/.test(l.msg)).length, 1, 'said once');
  now = T0 + DAY; // NTP set it
  store.prune();
  t.equal(store.recordActivation(obs(4), now, WINDOW).activeClients, 4, 'the three machines still count, with the fourth');
});

t.test('a clock corrected while the server runs is caught by the periodic prune; a few hours ahead is left alone', async (t) => {
  const dir = tempDataDir(t);
  const T0 = Date.UTC(2026, 10, 20, 12, 0, 0);
  let now = T0 + 90 * DAY;
  const store = SqliteStore.open(dir, { clock: { now: () => now }, log: recordingLog() });
  t.teardown(() => store.close());
  store.recordActivation(obs(1, { requiredClientCount: 1000 }), now, WINDOW);
  now = T0;
  store.recordActivation(obs(2), T0 + 20 * 3600_000, WINDOW); // 20 h ahead: an ordinary clock step
  store.prune(T0);
  const later = T0 + 30 * DAY + 10 * 3600_000;
  const snap = store.recordActivation(obs(3), later, WINDOW);
  t.equal(snap.activeClients, 2, 'machines 2 and 3');
  t.equal(snap.maxRequiredClientCount, 25, 'the threshold served while the clock was ahead left with it');
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => inventory.close());
  t.match(windowsOf(inventory.summary(later, policy)), { activeMachines: 2, largestRequested: 25 }, 'the file agrees');
});

t.test('a refused request asking for 1000 machines moves no admin figure', async (t) => {
  const now = Date.now();
  const dir = prepared(t, SCENARIOS[0]!, now);
  const store = SqliteStore.open(dir, { clock: { now: () => now } });
  store.recordRefusal(obs(50, { requiredClientCount: 1000 }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
  store.recordRefusal(obs(1, { requiredClientCount: 1000 }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now);
  store.close();
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => inventory.close());
  t.match(windowsOf(inventory.summary(now, policy)), { activeMachines: 3, largestRequested: 1, threshold: 25, missing: 22 });
});

t.test('kms-appliance status names a clock correction for the 30 days it matters', async (t) => {
  const dir = tempDataDir(t);
  const real = Date.now();
  let now = real + 200 * DAY;
  const clock = { now: () => now };
  const store = SqliteStore.open(dir, { clock, log: recordingLog() });
  store.recordActivation(obs(1), now, WINDOW);
  now = real;
  store.prune();
  store.close();
  const c = captureIo();
  t.equal(await statusCommand.run(['--data-dir', dir], c.io), 0);
  t.match(c.stdout(), /Host clock: it had been set ahead .* the 1 machine seen meanwhile counts as seen then/);
  t.match(c.stdout(), /Windows: 1 machine in the last 30 days/);
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => inventory.close());
  const html = renderAdminPage({
    snapshot: snapshotOf(buildInventoryView(inventory['db'], inventory, real, [], policy), dir, real),
    machines: { rows: [] },
    query: { q: '', sort: 'name', limit: 50 },
    session: false,
  });
  t.match(html, /<p class="warn" id="clock">Host clock: it had been set ahead/, 'the admin page names it too');
  const aMonthOn = buildInventoryView(inventory['db'], inventory, real + 31 * DAY, [], policy);
  t.equal(aMonthOn.clock, undefined, 'and stops once the machines it moved have left the window');
});

t.test('at the machine cap, a re-imaged machine naming its stored previous CMID takes over its row', async (t) => {
  const now = Date.now() - DAY;
  const store = SqliteStore.open(tempDataDir(t), { log: recordingLog(), maxMachines: 20 });
  t.teardown(() => store.close());
  for (let n = 1; n <= 25; n++) store.recordActivation(obs(n), now + n, WINDOW);
  store.prune(now + 100);
  t.equal(store.stats().machineCapReached, true, 'every stored machine is counted: the cap holds');
  const rowsNow = (): number => connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
  const before = rowsNow();

  // PROTOCOL.md §7.2: the re-imaged machine replaces its old entry, so the table does not grow.
  const reimaged = obs(1000, { previousClientMachineId: storeCmid(3), workstationName: 'pc-3.branch.example' });
  t.equal(store.acceptsActivation(reimaged), true, 'served: it adds no row');
  const snap = store.recordActivation(reimaged, now + 200, WINDOW);
  t.equal(snap.activeClients, 25, 'counted once, in place of its old id');
  t.equal(rowsNow(), before, 'no row added');
  t.notOk(connectionOf(store).prepare('SELECT 1 FROM clients WHERE cmid = ?').get(storeCmid(3)), 'the old id is gone');

  // A machine naming an unknown previous id, or itself, is still a new machine.
  t.equal(store.acceptsActivation(obs(1001, { previousClientMachineId: storeCmid(9999) })), false, 'unknown previous: refused');
  t.equal(store.acceptsActivation(obs(1002, { previousClientMachineId: storeCmid(1002) })), false, 'itself as previous: refused');
  t.equal(store.refusalCode(), 'KMS_ERR_STORE_MACHINE_CAP');
});

t.test('a client asking for every threshold from 1 to 60 leaves a bounded summary and five lines', async (t) => {
  const now = Date.now();
  const dir = prepared(
    t,
    { name: 'cycle', requests: Array.from({ length: 60 }, (_, i) => [i + 1, i + 1] as const), active: 60, missing: 0, odd: /x/ },
    now,
  );
  const inventory = Inventory.open(dir, { names });
  t.teardown(() => inventory.close());
  const w = windowsOf(inventory.summary(now, policy));
  t.match(w, { threshold: 25, activates: true, unusualRequestKinds: 59 }, '25 is what the group asks: not odd');
  t.equal(w.unusualRequests.length, 20, 'the largest 20 kept');
  t.equal(w.unusualRequests[0]?.requiredCount, 60);
  const notes = thresholdNotes(w);
  t.equal(notes.filter((n) => /^A request asked/.test(n)).length, 5);
  t.match(notes, [/./, /./, /./, /./, /./, /^54 more odd thresholds/]);
});
