// The Prometheus metrics of one appliance (prom-client, own registry, names kms_appliance_*).
// Per-request figures are counters incremented by the activation outcome hook; everything else
// is read at scrape time from the cheap getters in sources.ts, never from the database.
import { Counter, Gauge, Registry } from 'prom-client';
import { formatHresult } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import type { MetricSources } from './sources';

const METRIC_PREFIX = 'kms_appliance_';
/** Distinct application labels kept; more (forged application ids) are counted as "other". */
const MAX_APPLICATION_LABELS = 32;

export interface ApplianceMetrics {
  readonly registry: Registry;
  /** Called once per KMS request outcome (served or refused). */
  recordOutcome(o: ActivationOutcome): void;
  recordLoginFailure(): void;
  /** The text exposition and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

export function createApplianceMetrics(
  sources: MetricSources,
  options: { knownApplication?: (id: string) => string | undefined; processMetrics?: boolean } = {},
): ApplianceMetrics {
  const registry = new Registry();
  const p = METRIC_PREFIX;
  if (options.processMetrics !== false) collectProcessMetrics(registry, p);

  // The per-request counters are plain integers per label set, handed to prom-client when it
  // collects: its inc() builds and hashes a label string on every call (measured in
  // bench/outcome-cost.ts). Label sets keep the order they were first seen, as prom-client's do.
  const activationCounts = new Map<string, LabelledCount>();
  /** The same counts by application label, then by result and version (recordOutcome's shortcut). */
  const activationSlots = new Map<string, (LabelledCount | undefined)[]>();
  const refusalCounts = new Map<string, LabelledCount>();
  new Counter({
    name: `${p}activations_total`,
    help: 'KMS activation requests answered, by application, result (served or refused) and protocol version.',
    labelNames: ['application', 'result', 'protocol'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of activationCounts.values()) this.inc(c.labels, c.n);
    },
  });
  new Counter({
    name: `${p}refusals_total`,
    help: 'Refused KMS requests by the HRESULT the client shows and the registered error code.',
    labelNames: ['hresult', 'code'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of refusalCounts.values()) this.inc(c.labels, c.n);
    },
  });
  const loginFailures = new Counter({
    name: `${p}admin_login_failures_total`,
    help: 'Failed admin logins (wrong user or password).',
    registers: [registry],
  });

  new Gauge({
    name: `${p}application_count`,
    help: 'Distinct machines counted in the last 30 days per application (refreshed about every minute).',
    labelNames: ['application'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const a of sources.counts()?.applications ?? []) this.set({ application: a.name }, a.count);
    },
  });
  new Gauge({
    name: `${p}application_threshold`,
    help:
      "Machines each application's counted products need to activate (the catalogue's threshold; a client asking " +
      'for another RequiredClientCount does not move it).',
    labelNames: ['application'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const a of sources.counts()?.applications ?? []) this.set({ application: a.name }, a.threshold);
    },
  });
  new Gauge({
    name: `${p}distinct_machines`,
    help: 'Distinct machines (CMIDs) counted in the last 30 days, whatever they activated.',
    registers: [registry],
    collect() {
      const c = sources.counts();
      // Before the first refresh there is no figure: say nothing rather than a false 0.
      if (c) this.set(c.distinctMachines);
      else this.reset();
    },
  });
  new Gauge({
    name: `${p}store_pending_writes`,
    help: 'Machines whose answered activations are not yet written to the database file.',
    registers: [registry],
    collect() {
      this.set(sources.store().pendingWrites);
    },
  });
  new Gauge({
    name: `${p}store_pending_events`,
    help: 'Request event-log rows not yet written to the database file.',
    registers: [registry],
    collect() {
      this.set(sources.store().pendingEvents ?? 0);
    },
  });
  new Gauge({
    name: `${p}store_machine_cap_reached`,
    help:
      'Whether store.maxMachines machines are stored, every one counted in the last 30 days (1): machines the host has ' +
      'not seen before are refused (0xC004D104) until some leave the window or the cap is raised.',
    registers: [registry],
    collect() {
      this.set(sources.store().machineCapReached === true ? 1 : 0);
    },
  });
  new Gauge({
    name: `${p}store_journal_in_use`,
    help:
      'Whether answered requests are made durable by the request journal (1) or by a database commit each ' +
      '(0: the journal could not be used, see the log).',
    registers: [registry],
    collect() {
      this.set(sources.store().journalInUse === true ? 1 : 0);
    },
  });
  new Counter({
    name: `${p}store_sync_failures_total`,
    help: 'fsyncs of the database or its -wal file that failed: the disk did not confirm what was written (see the log).',
    registers: [registry],
    collect() {
      setCounter(this, sources.store().syncFailures ?? 0);
    },
  });
  new Counter({
    name: `${p}store_write_failures_total`,
    help: 'Failed writes to the database file (full disk, read-only file system).',
    registers: [registry],
    collect() {
      setCounter(this, sources.store().writeFailures);
    },
  });
  new Gauge({
    name: `${p}kms_connections_open`,
    help: 'Open KMS client connections.',
    registers: [registry],
    collect() {
      this.set(sources.kms().open);
    },
  });
  new Counter({
    name: `${p}kms_connections_refused_total`,
    help: 'KMS connections refused or closed by the host, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(sources.kms().refusedByReason)) if (n > 0) this.inc({ reason }, n);
    },
  });
  if (sources.dns) {
    const dns = sources.dns.bind(sources);
    new Counter({
      name: `${p}dns_responses_total`,
      help: 'DNS responses sent, by RCODE.',
      labelNames: ['rcode'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [rcode, n] of Object.entries(dns().responsesByRcode)) if (n > 0) this.inc({ rcode }, n);
      },
    });
    new Counter({
      name: `${p}dns_rate_limited_total`,
      help: 'DNS queries not answered because their source exceeded dns.rateLimit.',
      registers: [registry],
      collect() {
        setCounter(this, dns().rateLimited);
      },
    });
    new Counter({
      name: `${p}dns_rate_limited_truncated_total`,
      help: 'Of those, UDP queries answered with an empty truncated reply (dns.rateLimit.slip), so the client asks over TCP.',
      registers: [registry],
      collect() {
        setCounter(this, dns().slipped);
      },
    });
    new Counter({
      name: `${p}dns_refused_total`,
      help: 'DNS queries answered REFUSED (not our zone, forwarding not allowed).',
      registers: [registry],
      collect() {
        setCounter(this, dns().refused);
      },
    });
  }
  if (sources.registration) {
    const reg = sources.registration.bind(sources);
    new Gauge({
      name: `${p}dns_registration_last_success_timestamp_seconds`,
      help: 'When the SRV record was last registered in the site DNS (Unix time; 0 = never).',
      registers: [registry],
      collect() {
        const last = reg().lastSuccessMs;
        this.set(last === null ? 0 : last / 1000);
      },
    });
    new Counter({
      name: `${p}dns_registration_failures_total`,
      help: 'Failed registration attempts (RFC 2136 UPDATE refused, TSIG, network).',
      registers: [registry],
      collect() {
        setCounter(this, reg().failures);
      },
    });
  }

  const applicationLabel = (o: ActivationOutcome): string => {
    const name = o.applicationId ? (options.knownApplication ? options.knownApplication(o.applicationId) : o.applicationName) : undefined;
    if (!name) return 'unknown';
    if (seenApplications.has(name)) return name;
    if (seenApplications.size >= MAX_APPLICATION_LABELS) return 'other';
    seenApplications.add(name);
    return name;
  };
  const seenApplications = new Set<string>();

  return {
    registry,
    recordOutcome(o) {
      const served = o.result !== 'refused';
      const application = applicationLabel(o);
      // The label set's count found without building its key: by application, then by result and
      // version (a request's only per-call string and hash were these).
      const version = o.protocolVersion;
      const slot = (served ? 0 : SLOTS_PER_RESULT) + (version === undefined ? 0 : version);
      let slots = activationSlots.get(application);
      if (slots === undefined) {
        slots = [];
        activationSlots.set(application, slots);
      }
      const known = version === undefined || (Number.isInteger(version) && version > 0 && version < SLOTS_PER_RESULT);
      const counted = known ? slots[slot] : undefined;
      if (counted !== undefined) {
        counted.n++;
      } else {
        const result = served ? 'served' : 'refused';
        const protocol = version === undefined ? 'unknown' : `${version}`;
        const c = count(activationCounts, `${application}\n${result}\n${protocol}`, () => ({ application, result, protocol }));
        if (known) slots[slot] = c;
      }
      if (!served) {
        const code = o.code ?? 'unknown';
        count(refusalCounts, `${o.hresult}\n${code}`, () => ({ hresult: formatHresult(o.hresult), code }));
      }
    },
    recordLoginFailure() {
      loginFailures.inc();
    },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

interface LabelledCount {
  readonly labels: Record<string, string>;
  n: number;
}

/** One more for a label set, keyed by its values joined with a character no label value holds. */
function count(counts: Map<string, LabelledCount>, key: string, labels: () => Record<string, string>): LabelledCount {
  let c = counts.get(key);
  if (c !== undefined) c.n++;
  else counts.set(key, (c = { labels: labels(), n: 1 }));
  return c;
}

/** Protocol versions 1…15 each have a slot (0 = unknown); refusals' slots follow the served ones. */
const SLOTS_PER_RESULT = 16;

/** A counter that mirrors a monotonic total kept elsewhere. */
function setCounter(c: Counter, total: number): void {
  c.reset();
  if (total > 0) c.inc(total);
}

/**
 * prom-client's default metrics (collectDefaultMetrics) without its GC histogram. That one makes
 * Node 20 build a PerformanceEntry (with deprecated accessors made per entry) and run an
 * observer callback for every garbage collection: 40% of what the young-generation collections
 * themselves cost the server, about 0.7 µs per keep-alive activation (issue 14). Event-loop lag
 * and the heap figures still show what a long collection does. The modules are prom-client's
 * own collectors, called as collectDefaultMetrics calls them (test/metrics keeps the list equal
 * to prom-client's defaults minus the GC histogram).
 */
const PROCESS_COLLECTORS = [
  'processCpuTotal',
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
] as const;

type Collector = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

function collectProcessMetrics(registry: Registry, prefix: string): void {
  for (const name of PROCESS_COLLECTORS) {
    // CommonJS modules of prom-client's, without an export of their own.
    const collect = require(`prom-client/lib/metrics/${name}`) as Collector;
    collect(registry, { prefix, eventLoopMonitoringPrecision: 10 });
  }
}
