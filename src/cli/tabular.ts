// Output formats shared by the inventory commands: aligned text tables for people, RFC 4180 CSV
// for spreadsheets, and timestamps that read the same in every format.

export interface Column<R> {
  readonly header: string;
  readonly value: (row: R) => string | number | boolean | null;
  /** Right-align (numbers). */
  readonly right?: boolean;
}

function text(v: string | number | boolean | null): string {
  if (v === null) return '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

export function formatTable<R>(rows: readonly R[], columns: readonly Column<R>[]): string {
  const cells = rows.map((r) => columns.map((c) => text(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => (columns[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** RFC 4180: quote fields with a comma, quote or line break; double the quotes inside. */
export function csvField(v: string | number | boolean | null): string {
  const s = text(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(values: readonly (string | number | boolean | null)[]): string {
  return values.map(csvField).join(',') + '\r\n';
}

export function formatCsv<R>(rows: Iterable<R>, columns: readonly Column<R>[]): string {
  let out = csvLine(columns.map((c) => c.header));
  for (const r of rows) out += csvLine(columns.map((c) => c.value(r)));
  return out;
}

/** ISO 8601 in UTC, for JSON and CSV; null stays null. */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** "2026-11-29 14:02 UTC": minutes are enough for people reading a table. */
export function shortTime(ms: number | null): string {
  if (ms === null) return 'never';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
