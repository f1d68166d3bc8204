// Where the store's microseconds per activation go, one request at a time (issue 14): the whole
// durable write (its own commit), the same inside a group commit of 1 (what the server does for a
// lone request) and of 100 (a burst), and the parts — counting from memory against the SQL count
// it replaced, the row statements, the COMMIT. Rounds are interleaved and the fastest round of
// each kind is kept, so that a busy machine inflates the figures less than it skews them.
// Alone: node dist/bench/request-cost.js [--requests N] [--rounds N]

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore } from '../src/store/sqlite-store';
import { STORE_TUNING } from '../src/config/defaults';
import { connectionOf } from '../src/store/testing';
import { observation } from './store-bench';

const WINDOW_MS = 30 * 86_400_000;
const APP = '55c92734-d682-4d71-983e-d6ec3f16059f';

export interface RequestCost {
  /** recordActivation committing on its own: the durable path of one request. */
  readonly directUs: number;
  /** beginBatch, recordActivation, commitBatch: the server's path for a lone request. */
  readonly batchOfOneUs: number;
  /** Per request inside a group commit of 100. */
  readonly batchOf100Us: number;
  /** The window count from memory (what a request pays for counting now). */
  readonly countMemoryUs: number;
  /** The SQL count over the index it replaced (what a request paid before). */
  readonly countSqlUs: number;
  /** A one-row write in its own transaction (BEGIN, one small upsert, COMMIT). */
  readonly commitUs: number;
  /**
   * The server's path with the request journal: a group commit of 1 made durable by one journal
   * append, the statements and the SQLite commit every 10 ms included (their share per request).
   */
  readonly journaledUs: number;
}

function timeUs(n: number, fn: (i: number) => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

async function timeUsAsync(n: number, fn: (i: number) => void): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    fn(i);
    // An event-loop turn now and then, as between a server's requests: the journal's commit
    // runs in one (setImmediate or its 10 ms timer).
    if (i % 8 === 7) await new Promise(setImmediate);
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

/** The store in the server's mode, with the request journal (STORE_TUNING.journalCommitMs). */
async function measureJournaled(n: number, rounds: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-request-cost-'));
  const store = SqliteStore.open(dir, { backgroundCheckpointMs: 1000, journalCommitMs: STORE_TUNING.journalCommitMs });
  try {
    let now = Date.now();
    let best = Infinity;
    for (let r = 0; r < rounds; r++) {
      const prefix = `j${r.toString(16).padStart(7, '0')}`;
      best = Math.min(
        best,
        await timeUsAsync(n, (i) => {
          store.beginBatch();
          store.recordActivation(observation(i, prefix), ++now, WINDOW_MS);
          store.commitBatch();
        }),
      );
    }
    return best;
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureRequestCost(options: { requests?: number; rounds?: number } = {}): Promise<RequestCost> {
  const journaledUs = await measureJournaled(options.requests ?? 3000, options.rounds ?? 5);
  return { ...measureSynchronous(options), journaledUs };
}

function measureSynchronous(options: { requests?: number; rounds?: number }): Omit<RequestCost, 'journaledUs'> {
  const n = options.requests ?? 3000;
  const rounds = options.rounds ?? 5;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-request-cost-'));
  const store = SqliteStore.open(dir, { backgroundCheckpointMs: 1000 });
  try {
    const db = connectionOf(store);
    const sqlCount = db
      .prepare('SELECT count(*) FROM (SELECT 1 FROM clients WHERE application = ? AND last_counted_ms >= ? LIMIT ?)')
      .pluck();
    let now = Date.now();
    let run = 0;
    const best = {
      directUs: Infinity,
      batchOfOneUs: Infinity,
      batchOf100Us: Infinity,
      countMemoryUs: Infinity,
      countSqlUs: Infinity,
      commitUs: Infinity,
    };
    for (let r = 0; r < rounds; r++) {
      // New machines each time (the costly case: an insert and an index entry).
      const p = () => (run++).toString(16).padStart(8, '0');
      let prefix = p();
      best.directUs = Math.min(
        best.directUs,
        timeUs(n, (i) => store.recordActivation(observation(i, prefix), ++now, WINDOW_MS)),
      );
      prefix = p();
      best.batchOfOneUs = Math.min(
        best.batchOfOneUs,
        timeUs(n, (i) => {
          store.beginBatch();
          store.recordActivation(observation(i, prefix), ++now, WINDOW_MS);
          store.commitBatch();
        }),
      );
      prefix = p();
      best.batchOf100Us = Math.min(
        best.batchOf100Us,
        timeUs(n, (i) => {
          if (i % 100 === 0) store.beginBatch();
          store.recordActivation(observation(i, prefix), ++now, WINDOW_MS);
          if (i % 100 === 99) store.commitBatch();
        }),
      );
      store.commitBatch();
      best.countSqlUs = Math.min(
        best.countSqlUs,
        timeUs(n, () => sqlCount.get(APP, now - WINDOW_MS, 50)),
      );
      best.countMemoryUs = Math.min(
        best.countMemoryUs,
        timeUs(n, () => store.countSince(APP, now - WINDOW_MS, 50)),
      );
      // One settings row in its own transaction: little more than BEGIN and COMMIT.
      best.commitUs = Math.min(
        best.commitUs,
        timeUs(n, (i) => store.setSetting('bench', String(i))),
      );
    }
    return best;
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function formatRequestCost(c: RequestCost): string {
  const f = (us: number): string => `${us.toFixed(1)} µs`;
  return [
    `store per activation, one at a time: ${f(c.journaledUs)} with the request journal (the server's path; statements and ` +
      `commit every ${STORE_TUNING.journalCommitMs} ms included), ${f(c.directUs)} with its own commit, ${f(c.batchOfOneUs)} as a ` +
      `group commit of 1 without the journal, ${f(c.batchOf100Us)} in a group commit of 100`,
    `  parts: count from memory ${f(c.countMemoryUs)} (the SQL count it replaced: ${f(c.countSqlUs)}), ` +
      `a one-row transaction ${f(c.commitUs)}`,
  ].join('\n');
}

if (require.main === module) {
  const { values } = parseArgs({ options: { requests: { type: 'string' }, rounds: { type: 'string' } } });
  void measureRequestCost({
    ...(values.requests !== undefined ? { requests: Number(values.requests) } : {}),
    ...(values.rounds !== undefined ? { rounds: Number(values.rounds) } : {}),
  }).then((c) => process.stdout.write(`${formatRequestCost(c)}\n`));
}
