// `kms-appliance clients`: the machines this host knows, filtered by group, product, application
// or how long they have been silent, as a table, JSON or CSV.

import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command, type CommandIo } from '../command';
import { COMMON_HELP, COMMON_OPTIONS, openInventory, parseFormat, withExit } from '../inventory-access';
import { csvLine, formatTable, isoTime, shortTime, type Column } from '../tabular';
import { formatHresult } from '../../errors';
import { licenseStatusName } from '../../protocol/kms/license-status';
import type { ClientFilter, ClientRecord } from '../../store/inventory';

const HELP = `Usage: kms-appliance clients [--group G] [--product P] [--application A]
                             [--not-seen-since DATE|DAYS] [--format table|json|csv]
                             [--data-dir DIR] [--config FILE]

List the machines that asked this host for activation (served or refused).

Options:
  -g, --group G              KMS group: its id, or part of its name ("Windows 10", "Office 2019").
  -p, --product P            Product (SKU): its activation id, or part of its name ("Enterprise").
  -a, --application A        Application: its id, or part of its name ("Windows", "Office").
  -n, --not-seen-since WHEN  Only machines silent since WHEN: a date (2026-01-31, or an ISO 8601
                             time) or a number of days (30 = silent for 30 days or more).
  -f, --format FORMAT        table (default), json or csv. Times are UTC; in JSON/CSV ISO 8601.
${COMMON_HELP}

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

export const TABLE_COLUMNS: readonly Column<ClientRecord>[] = [
  { header: 'WORKSTATION', value: (c) => c.workstation },
  { header: 'ADDRESS', value: (c) => c.address },
  { header: 'PRODUCT', value: (c) => c.skuName },
  { header: 'GROUP', value: (c) => c.groupName },
  { header: 'LAST SEEN', value: (c) => shortTime(c.lastSeenMs) },
  { header: 'COUNTED', value: (c) => c.active },
  { header: 'LAST RESULT', value: (c) => (c.lastHresult === 0 ? 'served' : formatHresult(c.lastHresult)) },
  { header: 'CMID', value: (c) => c.cmid },
];

export const CSV_COLUMNS: readonly Column<ClientRecord>[] = [
  { header: 'workstation', value: (c) => c.workstation },
  { header: 'address', value: (c) => c.address },
  { header: 'cmid', value: (c) => c.cmid },
  { header: 'application', value: (c) => c.applicationName },
  { header: 'applicationId', value: (c) => c.applicationId },
  { header: 'group', value: (c) => c.groupName },
  { header: 'groupId', value: (c) => c.groupId },
  { header: 'product', value: (c) => c.skuName },
  { header: 'activationId', value: (c) => c.skuId },
  { header: 'firstSeen', value: (c) => isoTime(c.firstSeenMs) },
  { header: 'lastSeen', value: (c) => isoTime(c.lastSeenMs) },
  { header: 'lastCounted', value: (c) => isoTime(c.lastCountedMs) },
  { header: 'counted', value: (c) => c.active },
  { header: 'licenseStatus', value: (c) => licenseStatusName(c.licenseStatus) },
  { header: 'vm', value: (c) => c.vm },
  { header: 'protocolVersion', value: (c) => c.protocolVersion },
  { header: 'requiredClientCount', value: (c) => c.requiredCount },
  { header: 'requests', value: (c) => c.requests },
  { header: 'lastResult', value: (c) => formatHresult(c.lastHresult) },
];

function jsonRecord(c: ClientRecord): Record<string, unknown> {
  return {
    ...c,
    firstSeen: isoTime(c.firstSeenMs),
    lastSeen: isoTime(c.lastSeenMs),
    lastCounted: isoTime(c.lastCountedMs),
    licenseStatusName: licenseStatusName(c.licenseStatus),
    lastResult: formatHresult(c.lastHresult),
  };
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

async function run(argv: readonly string[], io: CommandIo): Promise<number> {
  let values: {
    'data-dir'?: string; config?: string; help?: boolean; group?: string; product?: string; application?: string;
    'not-seen-since'?: string; format?: string;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        ...COMMON_OPTIONS,
        group: { type: 'string', short: 'g' },
        product: { type: 'string', short: 'p' },
        application: { type: 'string', short: 'a' },
        'not-seen-since': { type: 'string', short: 'n' },
        format: { type: 'string', short: 'f' },
      },
    }));
  } catch (err) {
    return usageError(io, 'clients', (err as Error).message);
  }
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.OK;
  }
  const format = parseFormat(values.format, ['table', 'json', 'csv']);
  if (format === undefined) return usageError(io, 'clients', `--format must be table, json or csv, not "${values.format}"`);
  const now = Date.now();
  const filter: { -readonly [K in keyof ClientFilter]: ClientFilter[K] } = {};
  if (values['not-seen-since'] !== undefined) {
    const since = parseNotSeenSince(values['not-seen-since'], now);
    if (since === undefined) {
      return usageError(io, 'clients', `--not-seen-since needs a date (2026-01-31) or a number of days, not "${values['not-seen-since']}"`);
    }
    filter.notSeenSinceMs = since;
  }
  for (const key of ['group', 'product', 'application'] as const) {
    const v = values[key];
    if (v !== undefined) {
      if (v.trim() === '') return usageError(io, 'clients', `--${key} needs a name or an id`);
      filter[key] = v;
    }
  }

  const { inventory } = openInventory('clients', values, io);
  try {
    const rows = inventory.clients(filter, now);
    if (format === 'csv') {
      writeChunked(io, (function* () {
        yield csvLine(CSV_COLUMNS.map((c) => c.header));
        for (const r of rows) yield csvLine(CSV_COLUMNS.map((c) => c.value(r)));
      })());
    } else if (format === 'json') {
      writeChunked(io, (function* () {
        let first = true;
        yield '[';
        for (const r of rows) {
          yield `${first ? '\n' : ',\n'}  ${JSON.stringify(jsonRecord(r))}`;
          first = false;
        }
        yield first ? ']\n' : '\n]\n';
      })());
    } else {
      const all = [...rows];
      if (all.length === 0) io.stdout.write('No machines match.\n');
      else io.stdout.write(formatTable(all, TABLE_COLUMNS) + `${all.length} machine${all.length === 1 ? '' : 's'}\n`);
    }
    return EXIT.OK;
  } finally {
    inventory.close();
  }
}

export const command: Command = {
  name: 'clients',
  summary: 'list the machines this host knows, filtered by group, product or silence; table, JSON or CSV',
  help: HELP,
  run: (argv, io) => withExit(() => run(argv, io)),
};
