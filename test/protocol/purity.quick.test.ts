// src/protocol is pure (preamble, STYLE.md P1): its modules import only node:buffer, node:crypto,
// other protocol modules and ../errors. This scans every import, export-from and require.
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { ROOT } from '../paths';

const SRC = resolve(ROOT, 'src');
const PROTOCOL = join(SRC, 'protocol');
const ERRORS = join(SRC, 'errors');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier in `text`: static imports/exports (also multi-line), require(), import(). */
function specifiersOf(text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\b(?:require|import)\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) out.push(m[1]!);
  return out;
}

/** Why `spec`, imported by `file`, breaks the rule, or undefined when it is allowed. */
function violation(file: string, spec: string): string | undefined {
  if (spec === 'node:buffer' || spec === 'node:crypto') return undefined;
  if (!spec.startsWith('.')) return `imports ${spec}`;
  const target = resolve(dirname(file), spec);
  if (target === ERRORS || target.startsWith(PROTOCOL + sep)) return undefined;
  return `imports ${relative(SRC, target)} outside src/protocol`;
}

t.test('the scanner finds every kind of import and flags the forbidden ones', async (t) => {
  const sample = [
    "import { a } from './a';",
    "import type { B } from '../b';",
    'import {\n  c,\n  d,\n} from "./c";',
    "export * from './e';",
    "import 'node:net';",
    "const fs = require('fs');",
    "const x = await import('node:dgram');",
  ].join('\n');
  t.same(specifiersOf(sample), ['./a', '../b', './c', './e', 'node:net', 'fs', 'node:dgram']);
  const f = join(PROTOCOL, 'kms', 'x.ts');
  t.equal(violation(f, '../../errors'), undefined);
  t.equal(violation(f, '../reader'), undefined);
  t.equal(violation(f, 'node:crypto'), undefined);
  t.ok(violation(f, 'crypto'), 'the bare name is not node:crypto');
  t.ok(violation(f, 'node:fs'));
  t.ok(violation(f, '../../host/ports'));
  t.ok(violation(f, 'pino'));
});

t.test('src/protocol imports only node:buffer, node:crypto, protocol modules and ../errors', async (t) => {
  const files = sourceFiles(PROTOCOL);
  t.ok(files.length >= 10, `${files.length} source files`);
  for (const codec of ['dns/message.ts', 'dns/names.ts', 'dns/addresses.ts', 'dns/wire.ts']) {
    t.ok(files.includes(join(PROTOCOL, codec)), `the DNS codec is scanned too: ${codec}`);
  }
  const offenders: string[] = [];
  let imports = 0;
  for (const file of files) {
    for (const spec of specifiersOf(readFileSync(file, 'utf8'))) {
      imports++;
      const why = violation(file, spec);
      if (why !== undefined) offenders.push(`${relative(SRC, file)}: ${why}`);
    }
  }
  t.ok(imports > files.length, `${imports} imports scanned`);
  t.same(offenders, []);
});
