// HTML escaping for everything the page prints that a client or the configuration chose.
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * What a browser draws as nothing, or uses to reorder text: controls, format characters (bidi
 * marks and overrides, zero-width characters, tag characters, interlinear annotations), line and
 * paragraph separators, default-ignorable code points (soft hyphen, combining grapheme joiner,
 * fillers, variation selectors), and every space but U+0020. Any of them would let "PC-01" plus
 * an invisible character read exactly like the machine "PC-01".
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\p{Zs}]/gu;
/** U+0020 where HTML would swallow it: at either end, or after another space. */
const SWALLOWED_SPACE = /^ | $| (?= )/g;

function shown(c: string): string {
  const n = c.codePointAt(0)!;
  if (n < 0x100) return `\\x${n.toString(16).padStart(2, '0')}`;
  return n < 0x10000 ? `\\u${n.toString(16).padStart(4, '0')}` : `\\u{${n.toString(16)}}`;
}

/** Escapes markup only: for an attribute whose value must come back as it was (the search box). */
export function escapeAttribute(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/**
 * Escapes markup characters, and shows invisible, reordering and swallowed characters as
 * \\xNN / \\uNNNN / \\u{NNNNN}, so that two different names never read alike and no name can
 * reorder or hide the text around it.
 */
export function escapeHtml(s: unknown): string {
  return escapeAttribute(
    String(s)
      .replace(INVISIBLE, (c) => (c === ' ' ? c : shown(c)))
      .replace(SWALLOWED_SPACE, '\\x20'),
  );
}
