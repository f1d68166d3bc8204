// The configuration validator `npm run build` writes as a standalone module (so that `serve` never
// loads ajv's compiler) must behave exactly like the schema compiled at run time: the same
// problems in the same words, the same list-entry defaults filled in, for every kind of mistake
// in every field of the schema.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { ValidateFunction } from 'ajv';
import { DEFAULTS } from '../../src/config/defaults';
import * as formatValidators from '../../src/config/format-validators';
import { CONFIG_SCHEMA } from '../../src/config/schema';
import {
  checkConfigObject,
  configValidatorKind,
  loadStandaloneValidator,
  problemsFrom,
  STANDALONE_VALIDATOR_FILE,
  standaloneValidatorSource,
} from '../../src/config/validator';

type Schema = Record<string, unknown>;
type Config = Record<string, unknown>;

const SOURCE = standaloneValidatorSource();
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-validator-'));
t.teardown(() => fs.rmSync(DIR, { recursive: true, force: true }));

/** The generated module loaded the way the appliance loads it, from a file. */
function standaloneFrom(name: string, source: string): ValidateFunction | undefined {
  const file = path.join(DIR, name);
  fs.writeFileSync(file, source);
  return loadStandaloneValidator(file);
}

/** A schema compiled at run time: the standalone module absent. */
function compiled(): ValidateFunction {
  const { default: Ajv } = require('ajv') as typeof import('ajv');
  const ajv = new Ajv({ allErrors: true, verbose: true, useDefaults: true, strict: true });
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-related', schemaType: 'array' });
  for (const [name, format] of Object.entries(formatValidators.CONFIG_FORMAT_VALIDATORS)) ajv.addFormat(name, format);
  return ajv.compile(CONFIG_SCHEMA);
}

/** Wrong values for one field, chosen from what its schema allows. */
function badValuesFor(schema: Schema): unknown[] {
  const out: unknown[] = [null, schema.type === 'string' ? 7 : 'seven', { nested: true }];
  if (typeof schema.minimum === 'number') out.push(schema.minimum - 1);
  if (typeof schema.maximum === 'number') out.push(schema.maximum + 1);
  if (schema.type === 'integer') out.push(1.5);
  if (schema.type === 'string') out.push('', 'x'.repeat(300), 'not a value ::: of/this/[format]');
  if (schema.enum) out.push('none-of-these');
  if (schema.type === 'array') {
    const items = (schema.items ?? {}) as Schema;
    out.push([], [{}], ['a', 'a'], [...badValuesFor(items).slice(0, 4)]);
    if (items.type === 'object') out.push([{ unknownField: 1 }, {}]);
  }
  return out;
}

/** DEFAULTS with one change at `at`: every field of every section, every wrong value, unknown fields. */
function* mutations(): Generator<[string, Config]> {
  const root = CONFIG_SCHEMA as Schema;
  yield ['the defaults', structuredClone(DEFAULTS) as unknown as Config];
  yield ['an unknown section', { ...(structuredClone(DEFAULTS) as unknown as Config), nope: {} }];
  for (const [section, sectionSchema] of Object.entries(root.properties as Record<string, Schema>)) {
    const fields = (sectionSchema.properties ?? {}) as Record<string, Schema>;
    const withSection = (value: unknown): Config => ({ ...(structuredClone(DEFAULTS) as unknown as Config), [section]: value });
    yield [`${section}: an unknown field`, withSection({ ...(DEFAULTS as unknown as Record<string, Config>)[section], zz: 1 })];
    yield [`${section}: not a mapping`, withSection(['a list'])];
    for (const [field, fieldSchema] of Object.entries(fields)) {
      for (const bad of badValuesFor(fieldSchema)) {
        const sectionValue = structuredClone((DEFAULTS as unknown as Record<string, Config>)[section]) ?? {};
        sectionValue[field] = bad;
        yield [`${section}.${field} = ${JSON.stringify(bad)?.slice(0, 40)}`, withSection(sectionValue)];
      }
    }
  }
}

t.test('the generated module needs only ajv run-time helpers and our format checks, and is ASCII', async (t) => {
  t.match(SOURCE, /^[\x00-\x7f]*$/);
  const required = [...SOURCE.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
  t.ok(required.length > 0);
  for (const id of required) t.match(id, /^(ajv\/dist\/runtime\/|\.\/format-validators$)/, `requires ${id}`);
});

t.test('standalone and compiled validators agree on every mistake in every field', async (t) => {
  const standalone = standaloneFrom('generated.js', SOURCE)!;
  t.equal(typeof standalone, 'function');
  const runtime = compiled();
  let cases = 0;
  let failing = 0;
  for (const [what, config] of mutations()) {
    const a = structuredClone(config);
    const b = structuredClone(config);
    const fromStandalone = problemsFrom(standalone, a);
    const fromCompiled = problemsFrom(runtime, b);
    if (fromCompiled.length > 0) failing++;
    cases++;
    t.same(fromStandalone, fromCompiled, what);
    t.same(a, b, `${what}: the same defaults filled in`);
  }
  // The corpus must exercise the validators: hundreds of cases, nearly all of them rejected.
  t.ok(cases > 200, `${cases} cases`);
  t.ok(failing > cases * 0.8, `${failing} of ${cases} rejected`);
});

t.test('a standalone module from another schema is not used', async (t) => {
  t.equal(standaloneFrom('stale.js', 'module.exports = () => true;\nmodule.exports.schemaDigest = "from an older schema";\n'), undefined);
  t.equal(loadStandaloneValidator(path.join(DIR, 'missing.js')), undefined);
  const stale = SOURCE.replace(/schemaDigest = "[0-9a-f]+"/, 'schemaDigest = "0"');
  t.not(stale, SOURCE);
  t.equal(standaloneFrom('edited-schema.js', stale), undefined);
});

t.test('a build uses the standalone module; a source tree without one compiles the schema', async (t) => {
  const built = fs.existsSync(STANDALONE_VALIDATOR_FILE);
  t.equal(configValidatorKind(), built ? 'standalone' : 'compiled');
  t.same(checkConfigObject(structuredClone(DEFAULTS)), []);
});
