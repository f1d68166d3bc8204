// Hand-written hex for the byte-exact tests: everything after `#` on a line is a comment and
// whitespace is ignored, so a PDU can be laid out field by field.

/** The hex digits of annotated hex, lower-case, comments and whitespace removed. */
export function hex(text: string): string {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, ''))
    .join('')
    .replace(/\s+/g, '')
    .toLowerCase();
}

/** The bytes annotated hex spells. */
export function bytes(text: string): Buffer {
  return Buffer.from(hex(text), 'hex');
}
