// Reads the configuration file: YAML with positions, merged over DEFAULTS, validated against
// CONFIG_SCHEMA with every error reported at once as "<file>:<line>: <field>: <what is allowed>",
// and returned deep-frozen. No file at all means the embedded defaults.
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError } from '../errors';
import { DEFAULTS, deepFreeze, type AppConfig } from './defaults';
import { checkConfigObject, formatDottedPath, pointerToPath } from './validator';
import { lineOfPath } from './yaml-positions';

/** The configuration from `file`, or DEFAULTS when no file is given. */
export function loadConfig(file?: string): AppConfig {
  if (file === undefined) return DEFAULTS;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const line = `${file}: no such file`;
      throw new ConfigError('KMS_ERR_CONFIG_NOT_FOUND', line, { file, errors: [line] });
    }
    const line = `${file}: cannot be read (${code ?? String(err)})`;
    throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', line, { file, errors: [line] });
  }
  return validateConfigText(text, path.basename(file));
}

/** Parses and validates configuration text; `fileName` prefixes every error line. */
export function validateConfigText(text: string, fileName: string): AppConfig {
  const lines = new LineCounter();
  // prettyErrors off: the error text stays one line, and positions come from the LineCounter.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const errors = doc.errors.map((e) => `${fileName}:${lines.linePos(e.pos[0]).line}: ${firstLine(e.message)}`);
    throw new ConfigError('KMS_ERR_CONFIG_SYNTAX', errors.join('\n'), { file: fileName, errors });
  }

  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  // An empty file (or one with every line commented out) means all defaults.
  const merged = raw === null || raw === undefined ? cloneDefaults() : mergeOver(cloneDefaults(), raw);
  const problems = checkConfigObject(merged);
  if (problems.length > 0) {
    const placed = problems.map((p) => ({
      line: lineOfPath(doc, lines, p.path, p.related.map(pointerToPath)),
      text: `${formatDottedPath(p.path)}: ${p.message}`,
    }));
    placed.sort((a, b) => a.line - b.line);
    const errors = [...new Set(placed.map((p) => `${fileName}:${p.line}: ${p.text}`))];
    throw new ConfigError('KMS_ERR_CONFIG_INVALID', errors.join('\n'), { file: fileName, errors });
  }
  return deepFreeze(merged as AppConfig);
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function cloneDefaults(): Record<string, unknown> {
  return structuredClone(DEFAULTS) as unknown as Record<string, unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Deep merge of the file over the defaults: mappings merge field by field, everything else
 * (lists included) replaces. A section written with no fields under it (`kms:` alone, all its
 * lines commented out) keeps its defaults. Wrong types are kept as written so the schema reports
 * them.
 */
function mergeOver(base: unknown, over: unknown): unknown {
  if (over === null && isPlainObject(base)) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    // defineProperty: a key named __proto__ must stay a (rejected) field, not a prototype.
    Object.defineProperty(out, k, { value: mergeOver(base[k], v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
