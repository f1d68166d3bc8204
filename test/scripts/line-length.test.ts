// scripts/line-length.mjs, the lint step that keeps every source line within 140 columns.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ROOT } from '../paths';

const SCRIPT = path.join(ROOT, 'scripts', 'line-length.mjs');

function run(root: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [path.join(root, 'scripts', 'line-length.mjs')], { encoding: 'utf8' });
}

/** A line of exactly `columns` code points. */
const line = (columns: number, char = 'x'): string => `// ${char.repeat(columns - 3)}`;

t.test('lists file:line of each line over 140 columns in src, test, bench and scripts, and exits 1', async (t) => {
  const root = t.testdir({
    scripts: {},
    src: { 'a.ts': `export {};\n${line(141)}\n${line(140)}\n`, deep: { 'b.ts': `\n\n${line(200)}\r\n` } },
    test: { 'c.test.ts': `${line(141)}\n` },
    bench: { 'd.mjs': `${line(150)}\n` },
    // Outside the checked folders or file types: not listed.
    docs: { 'e.ts': `${line(300)}\n` },
    'f.ts': `${line(300)}\n`,
    scripts2: { 'g.json': `"${'x'.repeat(300)}"\n` },
  });
  fs.writeFileSync(path.join(root, 'src', 'h.json'), `"${'x'.repeat(300)}"\n`);
  fs.copyFileSync(SCRIPT, path.join(root, 'scripts', 'line-length.mjs'));
  const r = run(root);
  t.equal(r.status, 1);
  t.equal(r.stdout, '');
  const listed = r.stderr.split('\n').filter((l) => /^\S+:\d+: \d+ columns$/.test(l));
  t.same(listed.sort(), [
    'bench/d.mjs:1: 150 columns',
    'src/a.ts:2: 141 columns',
    'src/deep/b.ts:3: 200 columns',
    'test/c.test.ts:1: 141 columns',
  ]);
  t.match(r.stderr, /4 line\(s\) over 140 columns/);
});

t.test('counts columns as code points: 140 arrows (420 bytes in UTF-8) pass, and a tree within the limit exits 0 silently', async (t) => {
  const root = t.testdir({
    scripts: {},
    src: { 'a.ts': `${line(140, '→')}\n${line(140, 'µ')}\n${line(140)}\n`, 'b.ts': '' },
  });
  fs.copyFileSync(SCRIPT, path.join(root, 'scripts', 'line-length.mjs'));
  t.equal(Buffer.byteLength(line(140, '→')), 3 + 137 * 3);
  const r = run(root);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  t.equal(r.stdout, '');

  fs.appendFileSync(path.join(root, 'src', 'b.ts'), `${line(141, '→')}\n`);
  const after = run(root);
  t.equal(after.status, 1);
  t.match(after.stderr, /^src\/b\.ts:1: 141 columns$/m);
});
