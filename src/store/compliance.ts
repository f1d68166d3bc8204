// The licence compliance report: active machines per product group against the licences the
// administrator bought (config.entitlements), with over-use flagged. KMS itself enforces no
// licence counts; this is the appliance telling the site where it stands.

import type { GroupCount } from './inventory';
import type { NameResolver } from './name-resolver';

export interface Entitlement {
  /** A KMS group or an application, by id or name (names match case-insensitively, in full). */
  readonly product: string;
  readonly licenses: number;
}

export interface ComplianceRow {
  /** As configured, or the group name for groups without an entitlement. */
  readonly product: string;
  /** What the entitlement matched; 'unmatched' = no client of this product was seen. */
  readonly scope: 'group' | 'application' | 'unmatched';
  /** Names of the KMS groups whose machines are counted against it. */
  readonly groups: readonly string[];
  /** null: in use without an entitlement configured. */
  readonly licenses: number | null;
  readonly activeMachines: number;
  readonly overUse: boolean;
  /** Machines beyond the licences (0 when compliant or without entitlement). */
  readonly excess: number;
}

export function complianceReport(counts: readonly GroupCount[], entitlements: readonly Entitlement[], names: NameResolver): ComplianceRow[] {
  const covered = new Set<GroupCount>();
  const rows: ComplianceRow[] = [];
  for (const e of entitlements) {
    const wanted = e.product.trim().toLowerCase();
    const exact = (id: string, name: string): boolean => id === wanted || name.toLowerCase() === wanted;
    let scope: ComplianceRow['scope'] = 'group';
    let hit = counts.filter((c) => exact(c.groupId, names.groupName(c.groupId)));
    if (hit.length === 0) {
      scope = 'application';
      hit = counts.filter((c) => exact(c.applicationId, names.applicationName(c.applicationId)));
    }
    if (hit.length === 0) scope = 'unmatched';
    for (const c of hit) covered.add(c);
    const active = hit.reduce((n, c) => n + c.activeMachines, 0);
    rows.push({
      product: e.product,
      scope,
      groups: hit.map((c) => names.groupName(c.groupId)),
      licenses: e.licenses,
      activeMachines: active,
      overUse: active > e.licenses,
      excess: Math.max(0, active - e.licenses),
    });
  }
  for (const c of counts) {
    if (covered.has(c) || c.activeMachines === 0) continue;
    rows.push({
      product: names.groupName(c.groupId),
      scope: 'group',
      groups: [names.groupName(c.groupId)],
      licenses: null,
      activeMachines: c.activeMachines,
      overUse: false,
      excess: 0,
    });
  }
  return rows;
}
