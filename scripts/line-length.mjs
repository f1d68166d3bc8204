// Lists file:line for every line over 140 columns in the sources and exits 1 if there is one.
// Biome formats at 140 columns but cannot split a long string or template literal; this check covers those.
import fs from 'node:fs';
import path from 'node:path';

const MAX_COLUMNS = 140;
const FOLDERS = ['src', 'test', 'bench', 'scripts'];
const EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function* sourceFiles(dir) {
  if (!fs.existsSync(dir)) return;
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(full);
    else if (entry.isFile() && EXTENSIONS.some((ext) => entry.name.endsWith(ext))) yield full;
  }
}

// A column is a code point, not a UTF-16 unit or a byte: "→" or "µ" takes one column in an editor.
const columns = (line) => [...line].length;

const found = [];
for (const folder of FOLDERS) {
  for (const file of sourceFiles(path.join(root, folder))) {
    fs.readFileSync(file, 'utf8')
      .split(/\r?\n/)
      .forEach((line, i) => {
        const width = columns(line);
        if (width > MAX_COLUMNS) found.push(`${path.relative(root, file)}:${i + 1}: ${width} columns`);
      });
  }
}

if (found.length > 0) {
  process.stderr.write(`${found.join('\n')}\n`);
  process.stderr.write(`${found.length} line(s) over ${MAX_COLUMNS} columns: split long strings with + or at an interpolation\n`);
  process.exit(1);
}
