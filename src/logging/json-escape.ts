// JSON.stringify escapes C0 controls but leaves DEL, C1 controls and the Unicode characters that
// reorder or hide text (bidi overrides, zero-width, line separators, every format character:
// the invisible tag characters U+E0000–E007F among them) raw. A log line or a JSON document viewed
// in a terminal must not act on it: they are written as \u escapes (still the same JSON value; a
// character beyond U+FFFF as its two surrogate escapes).

// eslint-disable-next-line no-control-regex
const JSON_UNSAFE = /[\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\p{Cf}]/gu;

function escapeUnits(ch: string): string {
  let out = '';
  for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return out;
}

export function escapeJsonText(json: string): string {
  return json.replace(JSON_UNSAFE, escapeUnits);
}
