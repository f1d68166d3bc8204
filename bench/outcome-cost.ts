// What a KMS request costs outside the store and the socket, each part timed alone in a loop (µs
// per call, best of five rounds): the host's answer to a v6 request (decode, checks, response;
// the store here the in-memory one), the log line next to pino's own serializer it replaced, and
// the metrics. Alone: node dist/bench/outcome-cost.js [--calls N]
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadCatalog } from '../src/catalog/load';
import { buildRequestBase } from '../src/client/kms-client';
import { chooseProduct } from '../src/client/product-choice';
import { processKmsMessage, type ActivationDeps } from '../src/host/activation';
import { loadHostIdentity } from '../src/host/host-identity';
import { MemoryActivationStore } from '../src/host/memory-store';
import { buildProductPolicy } from '../src/host/product-policy';
import { encodeKmsRequest } from '../src/protocol/kms';
import { pooledRandomBytes } from '../src/server/random-pool';
import type { ActivationOutcome } from '../src/host/outcome';
import { activationFields, activationJsonFields, MSG_SERVED } from '../src/logging/activation-line';
import { serveLogOutput } from '../src/logging/serve-output';
import { createLogger, logActivation } from '../src/logging/logger';
import { createApplianceMetrics } from '../src/metrics/appliance-metrics';
import { SERVED_OUTCOME } from '../test/logging/served-outcome';

const SERVED: ActivationOutcome = { ...SERVED_OUTCOME, vm: false };

/**
 * µs per call of `f`, the best of five rounds after a warm-up. The calls run in slices of 20 with
 * a turn of the event loop between them, as requests do, so the asynchronous destination's
 * writes complete; only the time inside the slices counts.
 */
async function timePerCall(f: () => void, calls: number): Promise<number> {
  const slice = 20;
  const round = async (): Promise<number> => {
    let ns = 0n;
    for (let done = 0; done < calls; done += slice) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < slice; i++) f();
      ns += process.hrtime.bigint() - t0;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return Number(ns) / calls / 1000;
  };
  await round();
  let best = Infinity;
  for (let r = 0; r < 5; r++) best = Math.min(best, await round());
  return best;
}

/** The destination serve writes to (asynchronous, 8 KiB), here on /dev/null, with or without the line batch. */
function serveDestination(batched: boolean) {
  if (batched) return serveLogOutput(fs.openSync('/dev/null', 'w'), {}).destination;
  return pino.destination({ dest: '/dev/null', sync: false, minLength: 8192 });
}

/** The host as `serve` builds it on its defaults, over the in-memory store, and 1,000 distinct v6 requests. */
function hostAndRequests(): { deps: ActivationDeps; requests: Buffer[] } {
  const catalog = loadCatalog();
  const store = new MemoryActivationStore();
  const clock = { now: () => Date.now() };
  const policy = buildProductPolicy(catalog, { hostKeyGroups: [], allowRetail: false, allowPreview: false });
  const identity = loadHostIdentity({ store, catalog, randomBytes, clock }, { build: 20348, lcid: 1033, hwid: '', epids: {}, ndr64: true });
  const settings = {
    activationIntervalMinutes: 120,
    renewalIntervalMinutes: 10080,
    checkRequestTime: true,
    maxClockSkewMinutes: 240,
    verifyV4Mac: true,
  };
  const deps: ActivationDeps = { catalog, policy, identity, store, clock, randomBytes: pooledRandomBytes(), settings };
  const product = chooseProduct(catalog, 'Windows 10/11 Enterprise');
  const requests = Array.from({ length: 1000 }, (_, i) => {
    const base = buildRequestBase(product, 6, { cmid: randomUUID(), workstation: `bench-${i}.branch.test`, nowMs: Date.now() });
    return encodeKmsRequest(6, base, randomBytes).message;
  });
  return { deps, requests };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { calls: { type: 'string' } } });
  const calls = Number(values.calls ?? 100_000);
  const { deps, requests } = hostAndRequests();
  let next = 0;
  const metrics = createApplianceMetrics(
    {
      kms: () => ({ listening: true, open: 0, refusedByReason: {} }),
      store: () => ({ pendingWrites: 0, writeFailures: 0, writable: true }),
      counts: () => undefined,
    },
    { processMetrics: false },
  );
  const generic = createLogger({ level: 'info', destination: serveDestination(false) });
  const genericBatched = createLogger({ level: 'info', destination: serveDestination(true) });
  const fastUnbatched = createLogger({ level: 'info', destination: serveDestination(false) });
  const fast = createLogger({ level: 'info', destination: serveDestination(true) });
  const rows: [string, number][] = [
    [
      'processKmsMessage, a v6 request (in-memory store)',
      await timePerCall(() => processKmsMessage(requests[next++ % 1000]!, '192.0.2.17', deps), calls / 2),
    ],
    [
      "log line by pino's serializer, serve's destination as before",
      await timePerCall(() => generic.info(activationFields(SERVED), MSG_SERVED), calls),
    ],
    [
      "log line by pino's serializer, batched destination",
      await timePerCall(() => genericBatched.info(activationFields(SERVED), MSG_SERVED), calls),
    ],
    ['log line by logActivation, destination as before', await timePerCall(() => logActivation(fastUnbatched, SERVED), calls)],
    ['log line by logActivation, batched destination (serve now)', await timePerCall(() => logActivation(fast, SERVED), calls)],
    ['  of which the fields, as a string (activationJsonFields)', await timePerCall(() => void activationJsonFields(SERVED), calls)],
    ['metrics.recordOutcome', await timePerCall(() => metrics.recordOutcome(SERVED), calls)],
  ];
  for (const [name, us] of rows) console.log(`${name.padEnd(64)} ${us.toFixed(2).padStart(6)} µs`);
}

void main();
