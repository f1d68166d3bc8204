// kill -9 during a stream of activations loses none that was answered (a commit is in the -wal
// file before recordActivation returns, whatever the fsyncs: the kernel has the bytes; with the
// request journal, a group's lines are in the journal before commitBatch returns and the next open
// replays them). The child runs the server's checkpoint cycles, every 64 writes.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { Inventory } from '../../src/store/inventory';
import { tempDataDir } from './observations';
import { loaderFlags, sibling } from '../paths';

const CHILD = sibling(path.join(__dirname, 'fixtures'), 'activate-until-killed');
const KILL_AFTER = 500; // answered activations before the kill
const READ_AT = [100, 200, 300]; // answered activations at which another process reads the file

for (const journalCommitMs of [0, 1, 3_600_000]) {
  const how =
    journalCommitMs === 0 ? 'a commit per activation' : journalCommitMs === 1 ? 'the journal, committed every ms' : 'the journal alone';
  t.test(`every activation answered before kill -9 is stored (${how})`, async (t) => killMidStream(t, journalCommitMs));
}

async function killMidStream(t: Test, journalCommitMs: number): Promise<void> {
  const dir = tempDataDir(t);
  // The child runs TypeScript with the same loader flags tap gave this process.
  const child = spawn(process.execPath, [...loaderFlags(), CHILD, dir, String(journalCommitMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));

  const answered: string[] = [];
  let partial = '';
  let killed = false;
  // Read-only reads from this process while the child writes: never blocked, never behind what
  // was answered.
  const reads: { answered: number; counted: number }[] = [];
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  child.stdout.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    answered.push(...lines);
    // With the journal, another process sees a group at its commit, not at its answer.
    if (journalCommitMs === 0 && reads.length < READ_AT.length && answered.length >= READ_AT[reads.length]!) {
      const seen = answered.length;
      const inventory = Inventory.open(dir);
      try {
        reads.push({ answered: seen, counted: inventory.summary(Date.now())[0]?.activeMachines ?? 0 });
      } finally {
        inventory.close();
      }
    }
    if (!killed && answered.length >= KILL_AFTER) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  const { signal } = await exit;
  t.equal(signal, 'SIGKILL', `the child was killed mid-stream ${stderr}`);
  t.ok(answered.length >= KILL_AFTER);
  if (journalCommitMs === 0) t.equal(reads.length, READ_AT.length, 'the file was read while the child wrote');
  for (const r of reads) t.ok(r.counted >= r.answered, `reader counted ${r.counted} after ${r.answered} answers`);

  const store = SqliteStore.open(dir, { journalCommitMs });
  t.teardown(() => store.close());
  const has = connectionOf(store).prepare('SELECT 1 FROM clients WHERE cmid = ?').pluck();
  const lost = answered.filter((id) => has.get(id) === undefined);
  t.same(lost, [], `all ${answered.length} answered activations survived`);
  const stored = connectionOf(store).prepare('SELECT count(*) FROM clients').pluck().get() as number;
  // At most the one activation (group of four) committed but not yet printed when the signal hit.
  const unprinted = journalCommitMs === 0 ? 1 : 4;
  t.ok(stored >= answered.length && stored <= answered.length + unprinted, `${stored} stored for ${answered.length} answered`);
  const twice = connectionOf(store).prepare('SELECT count(*) FROM clients WHERE requests <> 1').pluck().get();
  t.equal(twice, 0, 'none stored twice (a replay skips what was committed)');
  t.equal(connectionOf(store).pragma('integrity_check', { simple: true }), 'ok');
}
