// The compiled ajv validator of CONFIG_SCHEMA, and the translation of its errors into the
// admin's words: a dotted field path and what is allowed there.
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { CONFIG_SCHEMA } from './schema';
import { CONFIG_FORMATS, explainFormat } from './formats';

/** One rule a configuration breaks, before it is placed on a line of the file. */
export interface ConfigProblem {
  /** Path segments from the root, e.g. ['kms', 'listen', 0]. */
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** Other fields (JSON pointers) whose line to show when `path` is not in the file. */
  readonly related: readonly string[];
}

/** How long a compiled validator outlives its last use: the loads of one burst share it. */
const KEEP_COMPILED_MS = 10_000;
let kept: { readonly validate: ValidateFunction; readonly drop: NodeJS.Timeout } | undefined;

// Compiled once per burst of loads (a command, a test file: tens of milliseconds each time),
// then let go: a compiled schema holds megabytes that a server running for years would otherwise
// keep for nothing between its rare loads (start-up, SIGHUP reloads).
function validator(): ValidateFunction {
  if (kept) {
    kept.drop.refresh();
    return kept.validate;
  }
  const validate = compileValidator();
  kept = { validate, drop: setTimeout(() => (kept = undefined), KEEP_COMPILED_MS).unref() };
  return validate;
}

function compileValidator(): ValidateFunction {
  const ajv = new Ajv({
    allErrors: true, // every error at once, not the first
    verbose: true, // errors carry their schema and data, which the messages need
    useDefaults: true, // fills fields inside list entries; sections are merged over DEFAULTS before
    strict: true,
  });
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-related', schemaType: 'array' });
  for (const [name, f] of Object.entries(CONFIG_FORMATS)) {
    // Emptiness is minLength's job: fields where "" means "automatic" share the formats.
    ajv.addFormat(name, { type: 'string', validate: (v: string) => v === '' || f.check(v) === undefined });
  }
  return ajv.compile(CONFIG_SCHEMA);
}

/** Validates (and fills list-entry defaults into) `data`; returns every problem found. */
export function checkConfigObject(data: unknown): ConfigProblem[] {
  const validate = validator();
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
