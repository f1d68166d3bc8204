// `kms-appliance clients`: the machines this host knows, filtered by group, product, application
// or how long they have been silent, as a table, JSON or CSV (JSON and CSV share field names).

import { EXIT, UsageProblem, defineCommand, type CommandIo } from '../command';
import { COMMON_HELP, COMMON_OPTIONS, loadSettings, openInventory } from '../inventory-access';
import { csvLine, formatTable, isoTime, shortTime, type Column } from '../tabular';
import { toJson } from '../terminal';
import { formatHresult } from '../../errors';
import { CATALOG_UPDATE_HINT, isUnknownName, type Catalog } from '../../catalog/catalog';
import { explainUnresolved, resolveName, type NameKind } from '../../catalog/name-match';
import { licenseStatusName } from '../../protocol/kms/license-status';
import type { ClientFilter, ClientRecord } from '../../store/inventory';

/** Rows a table shows unless --limit says otherwise: a store may hold a million machines. */
export const TABLE_ROWS_DEFAULT = 1000;
/** A table is laid out in memory (column widths need every row); more is what CSV and JSON are for. */
export const TABLE_ROWS_MAX = 10_000;

const HELP = `Usage: kms-appliance clients [--group G] [--product P] [--application A]
                             [--not-seen-since DATE|DAYS] [--limit N] [--format table|json|csv]
                             [--data-dir DIR] [--config FILE]

List the machines that asked this host for activation (served or refused).

Options:
  -g, --group G              KMS group: its id or name as people say it ("Windows 11", "Office 2019").
  -p, --product P            Product (SKU): its activation id or name ("Win 11 Enterprise").
  -a, --application A        Application: its id or name ("Windows", "Office 2010").
                             A name that fits several is refused with the candidates (exit 2).
  -n, --not-seen-since WHEN  Only machines silent since WHEN: a date (2026-01-31, or an ISO 8601
                             time) or a number of days (30 = silent for 30 days or more).
  -l, --limit N              At most N machines (the table shows ${TABLE_ROWS_DEFAULT} unless told, at most
                             ${TABLE_ROWS_MAX}; JSON and CSV list every one unless told).
${COMMON_HELP}

Times are UTC; in JSON and CSV ISO 8601, with the same field names in both.

Examples:
  kms-appliance clients --group "Windows 10" --not-seen-since 30
  kms-appliance clients --format csv > clients.csv

Exit codes: 0 ok, 1 database missing or unusable, 2 usage or configuration error.
`;

const DAY_MS = 86_400_000;

/** A date, an ISO time, or a number of days before `nowMs`; undefined when it is none of these. */
export function parseNotSeenSince(value: string, nowMs: number): number | undefined {
  if (/^\d+$/.test(value)) return nowMs - Number(value) * DAY_MS;
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) return undefined;
  // A bare date means its start in UTC, like every time this command prints.
  const ms = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The table for people, within 120 columns: the product names its group, so the group is left to
 * JSON and CSV; long names and addresses are shortened with "…", ids and times never.
 */
const TABLE_COLUMNS: readonly Column<ClientRecord>[] = [
  { header: 'WORKSTATION', value: (c) => c.workstation },
  { header: 'ADDRESS', value: (c) => c.address },
  { header: 'PRODUCT', value: (c) => c.skuName },
  { header: 'LAST SEEN (UTC)', value: (c) => shortTime(c.lastSeenMs).replace(/ UTC$/, ''), keep: true },
  { header: 'ACTIVE', value: (c) => c.active, keep: true },
  { header: 'RESULT', value: (c) => (c.lastHresult === 0 ? 'served' : formatHresult(c.lastHresult)), keep: true },
  { header: 'CMID', value: (c) => c.cmid, keep: true },
];

/** The fields of JSON and CSV alike, in CSV column order. */
const FIELDS: readonly Column<ClientRecord>[] = [
  { header: 'workstation', value: (c) => c.workstation },
  { header: 'address', value: (c) => c.address },
  { header: 'cmid', value: (c) => c.cmid },
  { header: 'applicationName', value: (c) => c.applicationName },
  { header: 'applicationId', value: (c) => c.applicationId },
  { header: 'groupName', value: (c) => c.groupName },
  { header: 'groupId', value: (c) => c.groupId },
  { header: 'skuName', value: (c) => c.skuName },
  { header: 'skuId', value: (c) => c.skuId },
  { header: 'firstSeen', value: (c) => isoTime(c.firstSeenMs) },
  { header: 'lastSeen', value: (c) => isoTime(c.lastSeenMs) },
  { header: 'lastCounted', value: (c) => isoTime(c.lastCountedMs) },
  { header: 'active', value: (c) => c.active },
  { header: 'licenseStatus', value: (c) => c.licenseStatus },
  { header: 'licenseStatusName', value: (c) => licenseStatusName(c.licenseStatus) },
  { header: 'vm', value: (c) => c.vm },
  { header: 'protocolVersion', value: (c) => c.protocolVersion },
  { header: 'requiredCount', value: (c) => c.requiredCount },
  { header: 'requests', value: (c) => c.requests },
  { header: 'lastResult', value: (c) => formatHresult(c.lastHresult) },
];

function jsonRecord(c: ClientRecord): Record<string, unknown> {
  return Object.fromEntries(FIELDS.map((f) => [f.header, f.value(c)]));
}

/** Writes in chunks: a big site has hundreds of thousands of machines. */
function writeChunked(io: CommandIo, lines: Iterable<string>): void {
  let chunk = '';
  for (const line of lines) {
    chunk += line;
    if (chunk.length > 65536) {
      io.stdout.write(chunk);
      chunk = '';
    }
  }
  if (chunk !== '') io.stdout.write(chunk);
}

const KINDS: Readonly<Record<'group' | 'product' | 'application', NameKind>> = {
  group: 'group',
  product: 'sku',
  application: 'application',
};

/** A --group/--product/--application value as the catalogue id it names; UsageProblem otherwise. */
function resolveFilter(catalog: Catalog, option: keyof typeof KINDS, typed: string): string {
  if (typed.trim() === '') throw new UsageProblem(`--${option} needs a name or an id`);
  const r = resolveName(catalog, typed, [KINDS[option]]);
  if ('found' in r) return r.found.id;
  // An id the catalogue does not know may still be in the database (a newer product).
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(typed.trim())) return typed.trim().toLowerCase();
  throw new UsageProblem(`--${option}: ${explainUnresolved(typed, r, KINDS[option] === 'sku' ? 'product' : option)}`);
}

export const command = defineCommand({
  name: 'clients',
  summary: 'list the machines this host knows, filtered by group, product or silence; table, JSON or CSV',
  help: HELP,
  options: {
    ...COMMON_OPTIONS,
    group: { type: 'string', short: 'g' },
    product: { type: 'string', short: 'p' },
    application: { type: 'string', short: 'a' },
    'not-seen-since': { type: 'string', short: 'n' },
    limit: { type: 'string', short: 'l' },
  },
  formats: true,
  run({ values, format, io }) {
    const now = Date.now();
    const filter: { -readonly [K in keyof ClientFilter]: ClientFilter[K] } = {};
    if (values['not-seen-since'] !== undefined) {
      const since = parseNotSeenSince(values['not-seen-since'], now);
      if (since === undefined)
        throw new UsageProblem(`--not-seen-since needs a date (2026-01-31) or a number of days, not "${values['not-seen-since']}"`);
      filter.notSeenSinceMs = since;
    }
    const settings = loadSettings(values, io);
    const { catalog } = settings;
    for (const key of ['group', 'product', 'application'] as const) {
      const v = values[key];
      if (v !== undefined) filter[key] = resolveFilter(catalog, key, v);
    }

    const limit = parseLimit(values.limit, format === 'table');
    const { inventory } = openInventory(values, io, settings);
    try {
      if (format === 'table') {
        const shown = limit ?? TABLE_ROWS_DEFAULT;
        printTable(io, [...inventory.clients(filter, now, undefined, shown)], shown, () => inventory.countClients(filter));
        return EXIT.OK;
      }
      const rows = inventory.clients(filter, now, undefined, limit);
      if (format === 'csv') {
        writeChunked(
          io,
          (function* () {
            yield csvLine(FIELDS.map((c) => c.header));
            for (const r of rows) yield csvLine(FIELDS.map((c) => c.value(r)));
          })(),
        );
      } else if (format === 'json') {
        writeChunked(
          io,
          (function* () {
            let first = true;
            yield '[';
            for (const r of rows) {
              yield `${first ? '\n' : ',\n'}  ${toJson(jsonRecord(r))}`;
              first = false;
            }
            yield first ? ']\n' : '\n]\n';
          })(),
        );
      }
      return EXIT.OK;
    } finally {
      inventory.close();
    }
  },
});

/** --limit as a number of rows; undefined = every row (JSON, CSV). */
function parseLimit(value: string | undefined, table: boolean): number | undefined {
  if (value === undefined) return table ? TABLE_ROWS_DEFAULT : undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageProblem(`--limit needs a number of machines (1 or more), not "${value}"`);
  const n = Number(value);
  if (table && n > TABLE_ROWS_MAX)
    throw new UsageProblem(`--limit: a table shows at most ${TABLE_ROWS_MAX} machines; --format csv or json lists every one`);
  return n;
}

function printTable(io: CommandIo, rows: readonly ClientRecord[], limit: number, countAll: () => number): void {
  if (rows.length === 0) {
    io.stdout.write('No machines match.\n');
    return;
  }
  // Only a full page needs the total; counting is one more pass over the table, without records.
  const total = rows.length < limit ? rows.length : countAll();
  const more = total - rows.length;
  io.stdout.write(
    formatTable(rows, TABLE_COLUMNS) +
      (more > 0
        ? `${rows.length} of ${total} machines shown; ${more} more: --limit N shows more, --format csv lists every one\n`
        : `${rows.length} machine${rows.length === 1 ? '' : 's'}\n`),
  );
  // Advice goes below the table, once, not into every cell of the GROUP column.
  if (rows.some((r) => isUnknownName(r.groupName) || isUnknownName(r.skuName))) {
    io.stdout.write(`Some products are not in the catalogue: ${CATALOG_UPDATE_HINT}.\n`);
  }
}
