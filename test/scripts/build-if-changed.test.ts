// `npm start`'s prestart compiles only when a source changed since the last successful build.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ROOT } from '../paths';
import { withoutTapRecorder } from '../plain-child';

const SCRIPT = path.join(ROOT, 'scripts', 'build-if-changed.mjs');

t.test('compiles once, skips while nothing changed, compiles again after an edit', async (t) => {
  const root = t.testdir({
    scripts: {},
    src: { cli: { 'main.ts': 'export {};\n' } },
    'tsconfig.json': '{}',
    'tsconfig.start.json': '{}',
    'package.json': '{}',
    // Stands in for tsc: counts its runs and emits the program.
    node_modules: {
      typescript: {
        bin: {
          tsc: `const fs = require('node:fs'); const path = require('node:path');
const root = path.resolve(__dirname, '..', '..', '..');
fs.mkdirSync(path.join(root, 'dist/src/cli'), { recursive: true });
fs.writeFileSync(path.join(root, 'dist/src/cli/main.js'), '');
fs.appendFileSync(path.join(root, 'tsc-runs'), 'x');
process.exit(fs.existsSync(path.join(root, 'fail')) ? 2 : 0);
`,
        },
      },
    },
  });
  fs.copyFileSync(SCRIPT, path.join(root, 'scripts', 'build-if-changed.mjs'));
  const run = () =>
    spawnSync(...withoutTapRecorder(process.execPath, [path.join(root, 'scripts', 'build-if-changed.mjs')]), { encoding: 'utf8' });
  const runs = () => (fs.existsSync(path.join(root, 'tsc-runs')) ? fs.readFileSync(path.join(root, 'tsc-runs'), 'utf8').length : 0);

  // Times are set explicitly: everything old, the stamp of a build after it, an edit after that.
  const at = (p: string, secondsAgo: number) => {
    const d = new Date(Date.now() - secondsAgo * 1000);
    fs.utimesSync(path.join(root, p), d, d);
  };
  for (const p of ['src/cli/main.ts', 'src/cli', 'src', 'tsconfig.json', 'tsconfig.start.json', 'package.json']) at(p, 300);
  const stamp = 'dist/.start-stamp';

  t.equal(run().status, 0);
  t.equal(runs(), 1, 'no build yet: compiles');
  at(stamp, 200);
  t.equal(run().status, 0);
  t.equal(runs(), 1, 'nothing changed: no compile');
  at('src/cli/main.ts', 100);
  t.equal(run().status, 0);
  t.equal(runs(), 2, 'a source changed: compiles');
  at(stamp, 50);
  t.equal(run().status, 0);
  t.equal(runs(), 2, 'and not again');
  // A failed compile leaves no new stamp: the next start tries again instead of running stale code.
  fs.writeFileSync(path.join(root, 'fail'), '');
  at('src/cli/main.ts', 10);
  t.equal(run().status, 2);
  t.equal(run().status, 2);
  t.equal(runs(), 4, 'compiled again after the failure');
});
