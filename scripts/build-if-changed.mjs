#!/usr/bin/env node
// `npm start`'s prestart: compile src/ only when something it depends on changed since the last
// successful build (dist/.start-stamp), so an unchanged checkout starts listening at once. The
// compile itself is incremental (tsconfig.start.json), so a change to one file is quick too.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const stamp = path.join(root, 'dist', '.start-stamp');
const inputs = ['src', 'tsconfig.json', 'tsconfig.start.json', 'package.json', 'package-lock.json'];

function newest(p) {
  let st;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs; // a deleted or renamed file changes its directory's mtime
  for (const e of fs.readdirSync(p)) max = Math.max(max, newest(path.join(p, e)));
  return max;
}

const built = fs.existsSync(path.join(root, 'dist', 'src', 'cli', 'main.js')) ? newest(stamp) : 0;
const changed = Math.max(...inputs.map((i) => newest(path.join(root, i))));
if (built > 0 && changed <= built) process.exit(0);

process.stderr.write('prestart: sources changed since the last build; compiling src/ (incremental)\n');
const tsc = spawnSync(
  process.execPath,
  [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.start.json')],
  { stdio: 'inherit' },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
const validator = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-config-validator.mjs')], { stdio: 'inherit' });
if (validator.status !== 0) process.exit(validator.status ?? 1);
fs.writeFileSync(stamp, `${new Date().toISOString()}\n`);
