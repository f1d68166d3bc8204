// JSON.stringify escapes C0 controls but leaves DEL, C1 controls and the Unicode characters that
// reorder or hide text (bidi overrides, zero-width, line separators) raw. A log line or a JSON
// document viewed in a terminal must not act on it: they are written as \u escapes (still the
// same JSON value).

// eslint-disable-next-line no-control-regex
const JSON_UNSAFE = /[\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/g;

export function escapeJsonText(json: string): string {
  return json.replace(JSON_UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
