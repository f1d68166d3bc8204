// HTML escaping for everything the page prints that a client or the configuration chose.
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes markup characters, and shows control and bidi characters as \\xNN / \\uNNNN so a name cannot reorder or hide text. */
export function escapeHtml(s: unknown): string {
  return String(s)
    .replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
      const n = c.charCodeAt(0);
      return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
    })
    .replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}
