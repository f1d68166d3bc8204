// Client-chosen text is inert on a terminal, in CSV and in JSON, whatever characters it holds.
import t from 'tap';
import { csvSafe, inert, toJson } from '../../src/cli/terminal';
import { csvField } from '../../src/cli/tabular';

const ACTIVE = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  ...Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)),
  '\u061c',
  '\u200b',
  '\u200e',
  '\u200f',
  '\u2028',
  '\u2029',
  '\u202a',
  '\u202b',
  '\u202c',
  '\u202d',
  '\u202e',
  '\u2066',
  '\u2067',
  '\u2068',
  '\u2069',
  '\ufeff',
];

t.test('every control, C1, bidi and invisible character is shown escaped; the rest is kept', async (t) => {
  for (const ch of ACTIVE) {
    const shown = inert(`a${ch}b`);
    t.notOk(
      [...shown].some((c) => ACTIVE.includes(c)),
      `U+${ch.charCodeAt(0).toString(16).padStart(4, '0')} escaped as ${shown}`,
    );
    t.match(shown, /^a\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt])b$/);
  }
  t.equal(inert('PC-01.corp.example'), 'PC-01.corp.example');
  t.equal(inert('Büro-Rechner 日本'), 'Büro-Rechner 日本', 'letters of any script stay');
  t.equal(inert('a\\x1b'), 'a\\\\x1b', 'a typed backslash is doubled, so it cannot pose as an escape');
});

t.test('CSV: formula starts neutralised (OWASP), numbers kept, controls escaped, quoting per RFC 4180', async (t) => {
  for (const s of ['=1+1', '+1', '-1+2', '@SUM(A1)', '\tx', '\rx']) t.equal(csvSafe(s)[0], "'", s);
  t.equal(csvSafe('-12'), "'-12", 'text that looks like a number is text too');
  t.equal(csvSafe('pc-1'), 'pc-1');
  t.equal(csvField('=HYPERLINK("http://x")'), `"'=HYPERLINK(""http://x"")"`);
  t.equal(csvField('two\nlines'), 'two\\nlines', 'no line break inside a record');
  t.equal(csvField(-3), '-3', 'a numeric field stays a number');
});

t.test('JSON: the value survives, the text holds no active character', async (t) => {
  const value = { name: 'x\u202ey\u0085z\x1b' };
  const text = toJson(value);
  t.notOk([...text].some((c) => ACTIVE.includes(c)));
  t.same(JSON.parse(text), value);
});
