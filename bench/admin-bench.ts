// `npm run bench:admin`: what the admin page costs the KMS host with a big store. Generates a
// store of N clients (default 1,000,000), starts the appliance in-process (the KMS listener and the
// admin listener share this event loop, as in production) and measures, for a few seconds each:
// the KMS event loop's delay and activation latency with no admin traffic, then with four clients
// polling /api/status, the page with a search, the machine list and /metrics; the cost of one
// /metrics scrape on the loop; and how long the worker takes for the status and for machine pages.
// Options: --clients N, --seconds S (per phase, default 5).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { generateStore } from '../scripts/generate-store';
import { startAppliance } from '../src/cli/appliance';
import { DEFAULTS, type AppConfig } from '../src/config/defaults';
import { createLogger } from '../src/logging/logger';
import { activate } from '../src/client/kms-client';
import { chooseProduct } from '../src/client/product-choice';
import { loadCatalog } from '../src/catalog/load';

function get(port: number, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

const POLLER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
let n = 0;
const next = () => {
  if (Date.now() >= workerData.deadline) return parentPort.postMessage(n);
  http.get({ host: '127.0.0.1', port: workerData.port, path: workerData.path, agent: false }, (res) => {
    res.resume();
    res.on('end', () => { n++; next(); });
  }).on('error', () => parentPort.postMessage(n));
};
next();
`;

/** Polls `p` back to back until the deadline from a worker thread; resolves with the count answered. */
function pollInThread(port: number, p: string, deadline: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(POLLER, { eval: true, workerData: { port, path: p, deadline } });
    w.once('message', (n: number) => {
      resolve(n);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const ms = (n: number): string => `${n.toFixed(1)} ms`;

async function phase(label: string, seconds: number, kmsPort: number, adminPort: number | undefined): Promise<void> {
  const product = chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise');
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const elu0 = performance.eventLoopUtilization();
  const deadline = Date.now() + seconds * 1000;
  const latencies: number[] = [];
  let adminRequests = 0;
  const client = (async () => {
    while (Date.now() < deadline) {
      const t0 = performance.now();
      await activate({ host: '127.0.0.1', port: kmsPort, product, timeoutMs: 30_000 });
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const paths = ['/api/status', '/?q=ws-1a&sort=seen', '/api/machines?sort=name&limit=200', '/metrics'];
  // The pollers run in their own thread: their HTTP client work must not be billed to the server's loop.
  const pollers =
    adminPort === undefined
      ? []
      : paths.map((p) =>
          pollInThread(adminPort, p, deadline).then((n) => {
            adminRequests += n;
          }),
        );
  await Promise.all([client, ...pollers]);
  delay.disable();
  // Time the loop spent running code (not waiting), per request: what each one cost the KMS host.
  const busyMs = performance.eventLoopUtilization(elu0).active;
  process.stdout.write(
    `${label}: KMS loop delay p50 ${ms(delay.percentile(50) / 1e6)}, p99 ${ms(delay.percentile(99) / 1e6)}, max ${ms(delay.max / 1e6)}; ` +
      `activation p50 ${ms(pct(latencies, 0.5))}, p99 ${ms(pct(latencies, 0.99))}, max ${ms(Math.max(0, ...latencies))} ` +
      `(${latencies.length} activations)` +
      (adminPort === undefined
        ? `; loop busy ${ms(busyMs)}`
        : `; ${adminRequests} admin requests answered, loop busy ${ms(busyMs)} in all ` +
          `(${ms(busyMs / Math.max(1, adminRequests + latencies.length))} per request)`) +
      '\n',
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { clients: { type: 'string' }, seconds: { type: 'string' } } });
  const clients = Number(values.clients ?? 1_000_000);
  const seconds = Number(values.seconds ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-admin-bench-'));
  try {
    const g0 = performance.now();
    generateStore(dir, { clients });
    process.stdout.write(`admin bench: ${clients} clients generated in ${((performance.now() - g0) / 1000).toFixed(1)} s\n`);
    const config = structuredClone(DEFAULTS) as { -readonly [K in keyof AppConfig]: any };
    config.kms.listen = ['127.0.0.1:0'];
    config.admin.listen = ['127.0.0.1:0'];
    config.store.dataDir = dir;
    const appliance = await startAppliance(config as AppConfig, { log: createLogger({ level: 'warn' }) });
    const kmsPort = appliance.kmsAddresses[0]!.port;
    const adminPort = appliance.adminAddresses[0]!.port;
    try {
      await phase('no admin traffic       ', seconds, kmsPort, undefined);
      let t0 = performance.now();
      await get(adminPort, '/api/status');
      process.stdout.write(`first /api/status (worker starts and summarises the store): ${ms(performance.now() - t0)}\n`);
      for (const p of [
        '/api/machines?sort=name',
        '/api/machines?sort=seen',
        '/api/machines?sort=application',
        '/api/machines?q=ws-1a',
        '/api/machines?q=10.1.2.',
      ]) {
        t0 = performance.now();
        await get(adminPort, p);
        process.stdout.write(`${p}: ${ms(performance.now() - t0)} (in the worker)\n`);
      }
      // A scrape's cost on the loop: everything in scrape() runs on it; counts come from memory.
      await appliance.metrics.scrape();
      const scrapes: number[] = [];
      for (let i = 0; i < 20; i++) {
        t0 = performance.now();
        await appliance.metrics.scrape();
        scrapes.push(performance.now() - t0);
      }
      process.stdout.write(`/metrics scrape on the KMS loop: p50 ${ms(pct(scrapes, 0.5))}, max ${ms(Math.max(...scrapes))}\n`);
      await phase('4 admin pollers running', seconds, kmsPort, adminPort);
    } finally {
      await appliance.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`admin bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
