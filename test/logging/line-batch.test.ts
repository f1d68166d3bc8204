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

t.test('a line written in place (reserve, commit) keeps its order among string lines', async (t) => {
  const kept: Buffer[] = [];
  const dest: BufferedDestination = { write: (b) => void kept.push(b as Buffer), flush: (cb) => cb?.(), flushSync: () => {} };
  const batch = batchLines(dest, 64);
  batch.write('one\n');
  const w = batch.reserve(16);
  if (w === undefined) throw new Error('room for 16 bytes');
  w.raw('two ');
  w.number(2);
  w.raw('\n');
  batch.commit(w);
  batch.write('drei ü\n');
  batch.flushSync();
  t.same(
    kept.map((b) => b.toString()),
    ['one\ntwo 2\ndrei ü\n'],
  );
});

t.test('a batch handed on is never written again; lines too long for a batch still arrive, in order', async (t) => {
  const kept: Buffer[] = [];
  const dest: BufferedDestination = { write: (b) => void kept.push(b as Buffer), flush: (cb) => cb?.(), flushSync: () => {} };
  const batch = batchLines(dest, 32);
  batch.write(`${'a'.repeat(20)}\n`);
  batch.write(`${'b'.repeat(12)}\n`); // 34 bytes wait: handed on
  t.equal(kept.length, 1);
  const first = kept[0]!;
  const copy = Buffer.from(first);
  const w = batch.reserve(40);
  w!.raw('c'.repeat(30));
  batch.commit(w!);
  batch.write('d\n');
  t.same(first, copy, 'the batch handed on is left alone while the destination may still be writing it');
  t.equal(batch.reserve(1 << 20), undefined, 'no room is made for a line longer than the batch can hold');
  batch.write(`${'é'.repeat(6000)}\n`); // 18,003 bytes at most: too long for a batch, passed on by itself
  batch.write('e\n');
  batch.flushSync();
  t.same(
    kept.map((b) => b.toString()),
    [`${'a'.repeat(20)}\n${'b'.repeat(12)}\n`, `${'c'.repeat(30)}d\n`, `${'é'.repeat(6000)}\n`, 'e\n'],
  );
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
