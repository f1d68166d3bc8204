// `kms-appliance status`: where the count stands per application and KMS group, in words an
// administrator can act on ("2 more machines must contact this host"), read from the database
// while the server runs.

import { EXIT, defineCommand } from '../command';
import { COMMON_HELP, COMMON_OPTIONS, openInventory } from '../inventory-access';
import { fleetStatusLines } from './fleet';
import { formatCsv, isoTime, shortTime, type Column } from '../tabular';
import { inert, toJson } from '../terminal';
import {
  clockCorrectionNote,
  thresholdNotes,
  type ApplicationSummary,
  type DatabaseInfo,
  type Duplicates,
  type HostIdentityInfo,
  type RefusalSummary,
} from '../../store/inventory';
import { ERRORS, formatHresult, isErrorCode } from '../../errors';

/** Refusals are summarised over the last week: long enough to catch a weekly renewal cycle. */
const REFUSAL_DAYS = 7;

function formatRefusals(refusals: readonly RefusalSummary[]): string[] {
  const total = refusals.reduce((n, r) => n + r.count, 0);
  if (total === 0) return [`No request refused in the last ${REFUSAL_DAYS} days.`];
  const out = [`Refused in the last ${REFUSAL_DAYS} days: ${total} request${total === 1 ? '' : 's'} (clients show the HRESULT):`];
  for (const r of refusals) {
    const from = [r.lastWorkstation, r.lastAddress].filter(Boolean).map(inert).join(' at ');
    out.push(
      `  ${formatHresult(r.hresult)} ×${r.count} (${r.code}), last ${shortTime(r.lastMs)}` +
        `${from ? ` from ${from}` : ''}${r.lastGroup ? `, ${inert(r.lastGroup)}` : ''}`,
    );
    if (isErrorCode(r.code)) out.push(`    ${ERRORS[r.code].explain}`);
  }
  return out;
}

const HELP = `Usage: kms-appliance status [--format table|json|csv] [--data-dir DIR] [--config FILE]

Show, per application (Windows, Office 2010, Office 2013+) and per KMS group, how many machines
contacted this host in the last 30 days, how many their products need before they activate,
and machines that look cloned without sysprep. Safe to run while the server runs. CSV has one
row per KMS group, with the same field names as the groups in the JSON.

Options:
${COMMON_HELP}

Exit codes: 0 ok, 1 database missing or unusable, 2 usage or configuration error.
`;

const WINDOW_DAYS = 30;

function describeApplication(a: ApplicationSummary): string {
  const machines = `${a.activeMachines} machine${a.activeMachines === 1 ? '' : 's'} in the last ${WINDOW_DAYS} days`;
  if (a.threshold === 0) return `${a.applicationName}: ${machines}; no client asked in that time.`;
  let line = `${a.applicationName}: ${machines}; clients need ${a.threshold}: `;
  if (a.activates) {
    line += `${a.applicationName} clients activate`;
  } else {
    const more = `${a.missing} more machine${a.missing === 1 ? '' : 's'}`;
    line += `${more} must contact this host before ${a.applicationName} clients activate`;
  }
  // PROTOCOL.md §7.2: a host never reports more than twice the threshold.
  const capped = a.activeMachines > a.reportedCount && a.largestRequested === a.threshold;
  if (capped) line += ` (clients are told ${a.reportedCount}, twice the threshold)`;
  return `${line}.`;
}

/** CMIDs listed per shared workstation name in the table view. */
const MAX_CMIDS_SHOWN = 8;

function formatSize(bytes: number): string {
  return bytes < 1048576 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`;
}

function formatStatus(
  info: DatabaseInfo,
  apps: readonly ApplicationSummary[],
  dups: Duplicates,
  identity?: HostIdentityInfo,
  refusals?: readonly RefusalSummary[],
  clock?: string,
): string {
  const out: string[] = [];
  out.push(
    `Database: ${info.file} (${plural(info.clients, 'machine')} known, ${plural(info.events, 'event')}, ${formatSize(info.sizeBytes)})`,
  );
  if (clock !== undefined) out.push(clock);
  out.push('');
  if (apps.length === 0) out.push('No machine has asked this host for activation yet.');
  for (const a of apps) {
    out.push(describeApplication(a));
    if (a.lastActivationMs !== null) out.push(`  last activation ${shortTime(a.lastActivationMs)}`);
    // A request that asked for another threshold is named, never used as what is needed.
    for (const note of thresholdNotes(a)) out.push(`  ${inert(note)}`);
    const names = a.groups.map((g) => inert(g.groupName));
    const width = Math.max(0, ...names.map((n) => n.length));
    for (const [i, g] of a.groups.entries()) {
      const state = g.activates ? 'activating' : `not activating (needs ${g.requiredCount - a.activeMachines} more)`;
      // The group name comes from the catalogue, or describes an unknown id: printed inert all the same.
      out.push(
        `  ${names[i]!.padEnd(width)}  ${String(g.activeMachines).padStart(6)} machine${g.activeMachines === 1 ? ' ' : 's'}` +
          `  need ${String(g.requiredCount).padEnd(3)}  ${state}; last ${shortTime(g.lastActivationMs)}`,
      );
    }
    out.push('');
  }
  if (dups.sharedCmidsTotal > 0) {
    out.push(`Duplicate CMIDs (one machine ID under several names or addresses: an image deployed without sysprep /generalize?):`);
    for (const d of dups.sharedCmids) {
      const parts = [`names ${d.workstations.map(inert).join(', ')}`];
      if (d.addresses.length > 1) parts.push(`addresses ${d.addresses.map(inert).join(', ')}`);
      const switches = d.workstationChanges + d.addressChanges;
      parts.push(`switched ${switches} time${switches === 1 ? '' : 's'}`);
      out.push(`  ${d.cmid}${d.applications.length > 0 ? ` (${d.applications.join(', ')})` : ''}: ${parts.join('; ')}`);
    }
    if (dups.sharedCmidsTotal > dups.sharedCmids.length)
      out.push(
        `  and ${dups.sharedCmidsTotal - dups.sharedCmids.length} more (machine ids invented by a client? see the refusals and the log)`,
      );
    out.push('');
  }
  if (dups.sharedWorkstationsTotal > 0) {
    out.push('Workstation names with several CMIDs (re-imaged, or two machines with one name):');
    for (const w of dups.sharedWorkstations) {
      // An image cloned to hundreds of machines is one line, not hundreds of GUIDs: --format json lists 100 of them.
      const total = w.machines ?? w.cmids.length;
      const shown =
        total > MAX_CMIDS_SHOWN
          ? `${w.cmids.slice(0, MAX_CMIDS_SHOWN).join(', ')} and ${total - MAX_CMIDS_SHOWN} more`
          : w.cmids.join(', ');
      out.push(`  ${inert(w.workstation)}${w.application ? ` (${w.application})` : ''}: ${total} CMIDs: ${shown}`);
    }
    if (dups.sharedWorkstationsTotal > dups.sharedWorkstations.length)
      out.push(`  and ${dups.sharedWorkstationsTotal - dups.sharedWorkstations.length} more names`);
    out.push('');
  }
  if (dups.sharedCmidsTotal === 0 && dups.sharedWorkstationsTotal === 0) out.push('No duplicate CMIDs.');
  if (refusals) out.push('', ...formatRefusals(refusals));
  if (identity && (identity.hwid || identity.epids.length > 0)) {
    // What `slmgr /dlv` on a client shows as "KMS machine extended PID", and the HwId it records.
    out.push('');
    out.push(`Host identity: HwId ${identity.hwid?.toUpperCase() ?? '(not yet generated)'}; the ePID clients see, per host-key group:`);
    const width = Math.max(0, ...identity.epids.map((e) => e.hostKeyGroup.length));
    for (const e of identity.epids) out.push(`  ${e.hostKeyGroup.padEnd(width)}  ${e.epid}`);
  }
  return out.join('\n').replace(/\n+$/, '') + '\n';
}

function statusJson(
  info: DatabaseInfo,
  apps: readonly ApplicationSummary[],
  dups: Duplicates,
  nowMs: number,
  identity?: HostIdentityInfo,
  refusals?: readonly RefusalSummary[],
  clock?: string,
): unknown {
  return {
    ...(clock !== undefined ? { clock } : {}),
    ...(refusals
      ? {
          refusals: {
            days: REFUSAL_DAYS,
            byReason: refusals.map((r) => ({ ...r, hresult: formatHresult(r.hresult), last: isoTime(r.lastMs) })),
          },
        }
      : {}),
    database: info,
    ...(identity ? { hostIdentity: identity } : {}),
    generatedAt: isoTime(nowMs),
    windowDays: WINDOW_DAYS,
    applications: apps.map((a) => ({
      ...a,
      summary: describeApplication(a),
      notes: thresholdNotes(a),
      lastActivation: isoTime(a.lastActivationMs),
      groups: a.groups.map((g) => ({ ...g, lastActivation: isoTime(g.lastActivationMs) })),
    })),
    duplicates: dups,
  };
}

interface GroupRow {
  readonly application: ApplicationSummary;
  readonly group: ApplicationSummary['groups'][number];
}

/** The CSV rows: one per KMS group, fields named as in the JSON. */
const CSV_COLUMNS: readonly Column<GroupRow>[] = [
  { header: 'applicationId', value: (r) => r.application.applicationId },
  { header: 'applicationName', value: (r) => r.application.applicationName },
  { header: 'groupId', value: (r) => r.group.groupId },
  { header: 'groupName', value: (r) => r.group.groupName },
  { header: 'activeMachines', value: (r) => r.group.activeMachines },
  { header: 'requiredCount', value: (r) => r.group.requiredCount },
  { header: 'activates', value: (r) => r.group.activates },
  { header: 'lastActivation', value: (r) => isoTime(r.group.lastActivationMs) },
];

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export const command = defineCommand({
  name: 'status',
  summary: 'machines counted per application and product group, and what is missing for activation',
  help: HELP,
  options: COMMON_OPTIONS,
  formats: true,
  run({ values, format, io }) {
    const { inventory, config, catalog } = openInventory(values, io);
    try {
      const now = Date.now();
      const info = inventory.info();
      // What each product group's clients need comes from the catalogue, not from what a client asked.
      const apps = inventory.summary(now, (groupId) => catalog.kmsGroupById(groupId)?.nCountPolicy);
      if (format === 'csv') {
        io.stdout.write(
          formatCsv(
            apps.flatMap((application) => application.groups.map((group) => ({ application, group }))),
            CSV_COLUMNS,
          ),
        );
        return EXIT.OK;
      }
      const dups = inventory.duplicates(now);
      const identity = inventory.hostIdentity();
      const refusals = inventory.refusalsSince(now - REFUSAL_DAYS * 86_400_000);
      const clock = clockCorrectionNote(inventory.clockCorrection(), now);
      io.stdout.write(
        format === 'json'
          ? `${toJson(statusJson(info, apps, dups, now, identity, refusals, clock), 2)}\n`
          : formatStatus(info, apps, dups, identity, refusals, clock),
      );
      if (format === 'table') for (const line of fleetStatusLines(inventory.file, config.fleet.postgres)) io.stdout.write(`${line}\n`);
      return EXIT.OK;
    } finally {
      inventory.close();
    }
  },
});
