// `kms-appliance report`: licence compliance. Active machines per product group against the
// licences configured in `entitlements`, with over-use flagged.

import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command, type CommandIo } from '../command';
import { COMMON_HELP, COMMON_OPTIONS, openInventory, parseFormat, unknownEntitlements, withExit } from '../inventory-access';
import { formatCsv, formatTable, isoTime, type Column } from '../tabular';
import { complianceReport, type ComplianceRow } from '../../store/compliance';

const HELP = `Usage: kms-appliance report [--format table|json|csv] [--data-dir DIR] [--config FILE]

Compare the machines that activated in the last 30 days with the licences the site bought, as
configured under "entitlements": product is a KMS group ("Windows 10/11 2015 (Volume)"), an
application ("Windows") or one product ("Windows 10/11 Enterprise"), by its full catalogue name
or id; licenses is the number bought. Groups in use without an entitlement are listed too.

Options:
  -f, --format FORMAT  table (default), json or csv.
${COMMON_HELP}

Exit codes: 0 ok (also when licences are over-used: see the OVER-USE column),
1 database missing or unusable, 2 usage or configuration error.
`;

const COLUMNS: readonly Column<ComplianceRow>[] = [
  { header: 'PRODUCT', value: (r) => r.product },
  { header: 'SCOPE', value: (r) => r.scope },
  { header: 'ACTIVE', value: (r) => r.activeMachines, right: true },
  { header: 'LICENSES', value: (r) => (r.licenses === null ? 'none' : r.licenses), right: true },
  { header: 'OVER-USE', value: (r) => (r.overUse ? `YES (+${r.excess})` : r.licenses === null ? 'no entitlement' : 'no') },
  { header: 'GROUPS', value: (r) => r.groups.join('; ') },
];

const CSV_COLUMNS: readonly Column<ComplianceRow>[] = [
  { header: 'product', value: (r) => r.product },
  { header: 'scope', value: (r) => r.scope },
  { header: 'activeMachines', value: (r) => r.activeMachines },
  { header: 'licenses', value: (r) => r.licenses },
  { header: 'overUse', value: (r) => r.overUse },
  { header: 'excess', value: (r) => r.excess },
  { header: 'groups', value: (r) => r.groups.join('; ') },
];

async function run(argv: readonly string[], io: CommandIo): Promise<number> {
  let values: { 'data-dir'?: string; config?: string; help?: boolean; format?: string };
  try {
    ({ values } = parseArgs({ args: [...argv], strict: true, options: { ...COMMON_OPTIONS, format: { type: 'string', short: 'f' } } }));
  } catch (err) {
    return usageError(io, 'report', (err as Error).message);
  }
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT.OK;
  }
  const format = parseFormat(values.format, ['table', 'json', 'csv']);
  if (format === undefined) return usageError(io, 'report', `--format must be table, json or csv, not "${values.format}"`);

  const { inventory, config, catalog } = openInventory('report', values, io);
  try {
    for (const name of unknownEntitlements(catalog, config.entitlements)) {
      io.stderr.write(
        `kms-appliance report: entitlement "${name}" names no application, product group or product of the catalogue; ` +
          'use a group name from `kms-appliance status`, an application ("Windows") or a product from `kms-appliance activate --list-products`\n',
      );
    }
    const now = Date.now();
    const rows = complianceReport(inventory.groupCounts(now), config.entitlements, inventory.nameResolver);
    if (format === 'json') {
      io.stdout.write(`${JSON.stringify({ generatedAt: isoTime(now), windowDays: 30, database: inventory.file, rows }, null, 2)}\n`);
    } else if (format === 'csv') {
      io.stdout.write(formatCsv(rows, CSV_COLUMNS));
    } else if (rows.length === 0) {
      io.stdout.write('No machine activated in the last 30 days and no entitlements are configured.\n');
    } else {
      const over = rows.filter((r) => r.overUse);
      io.stdout.write(`Licence use over the last 30 days (${inventory.file}):\n\n${formatTable(rows, COLUMNS)}\n`);
      io.stdout.write(
        over.length === 0
          ? 'No product is used beyond its licences.\n'
          : `Over-used: ${over.map((r) => `${r.product} (${r.activeMachines} machines, ${r.licenses} licences)`).join(', ')}.\n`,
      );
    }
    return EXIT.OK;
  } finally {
    inventory.close();
  }
}

export const command: Command = {
  name: 'report',
  summary: 'licence compliance: active machines per product group against the configured entitlements',
  help: HELP,
  run: (argv, io) => withExit(() => run(argv, io)),
};
