// Output formats shared by the inventory commands: aligned text tables for people, RFC 4180 CSV
// for spreadsheets, and timestamps that read the same in every format. Every cell passes through
// terminal.ts: client-chosen text cannot move the cursor, fake a row or become a formula.
import { csvSafe, inert } from './terminal';

export interface Column<R> {
  readonly header: string;
  readonly value: (row: R) => string | number | boolean | null;
  /** Right-align (numbers). */
  readonly right?: boolean;
  /** Never shortened to fit the terminal (ids people copy, times). */
  readonly keep?: boolean;
}

function text(v: string | number | boolean | null): string {
  if (v === null) return '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return inert(String(v));
}

/** What fits on a 120-column terminal; a longer cell is shortened with "…". */
const TABLE_WIDTH = 120;

export function formatTable<R>(rows: readonly R[], columns: readonly Column<R>[]): string {
  const cells = rows.map((r) => columns.map((c) => text(c.value(r))));
  const widths = fitWidths(
    columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length))),
    columns.map((c) => (c.keep ? Infinity : c.header.length)),
  );
  for (const row of cells)
    row.forEach((v, i) => {
      row[i] = clip(v, widths[i]!);
    });
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => (columns[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/**
 * Column widths that fit TABLE_WIDTH (two spaces between columns): the widest column gives up
 * characters first, never below its header or 10 characters; `keep` columns never shrink.
 */
function fitWidths(natural: readonly number[], headers: readonly number[]): number[] {
  const widths = [...natural];
  const total = (): number => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  while (total() > TABLE_WIDTH) {
    let widest = -1;
    widths.forEach((w, i) => {
      if (w > Math.max(headers[i]!, 10) && (widest < 0 || w > widths[widest]!)) widest = i;
    });
    if (widest < 0) break;
    widths[widest]! -= 1;
  }
  return widths;
}

function clip(v: string, width: number): string {
  return v.length <= width ? v : `${v.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * RFC 4180: quote fields with a comma, quote or line break; double the quotes inside. Control
 * characters are escaped and a leading = + - @ is neutralised (terminal.ts).
 */
export function csvField(v: string | number | boolean | null): string {
  const s = typeof v === 'string' ? csvSafe(text(v)) : text(v);
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
