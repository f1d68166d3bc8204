// WAL checkpoints off the event loop. SQLite normally checkpoints inside the COMMIT that crosses
// wal_autocheckpoint, copying pages into the main file while the server's only thread waits: that
// is what put milliseconds into the p99 latency of activations. Here the main connection stops
// auto-checkpointing and a worker thread with its own connection runs PASSIVE checkpoints on a
// timer. PASSIVE never takes the writer's lock, so the server never waits for it; SQLite restarts
// the WAL from its beginning once a checkpoint has caught up.
import { Worker } from 'node:worker_threads';

// Plain CommonJS evaluated in the worker, so that it works the same from src/ (under the test
// runner) and from dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export interface CheckpointerLog {
  warn(obj: object, msg?: string): void;
}

export function startCheckpointer(file: string, intervalMs: number, log: CheckpointerLog): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, intervalMs, sqlite: require.resolve('better-sqlite3') } });
  worker.unref();
  let warned = false;
  worker.on('message', (m: { error?: string }) => {
    if (m.error && !warned) {
      warned = true; // a failing checkpoint repeats every interval; once is enough
      log.warn({ file, err: m.error }, `background WAL checkpoint of ${file} failed; the WAL file grows until it succeeds`);
    }
  });
  worker.on('error', (err) => log.warn({ file, err: err.message }, 'background WAL checkpointer stopped'));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.postMessage('stop');
      const timeout = setTimeout(() => void worker.terminate(), 2000);
      await exited;
      clearTimeout(timeout);
    },
  };
}
