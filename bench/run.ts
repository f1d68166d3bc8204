// `npm run bench`: starts the appliance as its own process on loopback and drives it from worker
// processes with the project's own client. Prints activations/s with a new connection per request
// and with 20 requests per connection, p50/p99 latency at half the measured rate, the server's
// peak RSS, the same run against a store pre-filled with 1,000,000 clients, the store's own
// figures, and SRV queries/s. First, the load real clients make (issue 14's table): two client
// processes each sending one request at a time and waiting for the answer, over one kept-alive
// connection each and with a new connection (bind + request) per activation, with the server's
// peak RSS under that load. Options: --seconds N (per run, default 8), --clients N (default
// 1000000), --quick (2 s runs, 100,000 clients), --sequential (only the sequential runs, the
// store's cost per request and what the memory is made of), --skip-footprint, --skip-large,
// --skip-dns.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadCatalog } from '../src/catalog/load';
import { chooseProduct } from '../src/client/product-choice';
import { activate } from '../src/client/kms-client';
import { findPackageRoot } from '../src/catalog/load';
import { generateStore, progressBar } from '../scripts/generate-store';
import { benchStore } from './store-bench';
import { SERVER_ENV, SERVER_NODE_FLAGS } from '../src/server/node-flags';
import { benchDns } from './dns-bench';
import type { WorkerJob, WorkerReport } from './load-worker';
import { formatRequestCost, measureRequestCost } from './request-cost';
import { formatFootprint, measureFootprint } from './footprint';
import { buildCClient, driveSequential, writePduFile } from './c-client';

const ROOT = findPackageRoot();
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const WORKER = path.join(ROOT, 'dist', 'bench', 'load-worker.js');
const WORKERS = 2;
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface RunResult {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  readonly errors: number;
  readonly firstError?: string;
}

/** BENCH_PROFILE=DIR writes V8 CPU profiles of the server and the workers there. */
function profileArgs(who: string): string[] {
  const dir = process.env['BENCH_PROFILE'];
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, who)}`] : [];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

interface Server {
  readonly port: number;
  readonly child: ChildProcess;
  peakRssMb(): number;
  /** CPU time the server process has used (user + system), in µs. */
  cpuUs(): number;
  stop(): Promise<void>;
}

async function startServer(dataDir: string): Promise<Server> {
  const port = await freePort();
  const config = path.join(dataDir, 'bench-config.yaml');
  // Logging stays on (one line per request is part of the real per-request path), to /dev/null.
  fs.writeFileSync(config, 'admin:\n  listen: []\nlog:\n  level: info\n');
  const child = spawn(
    process.execPath,
    [
      ...SERVER_NODE_FLAGS,
      ...profileArgs('server'),
      MAIN,
      'serve',
      '--config',
      config,
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      dataDir,
    ],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, ...SERVER_ENV },
    },
  );
  const product = chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise');
  for (let i = 0; ; i++) {
    try {
      await activate({ host: '127.0.0.1', port, product, timeoutMs: 2000 });
      break;
    } catch (err) {
      if (i > 100 || child.exitCode !== null) throw new Error(`the server did not start: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    child,
    cpuUs() {
      // /proc/PID/stat fields 14 and 15 (after the parenthesised name): utime, stime in clock ticks.
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
    },
    peakRssMb() {
      const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      return kb / 1024;
    },
    stop() {
      return new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}

/** A run, with the server CPU time it cost per activation (less sensitive to a busy machine than /s). */
async function measure(server: Server, o: Parameters<typeof drive>[1]): Promise<RunResult & { cpuUsPerRequest: number }> {
  const before = server.cpuUs();
  const r = await drive(server.port, o);
  return { ...r, cpuUsPerRequest: (server.cpuUs() - before) / Math.max(1, r.requests) };
}

async function drive(port: number, o: { perConnection: number; concurrency: number; seconds: number; rate: number }): Promise<RunResult> {
  const product = chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise');
  const job: WorkerJob = {
    host: '127.0.0.1',
    port,
    product,
    perConnection: o.perConnection,
    concurrency: o.concurrency,
    durationMs: o.seconds * 1000,
    rate: o.rate / WORKERS,
    machines: 2000,
  };
  const reports = await Promise.all(
    Array.from(
      { length: WORKERS },
      () =>
        new Promise<WorkerReport>((resolve, reject) => {
          const w = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: profileArgs('worker') });
          w.once('message', (m) => resolve(m as WorkerReport));
          w.once('error', reject);
          w.send(job);
        }),
    ),
  );
  const latencies = reports.flatMap((r) => r.latenciesUs).sort((a, b) => a - b);
  const pick = (q: number): number =>
    latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! / 1000 : NaN;
  const requests = reports.reduce((n, r) => n + r.requests, 0);
  const elapsed = Math.max(...reports.map((r) => r.elapsedMs)) / 1000;
  const firstError = reports.find((r) => r.firstError)?.firstError;
  return {
    perSecond: requests / elapsed,
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
    requests,
    errors: reports.reduce((n, r) => n + r.errors, 0),
    ...(firstError ? { firstError } : {}),
  };
}

function line(label: string, r: RunResult & { cpuUsPerRequest?: number }): string {
  return (
    `${label.padEnd(44)} ${Math.round(r.perSecond).toString().padStart(7)} activations/s   ` +
    `p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms` +
    (r.cpuUsPerRequest === undefined ? '' : `   server CPU ${Math.round(r.cpuUsPerRequest)} µs/activation`) +
    (r.errors ? `   (${r.errors} errors: ${r.firstError})` : '')
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      clients: { type: 'string' },
      quick: { type: 'boolean' },
      sequential: { type: 'boolean' },
      'skip-footprint': { type: 'boolean' },
      'skip-large': { type: 'boolean' },
      'skip-dns': { type: 'boolean' },
    },
  });
  const quick = values.quick ?? false;
  const seconds = Number(values.seconds ?? (quick ? 2 : 8));
  const clients = Number(values.clients ?? (quick ? 100_000 : 1_000_000));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-bench-'));
  const out = (s: string): void => void process.stdout.write(s + '\n');
  out(
    `kms-appliance benchmark on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}; ` +
      `${seconds} s per run, ${WORKERS} client worker processes, KMS v6 requests`,
  );
  try {
    const emptyDir = path.join(tmp, 'empty');
    fs.mkdirSync(emptyDir);
    const server = await startServer(emptyDir);
    // One request in flight per client process: what a site's machines do, so no group commit
    // shares a transaction here and every figure is the cost of one request.
    const cClient = buildCClient(ROOT, tmp);
    if (cClient) {
      const pduFile = path.join(tmp, 'requests.bin');
      writePduFile(pduFile, chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise'), 2000);
      const sequential = async (mode: 'keepalive' | 'newconn') => {
        const before = server.cpuUs();
        const r = await driveSequential(cClient, pduFile, { port: server.port, seconds, mode, processes: WORKERS });
        return { ...r, cpuUsPerRequest: (server.cpuUs() - before) / Math.max(1, r.requests), firstError: 'see the C client' };
      };
      out(line('sequential (C clients): keep-alive', await sequential('keepalive')));
      out(line('sequential (C clients): new connection each', await sequential('newconn')));
    } else {
      out('sequential (C clients): skipped, no C compiler (cc) on this machine');
    }
    const seqKeepAlive = await measure(server, { perConnection: Number.MAX_SAFE_INTEGER, concurrency: 1, seconds, rate: 0 });
    out(line('sequential (Node clients): keep-alive', seqKeepAlive));
    const seqNewConn = await measure(server, { perConnection: 1, concurrency: 1, seconds, rate: 0 });
    out(line('sequential (Node clients): new connection each', seqNewConn));
    out(`server peak RSS under the sequential loads ${server.peakRssMb().toFixed(1)} MB`);
    out(formatRequestCost(await measureRequestCost({ requests: quick || seconds < 2 ? 500 : 3000, rounds: quick || seconds < 2 ? 2 : 5 })));
    if (!values['skip-footprint']) out(formatFootprint(await measureFootprint()));
    if (values.sequential) {
      await server.stop();
      return;
    }
    const perConn = await drive(server.port, { perConnection: 1, concurrency: 16, seconds, rate: 0 });
    out(line('new connection per request', perConn));
    const multi = await drive(server.port, { perConnection: 20, concurrency: 16, seconds, rate: 0 });
    out(line('20 requests per connection', multi));
    // Pacing needs only rate × latency connections in flight; 8 per worker leaves plenty, without
    // the synchronised bursts of 32 paced loops.
    const half = await drive(server.port, { perConnection: 20, concurrency: 8, seconds, rate: multi.perSecond / 2 });
    out(line(`paced at half that rate (${Math.round(multi.perSecond / 2)}/s)`, half));
    out(`server peak RSS ${server.peakRssMb().toFixed(1)} MB (all runs so far)`);
    await server.stop();

    if (!values['skip-large']) {
      const largeDir = path.join(tmp, 'large');
      fs.mkdirSync(largeDir);
      generateStore(largeDir, { clients, onProgress: progressBar(process.stderr, `filling a store with ${clients} clients`) });
      const big = await startServer(largeDir);
      const bigMulti = await drive(big.port, { perConnection: 20, concurrency: 16, seconds, rate: 0 });
      out(line(`20 per connection, store with ${clients} clients`, bigMulti));
      out(
        `  relative to the empty store: ${(bigMulti.perSecond / multi.perSecond).toFixed(2)}× (target ≥ 0.8×); ` +
          `server peak RSS ${big.peakRssMb().toFixed(1)} MB`,
      );
      await big.stop();
      const size = ['kms-appliance.db', 'kms-appliance.db-wal'].reduce(
        (n, f) => n + (fs.existsSync(path.join(largeDir, f)) ? fs.statSync(path.join(largeDir, f)).size : 0),
        0,
      );
      out(`  store size on disk: ${(size / 1024 / 1024).toFixed(1)} MB (${(size / clients).toFixed(0)} bytes per client)`);
      const s = await benchStore({ clients, dataDir: largeDir, requests: quick ? 5000 : 20_000, log: () => {} });
      out(
        `store alone: ${Math.round(s.empty.newClientsPerSecond)} new clients/s and ` +
          `${Math.round(s.empty.renewalsPerSecond)} renewals/s empty; ` +
          `${Math.round(s.large.newClientsPerSecond)} and ${Math.round(s.large.renewalsPerSecond)} with ${s.clients} clients ` +
          `(${s.ratio.newClients.toFixed(2)}× / ${s.ratio.renewals.toFixed(2)}×)`,
      );
    }
    if (!values['skip-dns']) {
      const d = await benchDns({ seconds });
      out(`DNS: ${Math.round(d.queriesPerSecond)} SRV queries/s over UDP (loopback)`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
