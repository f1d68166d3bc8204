// What the server's memory is made of (issue 14: ≤ 80 MB peak RSS): the RSS of a bare Node with
// the server's flags, then of Node with each runtime dependency loaded (and used the way the
// appliance uses it), and the whole appliance started and idle.
// Each figure is a fresh process, measured after a full GC, so the rows add up only roughly
// (shared code pages are counted once per process).
// Alone: node dist/bench/footprint.js
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findPackageRoot } from '../src/catalog/load';
import { SERVER_ENV, SERVER_NODE_FLAGS } from '../src/server/node-flags';

const ROOT = findPackageRoot();

export interface FootprintRow {
  readonly what: string;
  readonly rssMb: number;
}

function rssOf(code: string): number {
  const script =
    `${code};\nglobal.gc();\n` +
    'setTimeout(() => { global.gc(); process.stdout.write(String(process.memoryUsage().rss)); process.exit(0); }, 200);';
  const out = execFileSync(process.execPath, [...SERVER_NODE_FLAGS, '--expose-gc', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...SERVER_ENV },
  });
  return Number(out) / 1048576;
}

const USES: readonly [string, string][] = [
  [
    'better-sqlite3 (an open database)',
    "const D = require('better-sqlite3'); const db = new D(':memory:'); db.exec('CREATE TABLE t (a)');",
  ],
  ['pino (a logger)', "require('pino')({}, require('node:fs').createWriteStream('/dev/null'));"],
  [
    'the configuration validated (the standalone validator `npm run build` writes, as serve uses it)',
    "require('./dist/src/config/validator').checkConfigObject({});",
  ],
  [
    'ajv compiling the configuration schema (what serve did before; now only where that module is missing)',
    "const Ajv = require('ajv').default; const a = new Ajv({ allErrors: true, verbose: true, useDefaults: true, strict: true });" +
      "a.addKeyword({ keyword: 'x-message', schemaType: 'string' }); a.addKeyword({ keyword: 'x-related', schemaType: 'array' });" +
      "for (const [n, f] of Object.entries(require('./dist/src/config/format-validators').CONFIG_FORMAT_VALIDATORS)) a.addFormat(n, f);" +
      "global.v = a.compile(require('./dist/src/config/schema').CONFIG_SCHEMA);",
  ],
  ['yaml', "require('yaml').parse('a: 1');"],
  ['prom-client (metrics)', "require('prom-client');"],
  ['node-forge (admin TLS certificate)', "require('node-forge');"],
  ['pg (fleet reporting)', "require('pg');"],
  ['multicast-dns', "require('multicast-dns');"],
  ['the product catalogue loaded', "require('./dist/src/catalog/load').loadCatalog();"],
];

async function applianceIdleRss(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-footprint-'));
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(config, 'admin:\n  listen: []\n');
  const child = spawn(
    process.execPath,
    [
      ...SERVER_NODE_FLAGS,
      path.join(ROOT, 'dist', 'src', 'cli', 'main.js'),
      'serve',
      '--config',
      config,
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      dir,
    ],
    { stdio: 'ignore', env: { ...process.env, ...SERVER_ENV } },
  );
  try {
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const ok = await new Promise<boolean>((resolve) => {
        const c = net.connect(port, '127.0.0.1', () => (c.destroy(), resolve(true)));
        c.once('error', () => resolve(false));
      });
      if (ok) break;
    }
    await new Promise((r) => setTimeout(r, 1000));
    const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } finally {
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureFootprint(): Promise<{ baselineMb: number; rows: FootprintRow[]; applianceIdleMb: number }> {
  const baselineMb = rssOf('');
  const rows = USES.map(([what, code]) => ({ what, rssMb: rssOf(code) - baselineMb }));
  return { baselineMb, rows, applianceIdleMb: await applianceIdleRss() };
}

export function formatFootprint(f: Awaited<ReturnType<typeof measureFootprint>>): string {
  return [
    `memory: bare node ${f.baselineMb.toFixed(1)} MB RSS; the appliance started and idle ${f.applianceIdleMb.toFixed(1)} MB; ` +
      'each part on top of bare node:',
    ...f.rows.map((r) => `  +${r.rssMb.toFixed(1).padStart(5)} MB  ${r.what}`),
  ].join('\n');
}

if (require.main === module) {
  measureFootprint().then(
    (f) => process.stdout.write(`${formatFootprint(f)}\n`),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
