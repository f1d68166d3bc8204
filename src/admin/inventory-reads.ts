// Reads of the activation database that only the admin page needs, run in the snapshot worker
// (snapshot-worker.ts) on its own read-only connection: one page of the machine list in keyset
// order, and activations per day. Neither ever runs on the KMS event loop.
import type Database from 'better-sqlite3';
import { COUNT_WINDOW_MS } from '../host/counting';
import { clientRecord, type ClientRecord } from '../store/inventory';
import type { StoredClientRow } from '../store/rows';
import type { NameResolver } from '../catalog/name-resolver';

export const MACHINE_SORTS = ['name', 'seen', 'application'] as const;
export type MachineSort = (typeof MACHINE_SORTS)[number];
export const MAX_PAGE_SIZE = 200;
const MAX_SEARCH_LENGTH = 100;

export interface MachineQuery {
  /** Part of a workstation name, or the start of an address or CMID; empty = every machine. */
  readonly q: string;
  readonly sort: MachineSort;
  /** Opaque cursor from the previous page's `next`. */
  readonly after?: string;
  readonly limit: number;
}

export interface MachinePage {
  readonly rows: readonly ClientRecord[];
  /** Cursor of the next page; absent on the last one. */
  readonly next?: string;
}

export interface DayActivity {
  /** UTC date, YYYY-MM-DD. */
  readonly day: string;
  readonly served: number;
  readonly refused: number;
}

const DAY_MS = 86_400_000;

/** Keyset pagination: each sort has a total order ending in the primary key, and the cursor is the last row's key. */
const ORDER: Record<MachineSort, { columns: readonly string[]; orderBy: string; after: string }> = {
  application: { columns: ['application', 'cmid'], orderBy: 'application, cmid', after: '(application, cmid) > (?, ?)' },
  name: {
    columns: ['workstation', 'application', 'cmid'],
    orderBy: 'workstation, application, cmid',
    after: '(workstation, application, cmid) > (?, ?, ?)',
  },
  seen: {
    columns: ['last_seen_ms', 'application', 'cmid'],
    orderBy: 'last_seen_ms DESC, application, cmid',
    after: '(last_seen_ms < ? OR (last_seen_ms = ? AND (application, cmid) > (?, ?)))',
  },
};

/** The search text cut to MAX_SEARCH_LENGTH units without leaving half a surrogate pair (which no URL can encode). */
export function clipSearch(q: string): string {
  return q.slice(0, MAX_SEARCH_LENGTH).replace(/[\uD800-\uDBFF]$/, '');
}

function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function encodeCursor(values: readonly unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

function decodeCursor(cursor: string, sort: MachineSort): unknown[] | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    const n = ORDER[sort].columns.length;
    if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'string' || typeof x === 'number')) return undefined;
    return v;
  } catch {
    return undefined;
  }
}

export function machinePage(db: Database.Database, names: NameResolver, query: MachineQuery, nowMs: number): MachinePage {
  const order = ORDER[query.sort];
  const where: string[] = [];
  const params: unknown[] = [];
  const q = clipSearch(query.q.trim());
  if (q !== '') {
    const e = likeEscape(q);
    where.push("(workstation LIKE ? ESCAPE '\\' OR client_address LIKE ? ESCAPE '\\' OR cmid LIKE ? ESCAPE '\\')");
    params.push(`%${e}%`, `${e}%`, `${e.toLowerCase()}%`);
  }
  const cursor = query.after ? decodeCursor(query.after, query.sort) : undefined;
  if (cursor) {
    where.push(order.after);
    if (query.sort === 'seen') params.push(cursor[0], cursor[0], cursor[1], cursor[2]);
    else params.push(...cursor);
  }
  const limit = Math.max(1, Math.min(MAX_PAGE_SIZE, Math.floor(query.limit)));
  const sql = `SELECT * FROM clients ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order.orderBy} LIMIT ?`;
  const raw = db.prepare(sql).all(...params, limit + 1) as Record<string, unknown>[];
  const more = raw.length > limit;
  const page = raw.slice(0, limit);
  const last = page[page.length - 1];
  const rows = page.map((r) => clientRecord(r as unknown as StoredClientRow, names, nowMs - COUNT_WINDOW_MS));
  return more && last ? { rows, next: encodeCursor(order.columns.map((c) => last[c])) } : { rows };
}

/** Served and refused requests per UTC day, the last `days` days up to today, oldest first. */
export function activationsPerDay(db: Database.Database, nowMs: number, days = 30): DayActivity[] {
  const today = Math.floor(nowMs / DAY_MS);
  const since = (today - days + 1) * DAY_MS;
  const first = firstEventAtOrAfter(db, since);
  const byDay = new Map<number, { served: number; refused: number }>();
  if (first !== undefined) {
    const rows = db
      .prepare(
        'SELECT time_ms / 86400000 AS d, SUM(served <> 0) AS served, SUM(served = 0) AS refused FROM events WHERE id >= ? AND time_ms ' +
          '>= ? GROUP BY d',
      )
      .all(first, since) as { d: number; served: number; refused: number }[];
    for (const r of rows) byDay.set(r.d, { served: r.served, refused: r.refused });
  }
  const out: DayActivity[] = [];
  for (let d = today - days + 1; d <= today; d++) {
    const v = byDay.get(d) ?? { served: 0, refused: 0 };
    out.push({ day: new Date(d * DAY_MS).toISOString().slice(0, 10), ...v });
  }
  return out;
}

/** Events are appended in time order: bisect the rowids instead of keeping a time index. */
function firstEventAtOrAfter(db: Database.Database, sinceMs: number): number | undefined {
  const bounds = db.prepare('SELECT MIN(id) AS lo, MAX(id) AS hi FROM events').get() as { lo: number | null; hi: number | null };
  if (bounds.lo === null || bounds.hi === null) return undefined;
  const at = db.prepare('SELECT id, time_ms FROM events WHERE id >= ? ORDER BY id LIMIT 1');
  let lo = bounds.lo;
  let hi = bounds.hi + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const row = at.get(mid) as { id: number; time_ms: number } | undefined;
    if (row === undefined || row.time_ms >= sinceMs) hi = mid;
    else lo = row.id + 1;
  }
  return lo;
}

/** Machines (CMIDs) counted in the window, whatever application they activated. */
export function distinctMachines(db: Database.Database, cutoffMs: number): number {
  return db.prepare('SELECT count(DISTINCT cmid) FROM clients WHERE last_counted_ms >= ?').pluck().get(cutoffMs) as number;
}
