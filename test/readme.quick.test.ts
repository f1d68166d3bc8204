// The README, the error registry, the configuration schema and the CLI agree (STYLE P7): every
// error code is documented with its wire reaction, the configuration reference is exactly what
// `config defaults` prints, every command is listed, and the README opens with the two commands.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ERRORS, isErrorCode } from '../src/errors';
import { configExample } from '../src/config/example';
import { COMMANDS } from '../src/cli/commands';
import { errorTable, BEGIN, END } from '../scripts/readme-errors';
import { ROOT } from './paths';

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

t.test('the README opens with the set-up-and-run and the test commands', async (t) => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const commands = firstBlock
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('#')[0]!.trim());
  t.same(commands, ['npm ci && npm start', 'npm ci && npm test']);
  const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
  t.match(ci, /^npm ci$/m, '.ci/run sets up like the README');
  t.match(ci, /^npm test\b/m, 'and runs the same test command');
});

t.test('the error table is generated from the registry and lists every code once', async (t) => {
  const section = readme.slice(readme.indexOf(BEGIN) + BEGIN.length, readme.indexOf(END)).trim();
  t.equal(section, errorTable(), 'run `node dist/scripts/readme-errors.js` after changing src/errors.ts');
  const mentioned = new Set(readme.match(/KMS_ERR_[A-Z0-9_]+/g));
  for (const code of mentioned) t.ok(isErrorCode(code), `${code} named in the README exists`);
  for (const code of Object.keys(ERRORS)) t.ok(mentioned.has(code), `${code} is documented`);
});

t.test('every refusal code maps to the HRESULT a Windows client shows', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    if (spec.action === 'refuse') t.type(spec.hresult, 'number', `${code} has an HRESULT`);
    if (spec.action === 'fault') t.type(spec.rpcFault, 'number', `${code} has a fault status`);
    if (spec.action === 'nak') t.type(spec.nakReason, 'number', `${code} has a bind_nak reason`);
    t.match(code, /^KMS_ERR_[A-Z0-9]+_[A-Z0-9_]+$/, `${code} follows KMS_ERR_<AREA>_<DETAIL>`);
  }
});

t.test('the configuration reference is exactly `config defaults`', async (t) => {
  const block = /<!-- config:begin -->\n```yaml\n([\s\S]*?)```\n<!-- config:end -->/.exec(readme)?.[1];
  t.equal(block, configExample());
});

t.test('every command is documented', async (t) => {
  for (const c of COMMANDS) t.ok(readme.includes('`' + c.name), `${c.name} appears in the README`);
});

const protocol = fs.readFileSync(path.join(ROOT, 'docs', 'PROTOCOL.md'), 'utf8');

/** Every file below `dir` with one of the extensions, skipping what git ignores. */
function filesBelow(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBelow(p, ext));
    else if (ext.test(e.name)) out.push(p);
  }
  return out;
}

/** "§7.4" exists as a heading "### 7.4"; "§1.5" may also be item 5 of section 1's list. */
function sectionExists(section: string): boolean {
  const [major, minor] = section.split('.');
  if (minor === undefined) return new RegExp(`^## ${major}\\. `, 'm').test(protocol);
  if (new RegExp(`^### ${major}\\.${minor} `, 'm').test(protocol)) return true;
  const start = protocol.search(new RegExp(`^## ${major}\\. `, 'm'));
  const end = protocol.indexOf('\n## ', start + 1);
  return start >= 0 && new RegExp(`^${minor}\\. `, 'm').test(protocol.slice(start, end < 0 ? undefined : end));
}

t.test('every README link and PROTOCOL.md citation resolves inside the repository', async (t) => {
  for (const [, target] of readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
    if (/^[a-z]+:/.test(target!)) continue; // a web address
    t.ok(fs.existsSync(path.join(ROOT, target!)), `README link ${target} exists`);
  }
  t.match(readme, '](docs/PROTOCOL.md)', 'the README links the protocol notes it cites');
  const sources = [path.join(ROOT, 'README.md'), ...filesBelow(path.join(ROOT, 'src'), /\.ts$/)];
  for (const file of sources) {
    const text = fs.readFileSync(file, 'utf8');
    for (const [, section] of text.matchAll(/PROTOCOL\.md\)? §(\d+(?:\.\d+)?)/g)) {
      t.ok(sectionExists(section!), `${path.relative(ROOT, file)} cites §${section}, which docs/PROTOCOL.md has`);
    }
  }
});
