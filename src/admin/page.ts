// The admin page as one self-contained HTML document (no scripts, no external assets): counts and
// why, what is still missing for each threshold, cloned machines, and recent clients.
import type { AdminSnapshot } from './http-server';
import type { ApplicationSummary, ClientRecord, Duplicates, HostIdentityInfo, RefusalSummary } from '../store/inventory';
import { ERRORS, describeHresult, formatHresult, isErrorCode } from '../errors';

export interface InventoryView {
  readonly summary: readonly ApplicationSummary[];
  readonly duplicates: Duplicates;
  readonly clients: readonly ClientRecord[];
  readonly clientsTruncated: boolean;
  readonly identity: HostIdentityInfo;
  /** Refusals of the last week by reason. */
  readonly refusals: readonly RefusalSummary[];
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function when(ms: number | null): string {
  return ms === null ? '—' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function applicationRows(summary: readonly ApplicationSummary[]): string {
  if (summary.length === 0) return '<p>No client has asked this host yet. Clients find it through DNS (<code>_vlmcs._tcp</code>) or a manual setting (<code>slmgr /skms</code>).</p>';
  return (
    '<table><tr><th>Application</th><th>Machines (30 days)</th><th>Threshold</th><th>Count sent</th><th>Clients activate?</th><th>Last activation</th></tr>' +
    summary
      .map(
        (a) =>
          `<tr><td>${escapeHtml(a.applicationName)}</td><td>${a.activeMachines}</td><td>${a.threshold}</td><td>${a.reportedCount}</td>` +
          `<td>${a.activates ? 'yes' : `<strong>no</strong>: ${a.missing} more machine${a.missing === 1 ? '' : 's'} must contact this host`}</td><td>${when(a.lastActivationMs)}</td></tr>` +
          a.groups
            .map((g) => `<tr class="sub"><td>↳ ${escapeHtml(g.groupName)}</td><td>${g.activeMachines}</td><td>${g.requiredCount}</td><td></td><td>${g.activates ? 'yes' : 'no'}</td><td>${when(g.lastActivationMs)}</td></tr>`)
            .join(''),
      )
      .join('') +
    '</table>'
  );
}

function duplicateRows(d: Duplicates): string {
  if (d.sharedCmids.length === 0 && d.sharedWorkstations.length === 0) return '<p>No duplicate machine ids seen.</p>';
  const cm = d.sharedCmids
    .map((c) => `<tr><td><code>${escapeHtml(c.cmid)}</code></td><td>${escapeHtml(c.workstations.join(', '))}</td><td>${escapeHtml(c.addresses.join(', '))}</td></tr>`)
    .join('');
  const ws = d.sharedWorkstations.map((w) => `<tr><td>${escapeHtml(w.workstation)}</td><td>${escapeHtml(w.cmids.join(', '))}</td></tr>`).join('');
  return (
    (cm ? `<p>One machine id used by several machines: these were cloned from an image that was not sysprepped (<code>sysprep /generalize</code>); each counts once.</p><table><tr><th>CMID</th><th>Workstations</th><th>Addresses</th></tr>${cm}</table>` : '') +
    (ws ? `<p>One name with several machine ids (re-imaged, or two machines with one name):</p><table><tr><th>Workstation</th><th>CMIDs</th></tr>${ws}</table>` : '')
  );
}

function clientRows(clients: readonly ClientRecord[], truncated: boolean): string {
  if (clients.length === 0) return '<p>None.</p>';
  return (
    '<table><tr><th>Workstation</th><th>Address</th><th>Product</th><th>Last seen</th><th>Counted</th><th>Last result</th></tr>' +
    clients
      .map(
        (c) =>
          `<tr><td>${escapeHtml(c.workstation)}</td><td>${escapeHtml(c.address)}</td><td>${escapeHtml(c.skuName)}</td><td>${when(c.lastSeenMs)}</td>` +
          `<td>${c.active ? 'yes' : 'no'}</td><td>${c.lastHresult === 0 ? 'served' : `refused ${formatHresult(c.lastHresult)}: ${escapeHtml(describeHresult(c.lastHresult) ?? '')}`}</td></tr>`,
      )
      .join('') +
    '</table>' +
    (truncated ? '<p>Only the first machines are shown; <code>kms-appliance clients --format csv</code> lists all.</p>' : '')
  );
}

function refusalRows(refusals: readonly RefusalSummary[]): string {
  if (refusals.length === 0) return '<p>No request refused in the last 7 days.</p>';
  return (
    '<table><tr><th>Client saw</th><th>Times</th><th>Last</th><th>Why, and what to change</th></tr>' +
    refusals
      .map(
        (r) =>
          `<tr><td>${formatHresult(r.hresult)}</td><td>${r.count}</td><td>${when(r.lastMs)}<br>${escapeHtml([r.lastWorkstation, r.lastAddress].filter(Boolean).join(' at '))}</td>` +
          `<td>${escapeHtml(isErrorCode(r.code) ? ERRORS[r.code].explain : r.code)}</td></tr>`,
      )
      .join('') +
    '</table>'
  );
}

function identityRows(id: HostIdentityInfo): string {
  if (!id.hwid && id.epids.length === 0) return '<p>Not generated yet.</p>';
  return (
    `<p>HwId <code>${escapeHtml(id.hwid?.toUpperCase() ?? '—')}</code>. Clients show the ePID as "KMS machine extended PID" (<code>slmgr /dlv</code>).</p>` +
    '<table><tr><th>Host-key group</th><th>ePID</th></tr>' +
    id.epids.map((e) => `<tr><td>${escapeHtml(e.hostKeyGroup)}</td><td><code>${escapeHtml(e.epid)}</code></td></tr>`).join('') +
    '</table>'
  );
}

export function renderAdminPage(s: AdminSnapshot): string {
  const inv = s.inventory as InventoryView;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>kms-appliance</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}tr.sub td{color:#555;font-size:90%}code{font-size:90%}
</style></head><body>
<h1>kms-appliance ${escapeHtml(s.version)}</h1>
<p>KMS on ${escapeHtml(s.kmsListen.join(', '))}${s.dnsListen.length ? `; DNS on ${escapeHtml(s.dnsListen.join(', '))}` : ''}.
Database <code>${escapeHtml(s.databaseFile)}</code>; catalogue <code>${escapeHtml(s.catalog)}</code>. As of ${escapeHtml(s.generatedAt)}.</p>
<h2>Counts</h2>
<p>The count is the number of distinct machines that asked in the last 30 days (never more than twice the threshold, like a Windows host). Clients activate once it reaches their threshold: 25 for Windows client editions, 5 for Windows Server and Office.</p>
${applicationRows(inv.summary)}
<h2>Refused requests (7 days)</h2>
${refusalRows(inv.refusals)}
<h2>Duplicate machine ids</h2>
${duplicateRows(inv.duplicates)}
<h2>Machines</h2>
${clientRows(inv.clients, inv.clientsTruncated)}
<h2>Host identity</h2>
${identityRows(inv.identity)}
</body></html>
`;
}
