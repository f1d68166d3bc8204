// /healthz and the page banner: healthy only when KMS accepts, the database is writable with
// nothing pending, and registration (when on) succeeded within its interval; each problem in words.
import t from 'tap';
import { checkHealth } from '../../src/admin/health';
import { AdminRouter } from '../../src/admin/router';
import { HostCheck } from '../../src/admin/host-check';
import { LoginGuard } from '../../src/admin/login';
import type { MetricSources, RegistrationFacts, StoreFacts } from '../../src/metrics/sources';
import { activate } from '../../src/client/kms-client';
import { connectionOf } from '../../src/store/testing';
import { product, startHarness } from '../server/appliance-harness';

const NOW = Date.parse('2026-12-04T12:00:00Z');
const kmsUp = () => ({ listening: true, open: 0, refusedByReason: {} });
const storeOk = (): StoreFacts => ({ pendingWrites: 0, writeFailures: 0, writable: true });

function sources(
  o: { kms?: boolean; store?: StoreFacts; registration?: RegistrationFacts } = {},
): Pick<MetricSources, 'kms' | 'store' | 'registration'> {
  return {
    kms: () => ({ ...kmsUp(), listening: o.kms ?? true }),
    store: () => o.store ?? storeOk(),
    ...(o.registration ? { registration: () => o.registration! } : {}),
  };
}

t.test('healthy only when everything holds', async (t) => {
  t.same(checkHealth(sources(), NOW), { ok: true, problems: [] });
  const reg = (lastSuccessMs: number | null, lastError = ''): RegistrationFacts => ({
    lastSuccessMs,
    failures: 1,
    refreshMs: 3_600_000,
    lastError,
  });
  t.ok(checkHealth(sources({ registration: reg(NOW - 3_600_000) }), NOW).ok, 'registered within the interval');
  const late = checkHealth(sources({ registration: reg(NOW - 2 * 3_600_000, 'REFUSED by 192.0.2.53') }), NOW);
  t.notOk(late.ok);
  t.match(late.problems[0], /DNS registration of _vlmcs\._tcp last succeeded 2026-12-04T10:00:00\.000Z \(REFUSED by 192\.0\.2\.53\)/);
  t.match(checkHealth(sources({ registration: reg(null) }), NOW).problems[0], /has not succeeded since start/);
  const starting = checkHealth(sources({ registration: { ...reg(null), failures: 0 } }), NOW);
  t.same(starting, { ok: true, problems: [] }, 'the first round still running is not a failure');
  t.match(checkHealth(sources({ kms: false }), NOW).problems[0], /KMS listener is not accepting/);
  const full = checkHealth(sources({ store: { pendingWrites: 12, writeFailures: 3, writable: false } }), NOW);
  t.equal(full.problems.length, 2);
  t.match(full.problems.join(' '), /cannot be written.*12 machines' answered activations are not yet written/);
  const capped = checkHealth(sources({ store: { ...storeOk(), machineCapReached: true } }), NOW);
  t.equal(capped.ok, false);
  t.match(capped.problems, [/store\.maxMachines machines are stored.*refused \(0xC004D104\)\. Raise store\.maxMachines/]);
  const unsynced = checkHealth(
    sources({ store: { ...storeOk(), syncFailures: 2, lastSyncError: 'EIO on /var/lib/k/kms-appliance.db' } }),
    NOW,
  );
  t.same(
    unsynced.problems,
    [
      'The disk did not confirm what was written (fsync failed: EIO on /var/lib/k/kms-appliance.db): a power cut could lose ' +
        'recent activations. Check the disk (dmesg, SMART) and free space.',
    ],
    'a failing fsync is a problem while no fsync has succeeded since',
  );
  t.ok(checkHealth(sources({ store: { ...storeOk(), syncFailures: 2, lastSyncError: '' } }), NOW).ok, 'and none once one has');
});

t.test('fleet reporting that stopped working makes the box unhealthy, in its own words', async (t) => {
  const base = sources();
  t.ok(checkHealth({ ...base, fleet: () => ({ problems: [] }) }, NOW).ok, 'reporting works: healthy');
  const failing = checkHealth(
    { ...base, fleet: () => ({ problems: ['fleet reporting to db.example:5432 fails since 2026-12-04T11:00:00.000Z: timeout'] }) },
    NOW,
  );
  t.notOk(failing.ok);
  t.same(failing.problems, ['Fleet reporting to db.example:5432 fails since 2026-12-04T11:00:00.000Z: timeout.']);
});

t.test('/healthz answers 503 with the list, without login and without inventory', async (t) => {
  const log = { warn() {}, info() {}, error() {} };
  let store = storeOk();
  const router = new AdminRouter({
    hostCheck: new HostCheck(['localhost']),
    login: new LoginGuard(() => ({ user: 'admin', scheme: 'scrypt', N: 2, r: 1, p: 1, salt: '', hash: 'AAAA' }), log),
    health: () => checkHealth({ kms: kmsUp, store: () => store }, NOW),
    snapshot: () => Promise.reject(new Error('not used')),
    machines: () => Promise.reject(new Error('not used')),
    metrics: () => Promise.reject(new Error('not used')),
    log,
  });
  const req = {
    method: 'GET',
    url: '/healthz',
    headers: { host: 'localhost' },
    remoteAddress: '127.0.0.1',
    localAddress: '127.0.0.1',
    tls: true,
  };
  const ok = await router.handle(req);
  t.equal(ok.status, 200);
  t.equal(ok.body, 'ok\n');
  t.equal(ok.headers['strict-transport-security'], 'max-age=31536000', 'HSTS over TLS');
  store = { pendingWrites: 1, writeFailures: 1, writable: false };
  const bad = await router.handle(req);
  t.equal(bad.status, 503);
  t.same(JSON.parse(bad.body).problems.length, 2);
  t.equal((await router.handle({ ...req, headers: { host: 'evil.example' } })).status, 421, 'the Host check comes first');
});

t.test('a real full disk: /healthz says so and why, the metrics show what waits, and both recover', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  const get = (url: string) =>
    h.appliance.admin!.router.handle({
      method: 'GET',
      url,
      headers: { host: 'localhost' },
      remoteAddress: '127.0.0.1',
      localAddress: '127.0.0.1',
      tls: false,
    });
  t.equal((await get('/healthz')).status, 200);
  const db = connectionOf(h.appliance.store);
  const pages = db.pragma('page_count', { simple: true }) as number;
  db.pragma(`max_page_count = ${pages}`);
  // Free space inside the file absorbs some writes before one needs a new page (bounded loop).
  for (let i = 0; i < 2000 && !h.appliance.store.hasPendingWrites; i++) {
    await activate({ host: h.host, port: h.port, product: product('Windows Server 2022 Standard'), workstation: `srv-${i}` });
  }
  t.ok(h.appliance.store.hasPendingWrites, 'the disk is full');
  const sick = await get('/healthz');
  t.equal(sick.status, 503);
  const problems = (JSON.parse(sick.body) as { problems: string[] }).problems.join(' ');
  t.match(problems, /The database cannot be written \(SQLITE_FULL/);
  t.match(problems, /answered activations? (is|are) not yet written/);
  const m = (await get('/metrics')).body;
  t.match(m, /^kms_appliance_store_pending_writes [1-9]\d*$/m);
  t.match(m, /^kms_appliance_store_write_failures_total [1-9]\d*$/m);
  db.pragma('max_page_count = 1073741823');
  h.appliance.store.flushPending();
  t.equal((await get('/healthz')).status, 200, 'healthy again once everything is written');
});
