// Group commit (SqliteStore.beginBatch/commitBatch and the server's GroupCommitGate): writes of one
// batch commit together, replies wait for the commit in order, and a commit that fails (disk full)
// loses nothing: the batch's records move to the in-memory pending path and are written later.
import t from 'tap';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { GroupCommitGate } from '../../src/server/reply-gate';
import { obs, recordingLog, tempDataDir, WINDOW } from './observations';

const T0 = Date.now() - 86_400_000;
const big = { requiredClientCount: 1000 };

t.test('a batch counts as it goes and is durable only after commitBatch', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, {});
  t.equal(store.beginBatch(), true);
  for (let i = 1; i <= 10; i++)
    t.equal(store.recordActivation(obs(i, big), T0 + i, WINDOW).activeClients, i, `machine ${i} counted inside the batch`);
  const reader = SqliteStore.open(dir, { readonly: true });
  t.equal(
    connectionOf(reader).prepare('SELECT count(*) FROM clients').pluck().get(),
    0,
    'another connection sees nothing before the commit',
  );
  store.commitBatch();
  t.equal(connectionOf(reader).prepare('SELECT count(*) FROM clients').pluck().get(), 10, 'and all of it after');
  reader.close();
  store.close();
});

t.test('a failing commit moves the batch to the pending path; nothing is lost', async (t) => {
  const dir = tempDataDir(t);
  const log = recordingLog();
  const store = SqliteStore.open(dir, { log, retryIntervalMs: 0, retryTimerMs: 3_600_000 });
  for (let i = 1; i <= 20; i++) store.recordActivation(obs(i, big), T0 + i, WINDOW);
  const db = connectionOf(store);
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 21;
  // Batches until one cannot be written: each answer still counts every machine so far.
  while (!store.hasPendingWrites && n < 3000) {
    store.beginBatch();
    for (let j = 0; j < 25; j++, n++) t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n);
    store.commitBatch();
  }
  t.ok(store.hasPendingWrites, 'the disk filled up during a batch');
  t.equal(log.lines.filter((l) => l.level === 'error').length, 1, 'one error');
  t.equal(store.beginBatch(), false, 'no batch while writes are pending');
  t.equal(store.recordActivation(obs(n, big), T0 + n, WINDOW).activeClients, n, 'counting goes on from memory');
  db.pragma('max_page_count = 1073741823');
  t.equal(store.flushPending(), true, 'written once space returns');
  store.close();
  const reopened = SqliteStore.open(dir, {});
  t.equal(connectionOf(reopened).prepare('SELECT count(*) FROM clients').pluck().get(), n, 'every answered machine is stored');
  reopened.close();
});

t.test('the gate holds replies until the commit, in order, and releases them once', async (t) => {
  const calls: string[] = [];
  const store = {
    beginBatch: () => (calls.push('begin'), true),
    commitBatch: () => void calls.push('commit'),
  };
  const gate = new GroupCommitGate(store);
  gate.run(() => calls.push('before any batch'));
  gate.enter();
  gate.enter();
  gate.run(() => calls.push('reply 1'));
  gate.run(() => calls.push('close 1'));
  gate.run(() => calls.push('reply 2'));
  t.same(calls, ['before any batch', 'begin'], 'nothing leaves before the commit');
  await new Promise((r) => setImmediate(r));
  t.same(calls, ['before any batch', 'begin', 'commit', 'reply 1', 'close 1', 'reply 2']);
  gate.flush();
  t.equal(calls.length, 6, 'a second flush does nothing');
  const noBatch = new GroupCommitGate({ beginBatch: () => false, commitBatch: () => t.fail('no commit without a batch') });
  noBatch.enter();
  let sent = false;
  noBatch.run(() => (sent = true));
  t.equal(sent, true, 'without a batch, replies leave at once');
});
