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
    // Stands in for the config validator's generator, which runs after each compile.
    scripts: {
      'build-config-validator.mjs': `import fs from 'node:fs';
fs.appendFileSync(new URL('../validator-runs', import.meta.url), 'v');
`,
    },
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

  const validatorRuns = () =>
    fs.existsSync(path.join(root, 'validator-runs')) ? fs.readFileSync(path.join(root, 'validator-runs'), 'utf8').length : 0;
  t.equal(run().status, 0);
  t.equal(runs(), 1, 'no build yet: compiles');
  t.equal(validatorRuns(), 1, 'and generates the config validator');
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
  t.equal(validatorRuns(), 2, 'the validator is generated only after a compile that worked');
});
