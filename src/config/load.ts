// Reads the configuration file: YAML with positions, merged over DEFAULTS, validated against
// CONFIG_SCHEMA with every error reported at once as "<file>:<line>: <field>: <what is allowed>",
// and returned deep-frozen. No file at all means the embedded defaults. A file that is not a
// regular file, too large, nested too deep or expanding too many YAML aliases is refused before
// it can hang (a FIFO), exhaust memory or the stack: SIGHUP reloads read it while serving.
import fs from 'node:fs';
import path from 'node:path';
import { isAlias, isCollection, isPair, isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { ConfigError } from '../errors';
import { DEFAULTS, deepFreeze, type AppConfig } from './defaults';
import { checkConfigObject, formatDottedPath, pointerToPath } from './validator';
import { lineOfPath } from './yaml-positions';

/** A configuration with every field and long comments is about 20 KiB. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** Nesting of mappings and lists: the schema needs 5; the rest is an attack or an accident. */
const MAX_CONFIG_DEPTH = 32;
/** How often aliases may be expanded (yaml's maxAliasCount): a few anchors are plenty. */
const MAX_CONFIG_ALIASES = 100;

function limitError(file: string, problem: string): ConfigError {
  const line = `${file}: ${problem}`;
  return new ConfigError('KMS_ERR_CONFIG_LIMIT', line, { file, errors: [line] });
}

/** The configuration from `file`, or DEFAULTS when no file is given. */
export function loadConfig(file?: string): AppConfig {
  if (file === undefined) return DEFAULTS;
  return validateConfigText(readConfigFile(file), path.basename(file));
}

/**
 * The file's text. Opened non-blocking so a FIFO or device cannot hang the open, then checked
 * with fstat on the very descriptor that is read (no race with a swapped file).
 */
function readConfigFile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const line = `${file}: no such file`;
      throw new ConfigError('KMS_ERR_CONFIG_NOT_FOUND', line, { file, errors: [line] });
    }
    const line = `${file}: cannot be read (${code ?? String(err)})`;
    throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', line, { file, errors: [line] });
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) {
      const line = `${file}: cannot be read (EISDIR)`;
      throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', line, { file, errors: [line] });
    }
    if (!st.isFile()) throw limitError(file, `is not a regular file (${kindOf(st)}); give the path of a YAML file`);
    if (st.size > MAX_CONFIG_BYTES)
      throw limitError(file, `is ${st.size} bytes; a configuration file may be at most ${MAX_CONFIG_BYTES} (1 MiB)`);
    const buf = Buffer.alloc(Math.min(st.size, MAX_CONFIG_BYTES) + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > MAX_CONFIG_BYTES) throw limitError(file, `grew beyond ${MAX_CONFIG_BYTES} bytes while being read`);
      if (n === buf.length) break;
    }
    if (n > st.size) {
      // Growing while read (rewritten in place during a SIGHUP), or a /proc-like file whose size says
      // nothing: what was read is not the file, and parsing it could load half a configuration.
      const line = `${file}: has more bytes than its size (${st.size}) said: it is being written, or is not an ordinary file; try again`;
      throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', line, { file, errors: [line] });
    }
    return buf.subarray(0, n).toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const line = `${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
    throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', line, { file, errors: [line] });
  } finally {
    fs.closeSync(fd);
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}

/**
 * The deepest nesting of flow brackets, or of block indentation in steps, found by a linear scan
 * before parsing: the parser recurses per level, so depth is refused before it could overflow.
 */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let quote = '';
  let comment = false;
  let lineStart = true;
  let indent = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      comment = false;
      lineStart = true;
      indent = 0;
      if (quote === "'") continue;
      continue;
    }
    if (lineStart) {
      if (c === ' ' || c === '-') {
        indent++;
        continue;
      }
      lineStart = false;
      // Two columns per level is the narrowest block nesting people write.
      if (c !== '#') max = Math.max(max, Math.floor(indent / 2) + depth);
    }
    if (comment) continue;
    if (quote !== '') {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = '';
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) comment = true;
    else if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return max;
}

/** Parses and validates configuration text; `fileName` prefixes every error line. */
export function validateConfigText(text: string, fileName: string): AppConfig {
  if (nestingDepth(text) > MAX_CONFIG_DEPTH)
    throw limitError(fileName, `nests mappings or lists more than ${MAX_CONFIG_DEPTH} levels deep`);
  const lines = new LineCounter();
  // prettyErrors off: the error text stays one line, and positions come from the LineCounter.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const errors = firstErrors(
      doc.errors.map((e) => `${fileName}:${lines.linePos(e.pos[0]).line}: ${firstLine(e.message)}`),
      fileName,
    );
    throw new ConfigError('KMS_ERR_CONFIG_SYNTAX', errors.join('\n'), { file: fileName, errors });
  }

  const structural = firstErrors(structureErrors(doc, lines, fileName), fileName);
  if (structural.length > 0) throw new ConfigError('KMS_ERR_CONFIG_SYNTAX', structural.join('\n'), { file: fileName, errors: structural });

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_CONFIG_ALIASES });
  } catch (err) {
    // yaml refuses an alias bomb with a ReferenceError; a deep structure could still end in a RangeError.
    if (err instanceof ReferenceError)
      throw limitError(fileName, `expands YAML aliases more than ${MAX_CONFIG_ALIASES} times (an alias bomb?)`);
    if (err instanceof RangeError) throw limitError(fileName, `nests mappings or lists more than ${MAX_CONFIG_DEPTH} levels deep`);
    throw err;
  }
  // An empty file (or one with every line commented out) means all defaults.
  const merged = raw === null || raw === undefined ? cloneDefaults() : mergeOver(cloneDefaults(), raw);
  const problems = checkConfigObject(merged);
  if (problems.length > 0) {
    const placed = problems.map((p) => ({
      line: lineOfPath(doc, lines, p.path, p.related.map(pointerToPath)),
      text: `${formatDottedPath(p.path)}: ${p.message}`,
    }));
    placed.sort((a, b) => a.line - b.line);
    const errors = firstErrors([...new Set(placed.map((p) => `${fileName}:${p.line}: ${p.text}`))], fileName);
    throw new ConfigError('KMS_ERR_CONFIG_INVALID', errors.join('\n'), { file: fileName, errors });
  }
  return deepFreeze(merged as AppConfig);
}

/**
 * What the parser accepts but converting it would misreport: an alias whose anchor is not set
 * before it (yaml throws the same ReferenceError class as for an alias bomb), and a key that is a
 * list or mapping (yaml stringifies it with a Node warning on the terminal).
 */
function structureErrors(doc: Document, lines: LineCounter, fileName: string): string[] {
  const anchors = new Set<string>();
  const errors: string[] = [];
  const at = (node: { range?: unknown }): number => lines.linePos((node.range as [number] | undefined)?.[0] ?? 0).line;
  visit(doc, (_key, node) => {
    if (isAlias(node)) {
      if (!anchors.has(node.source))
        errors.push(`${fileName}:${at(node)}: alias *${node.source} names no anchor &${node.source} set before it`);
    } else if (isPair(node)) {
      if (node.key !== null && !isScalar(node.key))
        errors.push(`${fileName}:${at(node.key as object)}: a key must be a name, not a list or mapping`);
    } else if ((isScalar(node) || isCollection(node)) && node.anchor) {
      anchors.add(node.anchor);
    }
  });
  return errors;
}

/** Error lines shown for one file: the rest are most often the same mistake again. */
const MAX_ERROR_LINES = 50;

/**
 * The first MAX_ERROR_LINES lines and a count of the rest: a generated file with thousands of
 * mistakes made one terminal screen per hundred lines, and on SIGHUP a log line of megabytes.
 */
function firstErrors(errors: string[], fileName: string): string[] {
  if (errors.length <= MAX_ERROR_LINES) return errors;
  const more = errors.length - MAX_ERROR_LINES;
  return [...errors.slice(0, MAX_ERROR_LINES), `${fileName}: and ${more} more errors (fix these first, then check again)`];
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
