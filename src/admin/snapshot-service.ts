// The admin side of the snapshot worker: starts it on first use, keeps the latest status for a
// few seconds (any number of open pages and pollers cost one computation per interval), and
// bounds what may wait for it. The KMS event loop only posts a message and receives a small one.
import { Worker } from 'node:worker_threads';
import type { Entitlement } from '../store/compliance';
import type { CountFacts } from '../metrics/sources';
import type { InventoryView } from './snapshot';
import type { MachinePage, MachineQuery } from './inventory-reads';
import type { SnapshotWorkerData, WorkerRequest, WorkerResponse, WorkerValue } from './snapshot-protocol';

/** A status at most this old is served from memory. */
const STATUS_TTL_MS = 10_000;
/** Counts for /metrics are refreshed in the background when older than this. */
const COUNTS_TTL_MS = 60_000;
/** Requests waiting for the worker beyond this are answered "busy" at once. */
const MAX_QUEUED = 16;
const REQUEST_TIMEOUT_MS = 60_000;

// Plain CommonJS evaluated in the worker. Under the test runner the sources are TypeScript, which
// the worker (no loader hooks of its own) transpiles with the compiler the tests already use.
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
if (workerData.entry.endsWith('.ts')) {
  const fs = require('node:fs');
  const ts = require(require.resolve('typescript', { paths: [workerData.entry] }));
  require.extensions['.ts'] = (module, filename) => {
    const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true },
    });
    module._compile(out.outputText, filename);
  };
}
require(workerData.entry).runSnapshotWorker();
`;

export class AdminBusyError extends Error {
  constructor(message = 'the admin page is busy; try again in a moment') {
    super(message);
  }
}

/** How long a page or API request waits for a status still being computed before answering 503. */
export const STATUS_WAIT_MS = 30_000;

/** `promise`, or AdminBusyError once `ms` passed (the work itself goes on). */
export function waitAtMost<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AdminBusyError(message)), ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export interface SnapshotLog {
  warn(obj: object, msg?: string): void;
}

export class SnapshotService {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: WorkerValue) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private status: { at: number; value: Promise<InventoryView> } | undefined;
  private lastGood: InventoryView | undefined;
  private refreshing: Promise<InventoryView> | undefined;
  private counts: CountFacts | undefined;
  private countsRequested = -Infinity;
  private closed = false;

  constructor(
    private readonly data: SnapshotWorkerData,
    private readonly log: SnapshotLog,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The status: computed at most once per STATUS_TTL_MS, concurrent callers sharing one
   * computation. Once one exists, an older one is answered at once while the next is computed
   * (with a million clients a computation takes seconds; nobody should wait for it twice).
   */
  inventory(entitlements: readonly Entitlement[]): Promise<InventoryView> {
    const now = this.now();
    if (this.status && now - this.status.at < STATUS_TTL_MS) return this.status.value;
    const previous = this.lastGood;
    if (!this.refreshing) {
      // No deadline here: on a slow box with a huge store the first one may take minutes, and its
      // result must still land (the caller gives up waiting on its own, see admin-service.ts).
      const value = this.request({ op: 'status', nowMs: now, entitlements }, 0) as Promise<InventoryView>;
      this.refreshing = value;
      value
        .then(
          (v) => {
            this.lastGood = v;
            this.status = { at: now, value };
          },
          () => undefined, // not cached: the next request tries again
        )
        .finally(() => {
          if (this.refreshing === value) this.refreshing = undefined;
        });
    }
    return previous ? Promise.resolve(previous) : this.refreshing!;
  }

  machines(query: MachineQuery): Promise<MachinePage> {
    return this.request({ op: 'machines', nowMs: this.now(), query }) as Promise<MachinePage>;
  }

  /** The latest counts without waiting (undefined before the first refresh); refreshes in the background. */
  latestCounts(): CountFacts | undefined {
    const now = this.now();
    if (!this.closed && now - this.countsRequested >= COUNTS_TTL_MS) {
      this.countsRequested = now;
      (this.request({ op: 'counts', nowMs: now }) as Promise<CountFacts>).then(
        (c) => {
          this.counts = c;
        },
        (err: Error) => this.log.warn({ err: err.message }, 'admin: counts for /metrics could not be read'),
      );
    }
    return this.counts;
  }

  /** Resolves once fresh counts are in (tests and the first scrape). */
  async refreshCounts(): Promise<CountFacts> {
    this.countsRequested = this.now();
    this.counts = (await this.request({ op: 'counts', nowMs: this.now() })) as CountFacts;
    return this.counts;
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    for (const [, p] of this.waiting) {
      clearTimeout(p.timer);
      p.reject(new Error('the admin page is stopping'));
    }
    this.waiting.clear();
    if (w) await w.terminate();
  }

  private request(body: DistributiveOmit<WorkerRequest, 'id'>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<WorkerValue> {
    if (this.closed) return Promise.reject(new Error('the admin page is stopping'));
    if (this.waiting.size >= MAX_QUEUED) return Promise.reject(new AdminBusyError());
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise<WorkerValue>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          if (timeoutMs === 0) return;
          this.waiting.delete(id);
          reject(new Error('the database read took too long'));
        },
        timeoutMs === 0 ? 0x7fffffff : timeoutMs,
      );
      timer.unref();
      this.waiting.set(id, { resolve, reject, timer });
      worker.postMessage({ ...body, id } as WorkerRequest);
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const entry = require.resolve('./snapshot-worker');
    const worker = new Worker(BOOTSTRAP, { eval: true, workerData: { ...this.data, entry } });
    worker.unref();
    worker.on('message', (m: WorkerResponse) => {
      const p = this.waiting.get(m.id);
      if (!p) return;
      this.waiting.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(m.error));
    });
    const fail = (why: string): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const [, p] of this.waiting) {
        clearTimeout(p.timer);
        p.reject(new Error(why));
      }
      this.waiting.clear();
    };
    worker.on('error', (err) => {
      this.log.warn({ err: err.message }, 'admin: the snapshot worker failed; it is restarted on the next request');
      fail(err.message);
    });
    worker.on('exit', () => fail('the snapshot worker stopped'));
    this.worker = worker;
    return worker;
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
