// Writes the README's error table from the registry (src/errors.ts), between the markers
// <!-- errors:begin --> and <!-- errors:end -->. test/readme.quick.test.ts fails when they disagree.
// Run: npm run build && node dist/scripts/readme-errors.js
import fs from 'node:fs';
import path from 'node:path';
import { ERRORS, formatHresult, type ErrorSpec } from '../src/errors';
import { findPackageRoot } from '../src/catalog/load';

export const BEGIN = '<!-- errors:begin -->';
export const END = '<!-- errors:end -->';

function wireOf(s: ErrorSpec): string {
  switch (s.action) {
    case 'refuse':
      return `refusal ${formatHresult(s.hresult ?? 0)}`;
    case 'fault':
      return `RPC fault ${formatHresult(s.rpcFault ?? 0)}`;
    case 'nak':
      return `bind_nak reason ${s.nakReason ?? 0}`;
    case 'close':
      return 'connection closed';
    case 'none':
      return s.hresult === undefined ? '—' : `client shows ${formatHresult(s.hresult)}`;
  }
}

export function errorTable(): string {
  const rows = Object.entries(ERRORS).map(([code, s]) => `| \`${code}\` | ${wireOf(s)} | ${s.explain.replace(/\|/g, '\\|')} |`);
  return ['| code | on the wire / what the client shows | meaning and what to change |', '| --- | --- | --- |', ...rows].join('\n');
}

export function readmeWithTable(readme: string): string {
  const a = readme.indexOf(BEGIN);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md lacks the ${BEGIN} … ${END} markers`);
  return readme.slice(0, a + BEGIN.length) + '\n' + errorTable() + '\n' + readme.slice(b);
}

if (require.main === module) {
  const file = path.join(findPackageRoot(), 'README.md');
  fs.writeFileSync(file, readmeWithTable(fs.readFileSync(file, 'utf8')));
}
