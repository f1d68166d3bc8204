// Where the repository is, for tests that read its files (README, data, scripts, src/ for the
// layer rules) or run its build. Tests run compiled from dist/test/ (npm test) or as TypeScript
// from test/ (npx tap test/x.test.ts): this module sits in test/ or dist/test/ either way.
import path from 'node:path';

const compiled = path.basename(path.dirname(__dirname)) === 'dist';

/** The repository root (where package.json is). */
export const ROOT = path.resolve(__dirname, compiled ? '../..' : '..');

/** A companion module of a test (a child script, a fixture program), in the form this run uses. */
export function sibling(dir: string, name: string): string {
  return path.join(dir, name + path.extname(__filename));
}
