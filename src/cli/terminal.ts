// Text a client chose (workstation names, addresses as logged) made inert before it reaches an
// administrator's terminal or spreadsheet: a name must not clear the screen, retitle the
// terminal, reorder text (bidi overrides) or start a new line that looks like another entry.
import { escapeJsonText } from '../logging/json-escape';

/**
 * C0/C1 controls, DEL, line and paragraph separators, and every Unicode format character (\p{Cf}):
 * those that move or hide text, the invisible tag characters U+E0000–E007F (a workstation name is
 * UTF-16 on the wire, so a client can send them) among them.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\p{Cf}]/gu;

function escapeChar(ch: string): string {
  const code = ch.codePointAt(0)!;
  if (ch === '\n') return '\\n';
  if (ch === '\r') return '\\r';
  if (ch === '\t') return '\\t';
  if (code > 0xffff) return `\\u{${code.toString(16)}}`;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** For terminal output: controls and bidi/invisible characters shown as \x1b, \u202e, \u{e0041}, \n; a backslash doubled. */
export function inert(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(UNSAFE, escapeChar);
}

/**
 * A CSV text cell a spreadsheet will not run: OWASP's rule for formula injection prefixes a cell
 * that starts with = + - @ tab or CR with a single quote. Only text goes through here; numeric
 * fields (a count) are written as numbers by the caller.
 */
export function csvSafe(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

/** JSON.stringify, then escapeJsonText (controls, bidi, every format character): for every JSON the CLI prints. */
export function toJson(value: unknown, indent?: number): string {
  return escapeJsonText(JSON.stringify(value, null, indent));
}
