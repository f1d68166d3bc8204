// `kms-appliance report`: licence compliance. Active machines per product group against the
// licences configured in `entitlements`, with over-use flagged.

import { EXIT, defineCommand } from '../command';
import { describeOverlap, entitlementOverlaps, entitlementProblems } from '../entitlements';
import { COMMON_HELP, COMMON_OPTIONS, openInventory } from '../inventory-access';
import { formatCsv, formatTable, isoTime, type Column } from '../tabular';
import { inert, toJson } from '../terminal';
import { complianceReport, skusToKeep, type ComplianceRow } from '../../store/compliance';

const HELP = `Usage: kms-appliance report [--format table|json|csv] [--data-dir DIR] [--config FILE]

Compare the machines that activated in the last 30 days with the licences the site bought, as
configured under "entitlements": product is a KMS group ("Windows 10/11 2015 (Volume)"), an
application ("Windows") or one product ("Windows 10/11 Enterprise"), by its full catalogue name
or id; licenses is the number bought. Groups in use without an entitlement are listed too.

Options:
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

/** The CSV columns: the JSON rows' field names. */
const CSV_COLUMNS: readonly Column<ComplianceRow>[] = [
  { header: 'product', value: (r) => r.product },
  { header: 'scope', value: (r) => r.scope },
  { header: 'activeMachines', value: (r) => r.activeMachines },
  { header: 'licenses', value: (r) => r.licenses },
  { header: 'overUse', value: (r) => r.overUse },
  { header: 'excess', value: (r) => r.excess },
  { header: 'groups', value: (r) => r.groups.join('; ') },
];

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export const command = defineCommand({
  name: 'report',
  summary: 'licence compliance: active machines per product group against the configured entitlements',
  help: HELP,
  options: COMMON_OPTIONS,
  formats: true,
  run({ values, format, io }) {
    const { inventory, config, catalog } = openInventory(values, io);
    try {
      for (const problem of entitlementProblems(catalog, config.entitlements)) io.stderr.write(`kms-appliance report: ${problem}\n`);
      const now = Date.now();
      const rows = complianceReport(
        inventory.groupCounts(
          now,
          undefined,
          skusToKeep(config.entitlements, (id) => catalog.skuById(id) !== undefined),
        ),
        config.entitlements,
        inventory.nameResolver,
      );
      // complianceReport gives one row per entitlement first, in order: row i is entitlements[i].
      const overlaps = entitlementOverlaps(catalog, config.entitlements).map((o) => {
        const machines = rows[o.narrower]?.activeMachines ?? 0;
        return { ...o, machines, note: describeOverlap(config.entitlements, o, machines) };
      });
      if (format === 'json') {
        const report = {
          generatedAt: isoTime(now),
          windowDays: 30,
          database: inventory.file,
          entitlementsConfigured: config.entitlements.length,
          rows,
          overlaps,
        };
        io.stdout.write(`${toJson(report, 2)}\n`);
      } else if (format === 'csv') {
        io.stdout.write(formatCsv(rows, CSV_COLUMNS));
        for (const o of overlaps) io.stderr.write(`kms-appliance report: note: ${o.note}\n`);
      } else if (rows.length === 0) {
        io.stdout.write('No machine activated in the last 30 days and no entitlements are configured.\n');
      } else {
        const over = rows.filter((r) => r.overUse);
        const overUsed = over.map(
          (r) => `${inert(r.product)} (${plural(r.activeMachines, 'machine')}, ${plural(r.licenses ?? 0, 'licence')})`,
        );
        io.stdout.write(`Licence use over the last 30 days (${inventory.file}):\n\n${formatTable(rows, COLUMNS)}\n`);
        if (config.entitlements.length === 0) {
          // Nothing to compare with: saying "nothing is over-used" would reassure falsely.
          io.stdout.write(
            'No entitlements are configured, so nothing is compared with licences: add the licences bought under\n' +
              '"entitlements" in the configuration (kms-appliance config defaults shows the form).\n',
          );
        } else {
          io.stdout.write(over.length === 0 ? 'No product is used beyond its licences.\n' : `Over-used: ${overUsed.join(', ')}.\n`);
          for (const o of overlaps) io.stdout.write(`Counted twice: ${o.note}.\n`);
        }
      }
      return EXIT.OK;
    } finally {
      inventory.close();
    }
  },
});
