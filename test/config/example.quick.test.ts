// `config defaults`: the generated example is complete, documented, valid, and equals DEFAULTS.
import t from 'tap';
import { parseDocument } from 'yaml';
import { configExample } from '../../src/config/example';
import { validateConfigText } from '../../src/config/load';
import { DEFAULTS } from '../../src/config/defaults';
import { CONFIG_SCHEMA } from '../../src/config/schema';

const example = configExample();

t.test('the example validates and loads to exactly DEFAULTS', async (t) => {
  t.strictSame(JSON.parse(JSON.stringify(validateConfigText(example, 'example.yaml'))), JSON.parse(JSON.stringify(DEFAULTS)));
});

t.test('every field of the schema is written, with every default', async (t) => {
  const written = parseDocument(example).toJS() as Record<string, unknown>;
  // Not merged over anything: the text alone holds every field.
  t.strictSame(JSON.parse(JSON.stringify(written)), JSON.parse(JSON.stringify(DEFAULTS)));
  const walk = (schema: Record<string, unknown>, value: Record<string, unknown>, at: string): void => {
    for (const key of Object.keys((schema.properties ?? {}) as object)) {
      t.ok(Object.prototype.hasOwnProperty.call(value, key), `${at}${key} is in the example`);
      const sub = (schema.properties as Record<string, Record<string, unknown>>)[key]!;
      if (sub.type === 'object' && sub.properties) walk(sub, value[key] as Record<string, unknown>, `${at}${key}.`);
    }
  };
  walk(CONFIG_SCHEMA, written, '');
});

t.test('ranges and units are stated next to the fields', async (t) => {
  t.match(example, /# 15 … 43200 minutes; default 120\.\n  activationIntervalMinutes: 120\n/);
  t.match(example, /# 15 … 43200 minutes; default 10080\.\n  renewalIntervalMinutes: 10080\n/);
  t.match(example, /# 1 … 3600 seconds; default 30\.\n  idleTimeoutSeconds: 30\n/);
  t.match(example, /# One of fatal, error, warn, info, debug, trace; default info\.\n  level: info\n/);
});

t.test('fields of list entries are documented, with an example that validates', async (t) => {
  t.match(example, /#   domain \(required\): The client DNS domain/);
  t.match(example, /#       port: TCP port of that KMS host\. 1 … 65535; default 1688\./);
  // Uncomment the examples and the result must still be a valid configuration.
  const uncommented = example.replace(
    /^(\s*)# For example:\n((?:\1#   .*\n)+)(\1\w+: (?:\[\]|\{\})\n)/gm,
    (_m, pad: string, block: string) =>
      block
        .split('\n')
        .filter(Boolean)
        .map((l) => pad + l.slice(pad.length + 4))
        .join('\n') + '\n',
  );
  t.not(uncommented, example);
  const c = validateConfigText(uncommented, 'uncommented.yaml');
  t.equal(c.dns.zones[0]?.hosts[0]?.target, 'kms.branch.example.org');
  t.equal(c.entitlements[0]?.licenses, 40);
  t.equal(c.dns.registration.domains[0]?.domain, 'branch.example.org');
});

t.test('no comment line is wider than 100 characters', async (t) => {
  const wide = example.split('\n').filter((l) => l.length > 100);
  t.same(wide, []);
});
