// A load-generating worker process for `npm run bench`: opens connections to the KMS host on
// loopback with the project's own client (RpcClient), sends v6 activation requests, and reports
// counts and latencies to the parent. Requests are encoded once up front so that the worker spends
// its CPU on the wire, not on crypto; every 64th response is fully verified like a client would.
import { randomBytes, randomUUID } from 'node:crypto';
import { encodeKmsRequest, verifyKmsResponse } from '../src/protocol/kms';
import type { SentKmsRequest } from '../src/protocol/kms/types';
import { RpcClient } from '../src/client/rpc-client';
import { buildRequestBase } from '../src/client/kms-client';
import type { ChosenProduct } from '../src/client/product-choice';

export interface WorkerJob {
  readonly host: string;
  readonly port: number;
  readonly product: ChosenProduct;
  /** Requests per connection (1 = a new connection for every request). */
  readonly perConnection: number;
  /** Concurrent connections kept busy by this worker. */
  readonly concurrency: number;
  readonly durationMs: number;
  /** Requests per second for this worker; 0 = as fast as possible. */
  readonly rate: number;
  /** Distinct machine ids to cycle through. */
  readonly machines: number;
}

export interface WorkerReport {
  readonly requests: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly verified: number;
  readonly elapsedMs: number;
  /** Per-request latency samples in microseconds (request written → response decoded). */
  readonly latenciesUs: number[];
}

const VERIFY_EVERY = 64;

async function run(job: WorkerJob): Promise<WorkerReport> {
  const pool: SentKmsRequest[] = [];
  for (let i = 0; i < job.machines; i++) {
    const base = buildRequestBase(job.product, 6, { cmid: randomUUID(), workstation: `bench-${i}.branch.test`, nowMs: Date.now() });
    pool.push(encodeKmsRequest(6, base, randomBytes));
  }
  const latencies: number[] = [];
  let requests = 0;
  let errors = 0;
  let verified = 0;
  let firstError: string | undefined;
  let next = 0;
  const started = performance.now();
  const deadline = started + job.durationMs;
  // With a rate, each loop paces its own requests so that the worker as a whole meets it.
  const gapMs = job.rate > 0 ? (1000 * job.concurrency) / job.rate : 0;

  const loop = async (index: number): Promise<void> => {
    let due = started + (gapMs * index) / job.concurrency;
    while (performance.now() < deadline) {
      let client: RpcClient | undefined;
      try {
        client = await RpcClient.connect(job.host, job.port, { ndr64: true, btfn: true, timeoutMs: 10_000 });
        await client.bind();
        for (let i = 0; i < job.perConnection && performance.now() < deadline; i++) {
          if (gapMs > 0) {
            const wait = due - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            due += gapMs;
          }
          const sent = pool[next++ % pool.length]!;
          const t0 = performance.now();
          const result = await client.call(sent.message);
          latencies.push(Math.round((performance.now() - t0) * 1000));
          if (result.hresult !== 0 || !result.response) throw new Error(`refused 0x${result.hresult.toString(16)}`);
          if (requests % VERIFY_EVERY === 0) {
            verifyKmsResponse(result.response, sent);
            verified++;
          }
          requests++;
        }
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        await new Promise((r) => setTimeout(r, 50)); // a refused connect must not spin
      } finally {
        client?.close();
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, (_, i) => loop(i)));
  return {
    requests,
    errors,
    verified,
    elapsedMs: performance.now() - started,
    latenciesUs: latencies,
    ...(firstError ? { firstError } : {}),
  };
}

process.on('message', (job: WorkerJob) => {
  run(job).then(
    (report) => process.send!(report, () => process.exit(0)),
    (err: unknown) => {
      process.send!({ requests: 0, errors: 1, verified: 0, elapsedMs: 0, latenciesUs: [], firstError: String(err) }, () => process.exit(1));
    },
  );
});
