// The admin page as one self-contained HTML document, mobile first: health, per application a bar
// of the count against the threshold, licences against use, 30 days of activity, refusals with
// what to change, and the machine list (searchable, sortable, a page at a time). No script; the
// one style block is allowed by its hash in the CSP.
import { createHash } from 'node:crypto';
import type { AdminSnapshot, ApplicationView, InventoryView } from './snapshot';
import { thresholdNotes, type HostIdentityInfo, type RefusalSummary, type ClientRecord } from '../store/inventory';
import type { ComplianceRow } from '../store/compliance';
import type { MachinePage, MachineQuery } from './inventory-reads';
import { ERRORS, describeHresult, formatHresult, isErrorCode } from '../errors';
import { escapeAttribute, escapeHtml } from './html';
import { activityChart, thresholdBar } from './chart';

const CSS = `
*{box-sizing:border-box}
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1c1c1c;background:#f6f6f4}
header,main{max-width:72rem;margin:0 auto;padding:0 1rem}
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:.5rem;padding-top:1rem}
h1{font-size:1.3rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.banner{padding:.75rem 1rem;border-radius:.4rem;margin:1rem 0}.banner ul{margin:.3rem 0 0;padding-left:1.2rem}
.ok{background:#e6f4e7;border:1px solid #9ccc9f}.bad{background:#fdecea;border:1px solid #ef9a9a}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.75rem}
.card{background:#fff;border:1px solid #ddd;border-radius:.4rem;padding:.75rem}
.card h3{margin:0 0 .3rem;font-size:1rem}.big{font-size:1.6rem;font-weight:600}
.bar{display:block;width:100%;height:.9rem;margin:.4rem 0}
.chart{display:block;width:100%;height:auto;background:#fff;border:1px solid #ddd;border-radius:.4rem}
.muted{color:#555;font-size:.9rem}.warn{color:#b71c1c;font-weight:600}
.scroll{overflow-x:auto;background:#fff;border:1px solid #ddd;border-radius:.4rem}
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .6rem;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
li,h3,.name{overflow-wrap:anywhere}
th{background:#f0f0ee;font-weight:600}td.n{text-align:right}
form.search{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0}
input,select,button{font:inherit;padding:.35rem .5rem}input[type=search]{flex:1 1 12rem;min-width:0}
code{font-size:.85em;word-break:break-all}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .8em;vertical-align:middle}
.served{background:#2f7d32}.refused{background:#c62828}
nav form{display:inline;margin-left:.5rem}
details.more summary{cursor:pointer;margin:.5rem 0}
@media (max-width:40rem){
.stack table,.stack tbody,.stack tr,.stack td{display:block;width:100%}
.stack tr:first-child{display:none}.stack tr{border-bottom:1px solid #ddd;padding:.4rem 0}
.stack td{border:0;padding:.1rem .6rem}.stack td.n{text-align:left}
.stack td[data-label]::before{content:attr(data-label) ": ";color:#555;font-size:.85rem}
}
`;

/** The CSP source for the style block: the page stays style-hashed, script-free. */
export const PAGE_STYLE_HASH = `'sha256-${createHash('sha256').update(CSS).digest('base64')}'`;

export interface PageView {
  readonly snapshot: AdminSnapshot;
  readonly machines: MachinePage;
  readonly query: MachineQuery;
  /** Whether the visitor logged in with the form (shows "Log out"). */
  readonly session: boolean;
}

function when(ms: number | null): string {
  return ms === null ? '—' : new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function healthBanner(s: AdminSnapshot): string {
  if (s.health.ok)
    return '<div class="banner ok" id="health"><strong>Healthy.</strong> Clients can activate; every answered activation is on disk.</div>';
  return (
    '<div class="banner bad" id="health" role="alert"><strong>Needs attention:</strong><ul>' +
    `${s.health.problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul></div>`
  );
}

function applicationCards(summary: readonly ApplicationView[]): string {
  if (summary.length === 0) {
    return (
      '<p>No client has asked this host yet. Clients find it through DNS (<code>_vlmcs._tcp</code>) ' +
      'or a manual setting (<code>slmgr /skms</code>).</p>'
    );
  }
  return (
    '<div class="cards">' +
    summary
      .map((a) => {
        // The threshold is the catalogue's (Inventory.summary): a forged RequiredClientCount does
        // not set what the page says is missing; it is named instead (thresholdNotes).
        const threshold = a.threshold;
        const need =
          threshold === 0
            ? 'No client asked in the last 30 days.'
            : a.missing === 0
              ? `Clients activate (they need ${threshold}).`
              : `<span class="warn">${plural(a.missing, 'more machine')} needed</span> before clients activate (they need ${threshold}).`;
        const odd = thresholdNotes(a)
          .map((n) => `<div class="warn">${escapeHtml(n)}</div>`)
          .join('');
        const capped =
          a.activeMachines > a.reportedCount && a.largestRequested === threshold
            ? ` Clients are told ${a.reportedCount}, twice the threshold.`
            : '';
        const groups = a.groups
          .map((g) => {
            const needs = g.requiredCount;
            return `<li>${escapeHtml(g.groupName)}: ${g.activeMachines}${a.activeMachines >= needs ? '' : ` (needs ${needs})`}</li>`;
          })
          .join('');
        return (
          `<section class="card app"><h3>${escapeHtml(a.applicationName)}</h3>` +
          `<div><span class="big">${a.activeMachines}</span> / ${threshold} machines</div>` +
          thresholdBar(a.activeMachines, threshold) +
          `<div>${need}${capped}</div>${odd}` +
          `<div class="muted">Last activation ${when(a.lastActivationMs)}</div>` +
          (groups
            ? `<details><summary class="muted">${plural(a.groups.length, 'product group')}</summary><ul>${groups}</ul></details>`
            : '') +
          '</section>'
        );
      })
      .join('') +
    '</div>'
  );
}

function complianceTable(rows: readonly ComplianceRow[]): string {
  if (rows.length === 0) return '<p>No machine counted in the last 30 days.</p>';
  return (
    '<div class="scroll stack"><table><tr><th>Product</th><th>Licences</th><th>In use</th><th></th></tr>' +
    rows
      .map((r) => {
        const state =
          r.licenses === null
            ? 'no licences on record (<code>entitlements</code>)'
            : r.scope === 'unmatched'
              ? 'matches no product in use'
              : r.overUse
                ? `<span class="warn">${r.excess} over</span>`
                : 'within licences';
        return (
          `<tr><td><strong>${escapeHtml(r.product)}</strong></td><td class="n" data-label="Licences">${r.licenses ?? '—'}</td>` +
          `<td class="n" data-label="In use">${r.activeMachines}</td><td>${state}</td></tr>`
        );
      })
      .join('') +
    '</table></div>'
  );
}

/** The last refused client: its name as text, its address apart, so a name cannot end in a fake " at <address>". */
function lastClient(r: RefusalSummary): string {
  const name = r.lastWorkstation ? `<br><strong class="name">${escapeHtml(r.lastWorkstation)}</strong>` : '';
  return r.lastAddress ? `${name}<br>from <code>${escapeHtml(r.lastAddress)}</code>` : name;
}

/** One entry a line: a name that contains ", " cannot pass for two names. */
function lines(items: readonly string[]): string {
  return `<span class="name">${items.map(escapeHtml).join('<br>')}</span>`;
}

function refusalTable(refusals: readonly RefusalSummary[]): string {
  if (refusals.length === 0) return '<p>No request refused in the last 7 days.</p>';
  return (
    '<div class="scroll stack"><table><tr><th>Client saw</th><th>Times</th><th>Last</th><th>Why, and what to change</th></tr>' +
    refusals
      .map(
        (r) =>
          `<tr><td><strong>${formatHresult(r.hresult)}</strong></td><td class="n" data-label="Times">${r.count}</td>` +
          `<td data-label="Last">${when(r.lastMs)}${lastClient(r)}</td>` +
          `<td data-label="What to change">${escapeHtml(isErrorCode(r.code) ? ERRORS[r.code].explain : r.code)}</td></tr>`,
      )
      .join('') +
    '</table></div>'
  );
}

function duplicateSection(d: InventoryView['duplicates']): string {
  if (d.sharedCmidsTotal === 0 && d.sharedWorkstationsTotal === 0) return '<p>No duplicate machine ids seen.</p>';
  const more = (shown: number, total: number): string =>
    total > shown ? `<p class="muted">${total - shown} more: <code>kms-appliance status</code> lists all.</p>` : '';
  const cm = d.sharedCmids
    .map((c) => `<tr><td><code>${escapeHtml(c.cmid)}</code></td><td>${lines(c.workstations)}</td>` + `<td>${lines(c.addresses)}</td></tr>`)
    .join('');
  const ws = d.sharedWorkstations
    .map(
      (w) =>
        `<tr><td>${lines([w.workstation])}</td><td><code>${lines(w.cmids)}</code>` +
        (w.cmidsTotal > w.cmids.length ? `<br><span class="muted">${w.cmidsTotal} machine ids in all</span>` : '') +
        '</td></tr>',
    )
    .join('');
  return (
    (cm
      ? '<p>One machine id used by several machines: cloned from an image that was not sysprepped ' +
        '(<code>sysprep /generalize</code>); each counts once.</p>' +
        `<div class="scroll"><table><tr><th>CMID</th><th>Workstations</th><th>Addresses</th></tr>${cm}</table></div>` +
        more(d.sharedCmids.length, d.sharedCmidsTotal)
      : '') +
    (ws
      ? '<p>One name with several machine ids (re-imaged, or two machines with one name):</p>' +
        `<div class="scroll"><table><tr><th>Workstation</th><th>CMIDs</th></tr>${ws}</table></div>` +
        more(d.sharedWorkstations.length, d.sharedWorkstationsTotal)
      : '')
  );
}

function sortLink(q: MachineQuery, sort: MachineQuery['sort'], label: string): string {
  if (q.sort === sort) return `<th aria-sort="${sort === 'seen' ? 'descending' : 'ascending'}">${label} ▾</th>`;
  return `<th><a href="/?q=${encodeURIComponent(q.q)}&amp;sort=${sort}#machines">${label}</a></th>`;
}

function machineSection(v: PageView, known: number): string {
  const q = v.query;
  const form =
    '<form class="search" method="get" action="/#machines" role="search">' +
    `<input type="search" name="q" value="${escapeAttribute(q.q)}" ` +
    'placeholder="Name, address or CMID" aria-label="Search machines" maxlength="100">' +
    `<select name="sort" aria-label="Sort by">${(
      [
        ['name', 'Name'],
        ['seen', 'Last seen'],
        ['application', 'Application'],
      ] as const
    )
      .map(([k, l]) => `<option value="${k}"${q.sort === k ? ' selected' : ''}>${l}</option>`)
      .join('')}</select><button type="submit">Search</button></form>`;
  const rows = v.machines.rows;
  const table =
    rows.length === 0
      ? `<p>${q.q ? `No machine matches “${escapeHtml(q.q)}”.` : 'None yet.'}</p>`
      : `<div class="scroll stack"><table id="machine-list"><tr>${sortLink(q, 'name', 'Workstation')}<th>Address</th>` +
        `${sortLink(q, 'application', 'Product')}${sortLink(q, 'seen', 'Last seen')}<th>Counted</th><th>Last result</th></tr>` +
        rows.map(machineRow).join('') +
        '</table></div>';
  const next = v.machines.next
    ? `<p><a id="next-page" href="/?q=${encodeURIComponent(q.q)}&amp;sort=${q.sort}` +
      `&amp;after=${encodeURIComponent(v.machines.next)}#machines">Next ${q.limit} →</a></p>`
    : '';
  const first = q.after ? '<p><a href="/?sort=' + q.sort + '&amp;q=' + encodeURIComponent(q.q) + '#machines">← First page</a></p>' : '';
  return (
    `<p class="muted">${known} machine${known === 1 ? '' : 's'} known. <code>kms-appliance clients --format csv</code> exports all.</p>` +
    `${form}${table}${first}${next}`
  );
}

function machineRow(c: ClientRecord): string {
  const result =
    c.lastHresult === 0 ? 'served' : `refused ${formatHresult(c.lastHresult)}: ${escapeHtml(describeHresult(c.lastHresult) ?? '')}`;
  return (
    // The CMID under the name: two machines may send one name from behind one address.
    `<tr><td><strong class="name">${escapeHtml(c.workstation || '—')}</strong><br><code class="muted">${escapeHtml(c.cmid)}</code></td>` +
    `<td data-label="Address">${escapeHtml(c.address)}</td>` +
    `<td data-label="Product">${escapeHtml(c.skuName)}</td><td data-label="Last seen">${when(c.lastSeenMs)}</td>` +
    `<td data-label="Counted">${c.active ? 'yes' : 'no'}</td><td data-label="Last result">${result}</td></tr>`
  );
}

function identitySection(id: HostIdentityInfo): string {
  if (!id.hwid && id.epids.length === 0) return '<p>Not generated yet.</p>';
  return (
    `<p>HwId <code>${escapeHtml(id.hwid?.toUpperCase() ?? '—')}</code>. ` +
    'Clients show the ePID as "KMS machine extended PID" (<code>slmgr /dlv</code>).</p>' +
    `<details class="more"><summary>ePID per host-key group (${id.epids.length})</summary>` +
    '<div class="scroll stack"><table><tr><th>Host-key group</th><th>ePID</th></tr>' +
    id.epids.map((e) => `<tr><td>${escapeHtml(e.hostKeyGroup)}</td><td><code>${escapeHtml(e.epid)}</code></td></tr>`).join('') +
    '</table></div></details>'
  );
}

function document(title: string, body: string, refreshSeconds?: number): string {
  const refresh = refreshSeconds ? `<meta http-equiv="refresh" content="${refreshSeconds}">` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">${refresh}
<title>${escapeHtml(title)}</title>
<style>${CSS}</style></head><body>
${body}
</body></html>
`;
}

export function renderAdminPage(v: PageView): string {
  const s = v.snapshot;
  const inv = s.inventory;
  const served = inv.activity.reduce((n, d) => n + d.served, 0);
  const refused = inv.activity.reduce((n, d) => n + d.refused, 0);
  const asOf = escapeHtml(s.generatedAt.slice(0, 19).replace('T', ' '));
  const logout = v.session ? '<form method="post" action="/logout"><button type="submit">Log out</button></form>' : '';
  const countsNote =
    'Distinct machines that asked in the last 30 days. Clients activate once the count reaches their threshold: ' +
    '25 for Windows client editions, 5 for Windows Server and Office.';
  const dns = s.dnsListen.length ? `; DNS on ${escapeHtml(s.dnsListen.join(', '))}` : '';
  const footer =
    `<p class="muted">KMS on ${escapeHtml(s.kmsListen.join(', '))}${dns}. ` +
    `Database <code>${escapeHtml(s.databaseFile)}</code>; catalogue <code>${escapeHtml(s.catalog)}</code>. ` +
    'Metrics for Prometheus at <code>/metrics</code>, health at <code>/healthz</code>.</p>';
  const body = `<header><h1>kms-appliance ${escapeHtml(s.version)}</h1><nav class="muted">As of ${asOf} UTC${logout}</nav></header>
<main>
${healthBanner(s)}
<h2>Counts</h2>
<p class="muted">${countsNote}</p>
${inv.clock === undefined ? '' : `<p class="warn" id="clock">${escapeHtml(inv.clock)}</p>`}
${applicationCards(inv.summary)}
<h2>Licences against use</h2>
${complianceTable(inv.compliance)}
<h2>Activations per day (30 days)</h2>
<p class="legend muted"><span class="served"></span>served ${served}<span class="refused"></span>refused ${refused}</p>
${activityChart(inv.activity)}
<h2>Refused requests (7 days)</h2>
${refusalTable(inv.refusals)}
<h2 id="machines">Machines</h2>
${machineSection(v, inv.machinesKnown)}
<h2>Duplicate machine ids</h2>
${duplicateSection(inv.duplicates)}
<h2>Host identity</h2>
${identitySection(inv.identity)}
${footer}
</main>`;
  return document('kms-appliance', body, 60);
}

export function renderLoginPage(message: string | undefined): string {
  const body = `<main><h1>kms-appliance</h1>
<p>Log in as <code>admin</code> with the password set by <code>kms-appliance admin set-password</code>.</p>
${message ? `<div class="banner bad" role="alert">${escapeHtml(message)}</div>` : ''}
<form method="post" action="/login" class="card" id="login">
<p><label>User<br><input name="user" value="admin" autocomplete="username" required></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required autofocus></label></p>
<p><button type="submit">Log in</button></p>
</form></main>`;
  return document('kms-appliance: log in', body);
}
