// WAL checkpoints off the event loop. SQLite normally checkpoints inside the COMMIT that crosses
// wal_autocheckpoint, copying pages into the main file while the server's only thread waits: that
// is what put milliseconds into the p99 latency of activations. Here the main connection stops
// auto-checkpointing and a worker thread with its own connection runs PASSIVE checkpoints on a
// timer. PASSIVE never takes the writer's lock, so the server never waits for it.
// PASSIVE alone cannot keep the -wal file small under sustained writes: SQLite restarts the WAL
// from its beginning only when a writer finds every frame checkpointed, and a steady stream of
// commits always leaves a few frames behind (972 MB in 20 s were seen). So when the file passes
// truncateBytes, a PASSIVE pass copies almost everything, then the worker raises a flag shared
// with the server thread, which parks before its next transaction (yieldToCheckpoint), and a
// TRUNCATE checkpoint copies the few frames left and cuts the file to zero. Without the flag a
// writer committing back to back always wins the lock and the WAL keeps growing; with it, writes
// wait only for that last short step (milliseconds, once per truncateBytes of WAL).
import { Worker } from 'node:worker_threads';

// Plain CommonJS evaluated in the worker, so that it works the same from src/ (under the test
// runner) and from dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const fs = require('node:fs');
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
// Checkpoints copy WAL frames to the file; they need no page cache of their own.
db.pragma('cache_size = -64');
const wal = workerData.file + '-wal';
const walSize = () => {
  try {
    return fs.statSync(wal).size;
  } catch {
    return 0;
  }
};
const run = (mode) => {
  try {
    db.pragma('busy_timeout = ' + (mode === 'PASSIVE' ? 0 : 200));
    db.pragma('wal_checkpoint(' + mode + ')');
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
};
const flag = new Int32Array(workerData.flag);
let sinceCheckpoint = 0;
// The size is looked at often (a stat is cheap); PASSIVE runs every intervalMs.
const tick = () => {
  sinceCheckpoint += workerData.tickMs;
  if (walSize() >= workerData.truncateBytes) {
    run('PASSIVE');
    Atomics.store(flag, 0, 1);
    try {
      run('TRUNCATE');
    } finally {
      Atomics.store(flag, 0, 0);
      Atomics.notify(flag, 0);
    }
    sinceCheckpoint = 0;
    parentPort.postMessage({ truncated: walSize() });
  } else if (sinceCheckpoint >= workerData.intervalMs) {
    run('PASSIVE');
    sinceCheckpoint = 0;
  }
};
const timer = setInterval(tick, workerData.tickMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  run('PASSIVE');
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  /** Called by the writer before a transaction: waits (briefly) while the WAL is being truncated. */
  yieldToCheckpoint(): void;
  stop(): Promise<void>;
}

/** The longest a writer parks for a truncation; past it, it goes on and SQLite's locks decide. */
const MAX_YIELD_MS = 250;

export interface CheckpointerLog {
  warn(obj: object, msg?: string): void;
}

export interface CheckpointerOptions {
  /** PASSIVE checkpoint period. */
  readonly intervalMs: number;
  /** A -wal file this large is checkpointed and truncated at once. */
  readonly truncateBytes: number;
}

export function startCheckpointer(file: string, options: CheckpointerOptions, log: CheckpointerLog): Checkpointer {
  const tickMs = Math.min(options.intervalMs, 20); // a stat of the -wal file: cheap, and a fast writer adds MBs per 100 ms
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      file,
      intervalMs: options.intervalMs,
      truncateBytes: options.truncateBytes,
      tickMs,
      flag: flag.buffer,
      sqlite: require.resolve('better-sqlite3'),
    },
    // The worker only runs SQLite: a small heap keeps the thread's footprint small.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
  });
  worker.unref();
  let warned = false;
  let warnedSize = false;
  worker.on('message', (m: { error?: string; truncated?: number }) => {
    if (m.truncated !== undefined && m.truncated >= options.truncateBytes && !warnedSize) {
      warnedSize = true; // a reader holding an old snapshot (a long backup) keeps the frames
      log.warn({ file, walBytes: m.truncated }, `the WAL of ${file} could not be truncated (a long-running reader?); it is retried`);
    }
    if (m.error && !warned) {
      warned = true; // a failing checkpoint repeats every interval; once is enough
      log.warn({ file, err: m.error }, `background WAL checkpoint of ${file} failed; the WAL file grows until it succeeds`);
    }
  });
  worker.on('error', (err) => log.warn({ file, err: err.message }, 'background WAL checkpointer stopped'));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    yieldToCheckpoint() {
      if (Atomics.load(flag, 0) === 1) Atomics.wait(flag, 0, 1, MAX_YIELD_MS);
    },
    async stop() {
      worker.postMessage('stop');
      const timeout = setTimeout(() => void worker.terminate(), 2000);
      await exited;
      clearTimeout(timeout);
    },
  };
}
