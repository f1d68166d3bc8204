// serve's log lines are gathered into batches before pino's asynchronous destination: in order,
// one write per batch, and none left behind by a flush, a synchronous flush or the process ending.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { batchLines, type BufferedDestination } from '../../src/logging/line-batch';
import { loaderFlags, sibling } from '../paths';

function recorder() {
  const calls: string[] = [];
  const dest: BufferedDestination = {
    write: (text: string) => void calls.push(`write ${text}`),
    flush: (cb) => {
      calls.push('flush');
      cb?.();
    },
    flushSync: () => void calls.push('flushSync'),
  };
  return { dest, calls };
}

t.test('lines wait until a batch is full, then leave as one write, in order', async (t) => {
  const { dest, calls } = recorder();
  const batch = batchLines(dest, 20);
  batch.write('line one\n');
  batch.write('line two\n');
  t.same(calls, [], 'below the batch size nothing is written');
  batch.write('line three\n');
  t.same(calls, ['write line one\nline two\nline three\n']);
  batch.write('four\n');
  batch.flush();
  t.same(calls.slice(1), ['write four\n', 'flush'], 'a flush passes the rest on first');
  batch.flush();
  t.same(calls.slice(3), ['flush'], 'an empty batch writes nothing');
  batch.write('five\n');
  batch.flushSync();
  t.same(calls.slice(4), ['write five\n', 'flushSync']);
});

t.test("a flush's callback runs once the destination has written", async (t) => {
  const { dest, calls } = recorder();
  const batch = batchLines(dest, 1 << 20);
  batch.write('x\n');
  await new Promise<void>((resolve) => batch.flush(() => resolve()));
  t.same(calls, ['write x\n', 'flush']);
});

const CHILD = sibling(path.join(__dirname, 'fixtures'), 'batched-exit');

for (const how of ['exit', 'return']) {
  t.test(`lines still in the batch reach the file when the process ends (${how})`, async (t) => {
    const file = path.join(t.testdir(), 'log');
    const child = spawn(process.execPath, [...loaderFlags(), CHILD, file, how], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    t.equal(code, 0, stderr);
    t.equal(fs.readFileSync(file, 'utf8'), [0, 1, 2, 3, 4].map((i) => `line ${i}\n`).join(''));
  });
}
