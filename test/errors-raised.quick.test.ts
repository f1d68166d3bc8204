// The error registry tells the truth: every code it lists is raised (or logged) somewhere in
// src/, outside the registry itself, and every KMS_ERR_ code the sources use is registered. (The
// README test checks that every code is documented.)
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ERRORS } from '../src/errors';
import { ROOT } from './paths';

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

const REGISTRY = path.join(ROOT, 'src', 'errors.ts');
const used = new Map<string, string>();
for (const file of sourceFiles(path.join(ROOT, 'src'))) {
  if (file === REGISTRY) continue;
  // A code as a string literal; a prefix test (startsWith('KMS_ERR_CONFIG')) or a family named in a
  // comment (KMS_ERR_CLIENT_*) is not a code.
  for (const [, code] of fs.readFileSync(file, 'utf8').matchAll(/(?<!startsWith\()['"`](KMS_ERR_[A-Z0-9_]+)['"`]/g)) {
    used.set(code!, path.relative(ROOT, file));
  }
}

t.test('every registered code is raised somewhere', async (t) => {
  const never = Object.keys(ERRORS).filter((code) => !used.has(code));
  t.same(never, [], 'codes in src/errors.ts that no module raises or logs (remove them, or raise them)');
});

t.test('every code the sources use is registered', async (t) => {
  const unknown = [...used].filter(([code]) => !(code in ERRORS)).map(([code, file]) => `${code} (${file})`);
  t.same(unknown, []);
});
