// The per-request counters: exact per label set, the same on every scrape (they are read, not
// moved, at collect time), label sets in the order first seen, and forged applications capped.
import t from 'tap';
import type { ActivationOutcome } from '../../src/host/outcome';
import { createApplianceMetrics } from '../../src/metrics/appliance-metrics';
import { UNKNOWN_GUID, WINDOWS_APP } from '../ids';

function metrics(journalInUse?: boolean) {
  return createApplianceMetrics(
    {
      kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
      store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true, ...(journalInUse === undefined ? {} : { journalInUse }) }),
      counts: () => undefined,
    },
    { processMetrics: false },
  );
}

const SERVED: ActivationOutcome = {
  result: 'activated',
  hresult: 0,
  clientAddress: '192.0.2.1',
  protocolVersion: 6,
  applicationId: WINDOWS_APP,
  applicationName: 'Windows',
};

function samples(body: string, name: string): string[] {
  return body.split('\n').filter((l) => l.startsWith(`kms_appliance_${name}{`));
}

t.test('activations and refusals are counted per label set, the same on every scrape', async (t) => {
  const m = metrics();
  for (let i = 0; i < 5; i++) m.recordOutcome(SERVED);
  m.recordOutcome({ ...SERVED, result: 'below-threshold', protocolVersion: 4 });
  m.recordOutcome({ result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '192.0.2.1' });
  m.recordOutcome({ ...SERVED, result: 'refused', hresult: 0xc004f042, code: 'KMS_ERR_KMS_RETAIL_GROUP' });
  m.recordOutcome({ ...SERVED, result: 'refused', hresult: 0xc004f042, code: 'KMS_ERR_KMS_RETAIL_GROUP' });
  m.recordOutcome({ ...SERVED, result: 'refused', hresult: 0xc004f042 });
  const expected = {
    activations: [
      'kms_appliance_activations_total{application="Windows",result="served",protocol="6"} 5',
      'kms_appliance_activations_total{application="Windows",result="served",protocol="4"} 1',
      'kms_appliance_activations_total{application="unknown",result="refused",protocol="unknown"} 1',
      'kms_appliance_activations_total{application="Windows",result="refused",protocol="6"} 3',
    ],
    refusals: [
      'kms_appliance_refusals_total{hresult="0x8007000D",code="KMS_ERR_KMS_VERSION"} 1',
      'kms_appliance_refusals_total{hresult="0xC004F042",code="KMS_ERR_KMS_RETAIL_GROUP"} 2',
      'kms_appliance_refusals_total{hresult="0xC004F042",code="unknown"} 1',
    ],
  };
  for (const scrape of [1, 2]) {
    const { body } = await m.scrape();
    t.same(samples(body, 'activations_total'), expected.activations, `scrape ${scrape}`);
    t.same(samples(body, 'refusals_total'), expected.refusals, `scrape ${scrape}`);
    t.match(body, /# TYPE kms_appliance_activations_total counter/);
  }
  m.recordOutcome(SERVED);
  const { body } = await m.scrape();
  t.equal(samples(body, 'activations_total')[0], 'kms_appliance_activations_total{application="Windows",result="served",protocol="6"} 6');
});

t.test('before any request the counters have no samples', async (t) => {
  const { body } = await metrics().scrape();
  t.same(samples(body, 'activations_total'), []);
  t.match(body, /# HELP kms_appliance_activations_total /);
});

t.test('forged application names beyond the cap count as "other"', async (t) => {
  const m = metrics();
  for (let i = 0; i < 40; i++) m.recordOutcome({ ...SERVED, applicationId: UNKNOWN_GUID, applicationName: `forged ${i}` });
  const lines = samples((await m.scrape()).body, 'activations_total');
  t.equal(lines.length, 33, '32 names and "other"');
  t.equal(lines.at(-1), 'kms_appliance_activations_total{application="other",result="served",protocol="6"} 8');
});

t.test('whether the request journal is in use is a gauge', async (t) => {
  const line = async (inUse: boolean) =>
    (await metrics(inUse).scrape()).body.split('\n').find((l) => l.startsWith('kms_appliance_store_journal_in_use'));
  t.equal(await line(true), 'kms_appliance_store_journal_in_use 1');
  t.equal(await line(false), 'kms_appliance_store_journal_in_use 0');
});

t.test('the machine cap is a gauge read from the store', async (t) => {
  let reached: boolean | undefined;
  const m = createApplianceMetrics(
    {
      kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
      store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true, machineCapReached: reached }),
      counts: () => undefined,
    },
    { processMetrics: false },
  );
  const line = async () => (await m.scrape()).body.split('\n').find((l) => l.startsWith('kms_appliance_store_machine_cap_reached'));
  t.equal(await line(), 'kms_appliance_store_machine_cap_reached 0', 'absent: 0');
  reached = true;
  t.equal(await line(), 'kms_appliance_store_machine_cap_reached 1');
});

t.test('failed fsyncs are a counter read from the store', async (t) => {
  let failures = 0;
  const m = createApplianceMetrics(
    {
      kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
      store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true, syncFailures: failures }),
      counts: () => undefined,
    },
    { processMetrics: false },
  );
  const line = async () => (await m.scrape()).body.split('\n').find((l) => l.startsWith('kms_appliance_store_sync_failures_total'));
  t.equal(await line(), 'kms_appliance_store_sync_failures_total 0');
  failures = 3;
  t.equal(await line(), 'kms_appliance_store_sync_failures_total 3');
});

t.test("the process metrics are prom-client's defaults without the GC histogram, and no GC observer is left running", async (t) => {
  const { PerformanceObserver } = await import('node:perf_hooks');
  const observed: string[][] = [];
  const observe = PerformanceObserver.prototype.observe;
  // Every observer made while the metrics are built, by the entry types it asks for.
  PerformanceObserver.prototype.observe = function (this: InstanceType<typeof PerformanceObserver>, options) {
    const asked = options as { entryTypes?: readonly string[]; type?: string };
    observed.push([...(asked.entryTypes ?? []), ...(asked.type ? [asked.type] : [])]);
    return observe.call(this, options);
  };
  let ours: string[];
  try {
    const m = createApplianceMetrics({
      kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
      store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true }),
      counts: () => undefined,
    });
    ours = (await m.registry.getMetricsAsJSON()).map((x) => x.name).filter((n) => /^kms_appliance_(process|nodejs)_/.test(n));
  } finally {
    PerformanceObserver.prototype.observe = observe;
  }
  t.notOk(observed.flat().includes('gc'), 'no observer of garbage collections');
  const { collectDefaultMetrics, Registry } = await import('prom-client');
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults, prefix: 'kms_appliance_' });
  const theirs = (await defaults.getMetricsAsJSON()).map((x) => x.name);
  t.same(ours.sort(), theirs.filter((n) => n !== 'kms_appliance_nodejs_gc_duration_seconds').sort());
  t.ok(ours.includes('kms_appliance_process_resident_memory_bytes') && ours.includes('kms_appliance_nodejs_eventloop_lag_p99_seconds'));
});
