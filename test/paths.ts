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

/**
 * The flags that load TypeScript in this process (`--import X` or `--import=X`), for a child run
 * from source as this test is; none when running compiled.
 */
export function loaderFlags(): string[] {
  const flags: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--import' && argv[i + 1]?.includes('typescript')) flags.push(a, argv[++i]!);
    else if (a.includes('typescript') || a === '--enable-source-maps') flags.push(a);
  }
  return flags;
}
