// The validator of CONFIG_SCHEMA, and the translation of its errors into the admin's words: a
// dotted field path and what is allowed there.
// The validator is ajv's compilation of the schema. `npm run build` also writes it out as a
// standalone module beside this file (scripts/build-config-validator.mjs), so that `serve` never
// loads ajv's compiler nor produces the compile's garbage (together about 5 MB of a server's RSS,
// README "Memory"). Where that module is missing or was generated from another schema (running
// from src/, or a schema edited since the last build), the schema is compiled here instead, with
// the same options: the same checks, defaults and errors either way.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorObject, Options, ValidateFunction } from 'ajv';
import * as formatValidators from './format-validators';
import { CONFIG_FORMAT_VALIDATORS } from './format-validators';
import { explainFormat } from './formats';
import { CONFIG_SCHEMA } from './schema';

/** One rule a configuration breaks, before it is placed on a line of the file. */
export interface ConfigProblem {
  /** Path segments from the root, e.g. ['kms', 'listen', 0]. */
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** Other fields (JSON pointers) whose line to show when `path` is not in the file. */
  readonly related: readonly string[];
}

const AJV_OPTIONS: Readonly<Options> = Object.freeze({
  allErrors: true, // every error at once, not the first
  verbose: true, // errors carry their schema and data, which the messages need
  useDefaults: true, // fills fields inside list entries; sections are merged over DEFAULTS before
  strict: true,
});

/** Where `npm run build` writes the standalone validator: dist/src/config/, beside validator.js. */
export const STANDALONE_VALIDATOR_FILE = join(__dirname, 'config-validator.standalone.js');

/** What a standalone module was generated from: the schema, the options and the format names. */
function schemaDigest(): string {
  const input = JSON.stringify([CONFIG_SCHEMA, AJV_OPTIONS, Object.keys(CONFIG_FORMAT_VALIDATORS)]);
  return createHash('sha256').update(input).digest('hex');
}

/** The standalone validator in `file`, or undefined when there is none or it fits another schema. */
export function loadStandaloneValidator(file = STANDALONE_VALIDATOR_FILE): ValidateFunction | undefined {
  let source: string;
  try {
    source = readFileSync(file, 'latin1'); // the generator writes ASCII only
  } catch {
    return undefined;
  }
  // Evaluated here rather than require()d: then only `kept` holds its code and schema, and both
  // are collected once it is let go (a required module stays in require.cache and its parent's children).
  const module = { exports: {} as unknown };
  const requireFromHere = (id: string): unknown => (id === './format-validators' ? formatValidators : require(id));
  new Function('require', 'module', 'exports', source)(requireFromHere, module, module.exports);
  const validate = module.exports as ValidateFunction & { readonly schemaDigest?: unknown };
  return validate.schemaDigest === schemaDigest() ? validate : undefined;
}

/**
 * How long a validator outlives its last use: the loads of one burst share it. Loading the
 * standalone one again costs about 10 ms; a server lets it go a second after start, before its
 * first heavy load makes V8 size the old generation from what is live.
 */
const KEEP_LOADED_MS = 1_000;
let kept: { readonly validate: ValidateFunction; readonly kind: 'standalone' | 'compiled'; readonly drop: NodeJS.Timeout } | undefined;

// Loaded once per burst of loads (a command, a test file), then let go: a server running for years
// would otherwise keep its code and schema for nothing between its rare loads (start-up, SIGHUP).
function validator(): ValidateFunction {
  if (kept) {
    kept.drop.refresh();
    return kept.validate;
  }
  const standalone = loadStandaloneValidator();
  const validate = standalone ?? compileValidator().validate;
  const drop = setTimeout(() => (kept = undefined), KEEP_LOADED_MS).unref();
  kept = { validate, kind: standalone ? 'standalone' : 'compiled', drop };
  return validate;
}

/** Which validator checkConfigObject uses now: the one `npm run build` generated, or compiled here. */
export function configValidatorKind(): 'standalone' | 'compiled' {
  validator();
  return kept!.kind;
}

function compileValidator(extra: Options = {}, schema: object = CONFIG_SCHEMA) {
  // Loaded here only: a server started from a build never needs ajv's compiler.
  const { default: Ajv } = require('ajv') as typeof import('ajv');
  const ajv = new Ajv({ ...AJV_OPTIONS, ...extra });
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-related', schemaType: 'array' });
  for (const [name, format] of Object.entries(CONFIG_FORMAT_VALIDATORS)) ajv.addFormat(name, format);
  return { ajv, validate: ajv.compile(schema) };
}

/** The standalone module's source: the compiled validator as code, its formats required by file name. */
export function standaloneValidatorSource(): string {
  const { _ } = require('ajv') as typeof import('ajv');
  const { default: standaloneCode } = require('ajv/dist/standalone') as typeof import('ajv/dist/standalone');
  const options = { code: { source: true, formats: _`require("./format-validators").CONFIG_FORMAT_VALIDATORS` } };
  const { ajv, validate } = compileValidator(options, withoutAnnotations(CONFIG_SCHEMA) as object);
  const source =
    '// Generated by `npm run build` (scripts/build-config-validator.mjs) from src/config/schema.ts: do not edit.\n' +
    `${standaloneCode(ajv, validate)}\nmodule.exports.schemaDigest = ${JSON.stringify(schemaDigest())};\n`;
  // Non-ASCII only occurs in string literals: escaped, the source is a one-byte string in V8's heap, half the size.
  return source.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Keywords the validator never reads; left out of the generated module's copy of the schema. */
const ANNOTATIONS = new Set(['description', 'examples']);
/** Keywords whose value is a map of names to schemas, not a schema: the names are kept. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties']);
/** Keywords whose value is data, not a schema. */
const DATA = new Set(['default', 'const', 'enum']);

function withoutAnnotations(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutAnnotations);
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(key)) continue;
    if (DATA.has(key)) out[key] = value;
    else if (SCHEMA_MAPS.has(key)) {
      out[key] = Object.fromEntries(Object.entries(value as object).map(([name, sub]) => [name, withoutAnnotations(sub)]));
    } else out[key] = withoutAnnotations(value);
  }
  return out;
}

/** Validates (and fills list-entry defaults into) `data`; returns every problem found. */
export function checkConfigObject(data: unknown): ConfigProblem[] {
  return problemsFrom(validator(), data);
}

/** Runs `validate` over `data` and words its errors; exported for the test that compares validators. */
export function problemsFrom(validate: ValidateFunction, data: unknown): ConfigProblem[] {
  if (validate(data)) return [];
  const problems: ConfigProblem[] = [];
  for (const e of validate.errors ?? []) {
    const p = describeError(e);
    if (p) problems.push(p);
  }
  return problems;
}

/** "dns.zones[0].domain"; the root is "(top level)". */
export function formatDottedPath(p: readonly (string | number)[]): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out === '' ? '(top level)' : out;
}

export function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

function describeError(e: ErrorObject): ConfigProblem | undefined {
  // if/then/else report their inner failures separately; the wrapper adds nothing.
  if (e.keyword === 'if') return undefined;
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
  const path = pointerToPath(e.instancePath);
  const related = Array.isArray(parent['x-related']) ? (parent['x-related'] as string[]) : [];
  const custom = typeof parent['x-message'] === 'string' ? (parent['x-message'] as string) : undefined;
  const params = e.params as Record<string, unknown>;

  switch (e.keyword) {
    case 'additionalProperties': {
      const allowed = Object.keys((parent.properties ?? {}) as object).join(', ');
      return { path: [...path, String(params.additionalProperty)], message: `unknown field; allowed: ${allowed}`, related };
    }
    case 'required':
      return { path: [...path, String(params.missingProperty)], message: 'is required', related };
    case 'uniqueItems': {
      // Point at the later of the two duplicates (ajv's i/j order is an implementation detail).
      const later = Math.max(Number(params.i), Number(params.j));
      const earlier = Math.min(Number(params.i), Number(params.j));
      return { path: [...path, later], message: `repeats ${formatDottedPath([...path, earlier])}`, related };
    }
    case 'type':
      return { path, message: e.data === null ? `has no value; ${typeWords(parent)}` : typeWords(parent), related };
    default:
      return { path, message: custom ?? keywordWords(e, parent), related };
  }
}

function typeWords(schema: Record<string, unknown>): string {
  const min = schema.minimum;
  const max = schema.maximum;
  switch (schema.type) {
    case 'integer':
      return typeof min === 'number' && typeof max === 'number'
        ? `must be a whole number between ${min} and ${max}`
        : 'must be a whole number';
    case 'boolean':
      return 'must be true or false';
    case 'string':
      return 'must be a string (quote it if it looks like a number or true/false)';
    case 'array':
      return 'must be a list';
    case 'object':
      return 'must be a mapping of fields';
    default:
      return `must be of type ${String(schema.type)}`;
  }
}

function keywordWords(e: ErrorObject, schema: Record<string, unknown>): string {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'minimum':
    case 'maximum': {
      const min = schema.minimum;
      const max = schema.maximum;
      if (typeof min === 'number' && typeof max === 'number') return `must be between ${min} and ${max}`;
      return e.keyword === 'minimum' ? `must be at least ${String(min)}` : `must be at most ${String(max)}`;
    }
    case 'enum':
      return `must be one of: ${(params.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'format':
      return explainFormat(String(params.format), e.data);
    case 'minLength':
      return params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`;
    case 'maxLength':
      return `must be at most ${String(params.limit)} characters`;
    case 'minItems':
      return `must list at least ${String(params.limit)} entries`;
    default:
      return e.message ?? `breaks rule ${e.keyword}`;
  }
}
