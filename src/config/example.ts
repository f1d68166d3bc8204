// `kms-appliance config defaults`: a complete, commented configuration file generated from the
// schema (meaning, unit, range) and DEFAULTS (values), so it can never drift from either. Loading
// it gives exactly DEFAULTS (a test checks).
import { stringify } from 'yaml';
import { CONFIG_SCHEMA } from './schema';
import { DEFAULTS } from './defaults';

type Schema = Record<string, unknown>;

const WIDTH = 98;
const UNITS: readonly (readonly [RegExp, string])[] = [
  [/PerSecond$/, 'per second'],
  [/Minutes$/, 'minutes'],
  [/Seconds$/, 'seconds'],
  [/Days$/, 'days'],
  [/Bytes$/, 'bytes'],
];

const HEADER = `# kms-appliance configuration (/etc/kms-appliance/config.yaml).
#
# Every field is optional: a field left out takes the default shown here, so the file may shrink
# to the lines you change. Lists replace the default list as a whole. Check a file with
#   kms-appliance config check /etc/kms-appliance/config.yaml
# and apply it with \`systemctl reload kms-appliance\`: an invalid file is refused, logged, and the
# running configuration stays.`;

export function configExample(): string {
  const out: string[] = [HEADER];
  const root = CONFIG_SCHEMA.properties as Record<string, Schema>;
  for (const [key, schema] of Object.entries(root)) {
    out.push('');
    writeField(out, key, schema, (DEFAULTS as unknown as Record<string, unknown>)[key], 0);
  }
  return out.join('\n') + '\n';
}

function writeField(out: string[], key: string, schema: Schema, value: unknown, depth: number): void {
  const pad = '  '.repeat(depth);
  comment(out, pad, String(schema.description ?? ''));
  if (schema.type === 'object' && schema.properties) {
    out.push(`${pad}${key}:`);
    for (const [k, s] of Object.entries(schema.properties as Record<string, Schema>)) {
      writeField(out, k, s, (value as Record<string, unknown>)[k], depth + 1);
    }
    return;
  }
  const facts = factsOf(key, schema, value);
  if (facts) comment(out, pad, facts);
  const items = schema.items as Schema | undefined;
  if (items?.type === 'object') describeEntries(out, pad, key, items);
  const examples = schema.examples as unknown[] | undefined;
  if (examples?.[0] !== undefined) {
    out.push(`${pad}# For example:`);
    for (const line of stringify({ [key]: examples[0] })
      .trimEnd()
      .split('\n'))
      out.push(`${pad}#   ${line}`);
  }
  for (const line of stringify({ [key]: value })
    .trimEnd()
    .split('\n'))
    out.push(pad + line);
}

/** Documents the fields of list entries, which the empty default list cannot show. */
function describeEntries(out: string[], pad: string, key: string, items: Schema, indent = ''): void {
  const required = new Set((items.required as string[] | undefined) ?? []);
  out.push(`${pad}# ${indent}Each entry of ${key}:`);
  for (const [k, s] of Object.entries(items.properties as Record<string, Schema>)) {
    const def = s.default;
    const facts = factsOf(k, s, def);
    const text = `${k}${required.has(k) ? ' (required)' : ''}: ${String(s.description ?? '')}${facts ? ' ' + facts : ''}`;
    comment(out, `${pad}#   ${indent}`, text, '  ', '');
    const sub = s.items as Schema | undefined;
    if (sub?.type === 'object') describeEntries(out, pad, k, sub, indent + '    ');
  }
}

/** "Minutes, 15 … 43200; default 120." and the like. */
function factsOf(key: string, schema: Schema, value: unknown): string {
  const parts: string[] = [];
  const unit = UNITS.find(([re]) => re.test(key))?.[1];
  if (typeof schema.minimum === 'number' && typeof schema.maximum === 'number') {
    parts.push(`${schema.minimum} … ${schema.maximum}${unit ? ' ' + unit : ''}`);
  } else if (unit) {
    parts.push(unit);
  }
  if (Array.isArray(schema.enum)) parts.push(`one of ${schema.enum.join(', ')}`);
  if (value !== undefined) parts.push(`default ${describeValue(value)}`);
  if (parts.length === 0) return '';
  const text = parts.join('; ');
  return text.charAt(0).toUpperCase() + text.slice(1) + '.';
}

function describeValue(v: unknown): string {
  if (v === '') return 'empty';
  if (Array.isArray(v)) return v.length === 0 ? 'none' : v.map((x) => JSON.stringify(x)).join(', ');
  if (typeof v === 'object' && v !== null) return Object.keys(v).length === 0 ? 'none' : JSON.stringify(v);
  return String(v);
}

/** Word-wrapped comment lines; `lead` starts every line, `more` indents continuation lines. */
function comment(out: string[], pad: string, text: string, more = '', hash = '# '): void {
  if (text === '') return;
  const lead = pad + hash;
  let line = '';
  for (const word of text.split(/\s+/)) {
    const prefix = line === '' ? '' : ' ';
    if (line !== '' && (lead + line + prefix + word).length > WIDTH) {
      out.push(lead + line);
      line = more + word;
    } else {
      line += prefix + word;
    }
  }
  if (line !== '') out.push(lead + line);
}
