// The folders of src/ and what each may import: dependencies point inward (STYLE P1), so the
// folders form no cycle. A new import across folders either fits this table or changes it on
// purpose, in review. Modules at the top of src/ (errors.ts, package-root.ts, version.ts) are
// shared by all; test/protocol/purity.quick.test.ts adds protocol/'s stricter rules (no I/O modules).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ROOT } from './paths';

const SRC = path.join(ROOT, 'src');

const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  protocol: [],
  net: ['protocol'],
  config: [],
  'client-config': [],
  catalog: ['protocol'],
  host: ['catalog', 'protocol'],
  client: ['catalog', 'protocol'],
  logging: ['config', 'host', 'protocol'],
  metrics: ['config', 'host'],
  store: ['catalog', 'config', 'host', 'protocol'],
  server: ['catalog', 'config', 'host', 'logging', 'metrics', 'net', 'protocol'],
  dns: ['catalog', 'config', 'host', 'logging', 'metrics', 'net', 'protocol'],
  admin: ['catalog', 'config', 'host', 'logging', 'metrics', 'net', 'protocol', 'store'],
  fleet: ['catalog', 'config', 'host', 'logging', 'metrics', 'protocol', 'store'],
  cli: [
    'admin',
    'catalog',
    'client',
    'client-config',
    'config',
    'dns',
    'fleet',
    'host',
    'logging',
    'metrics',
    'net',
    'protocol',
    'server',
    'store',
  ],
};

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The src/ folder a path is in, or undefined for a module at the top of src/. */
function folderOf(file: string): string | undefined {
  const parts = path.relative(SRC, file).split(path.sep);
  return parts.length > 1 ? parts[0] : undefined;
}

t.test('every folder of src/ imports only what the table allows', async (t) => {
  const folders = new Set(
    fs
      .readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name),
  );
  for (const f of folders) t.ok(f in ALLOWED, `src/${f}/ has a row in the table`);
  for (const file of tsFiles(SRC)) {
    const from = folderOf(file);
    if (from === undefined) continue;
    const text = fs.readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const to = folderOf(path.resolve(path.dirname(file), spec!));
      if (to === undefined || to === from) continue;
      t.ok(
        ALLOWED[from]?.includes(to),
        `${path.relative(SRC, file)} imports ${to}/ (allowed from ${from}/: ${ALLOWED[from]?.join(', ') || 'nothing'})`,
      );
    }
  }
});

t.test('the table itself has no cycle', async (t) => {
  const visiting = new Set<string>();
  const done = new Set<string>();
  const cycle = (f: string): boolean => {
    if (done.has(f)) return false;
    if (visiting.has(f)) return true;
    visiting.add(f);
    const found = (ALLOWED[f] ?? []).some(cycle);
    visiting.delete(f);
    done.add(f);
    return found;
  };
  for (const f of Object.keys(ALLOWED)) t.notOk(cycle(f), `no cycle through ${f}/`);
});
