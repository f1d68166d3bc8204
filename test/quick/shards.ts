// Quick test files (`*.quick.test.ts`) share test processes, six for all of them. Starting a test
// process (Node, tap, coverage) costs about half a second of CPU on the 2-core build machine, more
// than most of these files take: run one process each, they cost npm test about 30 s. A file may
// be quick when it takes seconds, not tens of seconds, starts no child process (no second
// appliance, PostgreSQL, named or Chromium), does not measure the process (memory, active handles)
// and leaves it as it found it (working directory, environment, listeners, loaded modules);
// anything else stays a `*.test.ts` of its own. Each file still runs alone:
// npm run test:one -- test/x/y.quick.test.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';

const QUICK_SHARDS = 6;

/** Every quick test file under `root`, sorted, with the extension this module was loaded as. */
function quickTestFiles(root: string, ext: string = path.extname(__filename)): string[] {
  const suffix = `.quick.test${ext}`;
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'fixtures') walk(full);
      else if (entry.isFile() && entry.name.endsWith(suffix)) found.push(full);
    }
  };
  walk(root);
  return found.sort();
}

/** Loads the files of shard `index` (1-based): their top-level tests run one after another. */
export function runQuickShard(index: number): void {
  const files = quickTestFiles(path.join(__dirname, '..'));
  // Finding none means the layout changed under this module: that must fail, not pass empty.
  if (files.length < QUICK_SHARDS) throw new Error(`found ${files.length} quick test files under ${path.join(__dirname, '..')}`);
  files.forEach((file, i) => {
    if (i % QUICK_SHARDS === index - 1) require(file);
  });
}
