// The licence compliance report: active machines per product group against the licences the
// administrator bought (config.entitlements), with over-use flagged. KMS itself enforces no
// licence counts; this is the appliance telling the site where it stands.

import type { GroupCount } from './inventory';
import type { NameResolver } from '../catalog/name-resolver';

export interface Entitlement {
  /**
   * A KMS group, an application or a single product (SKU), by id or by its full catalogue name
   * (case-insensitive); tried in that order.
   */
  readonly product: string;
  readonly licenses: number;
}

export interface ComplianceRow {
  /** As configured, or the group name for groups in use without an entitlement. */
  readonly product: string;
  /** What the entitlement matched; 'unmatched' = no active machine has this product. */
  readonly scope: 'group' | 'application' | 'sku' | 'unmatched';
  /** Names of the KMS groups whose machines are counted against it. */
  readonly groups: readonly string[];
  /** null: in use without an entitlement configured. */
  readonly licenses: number | null;
  readonly activeMachines: number;
  readonly overUse: boolean;
  /** Machines beyond the licences (0 when compliant or without entitlement). */
  readonly excess: number;
}

/**
 * The SKUs the report needs one by one (Inventory.groupCounts' keepSku): those the catalogue
 * knows, and those an entitlement names by id. Unknown ones (a new edition, or ids a client
 * invents) count only towards their group and application. Decided on the id: describing half a
 * million invented ones by name took 60 MB of strings.
 */
export function skusToKeep(entitlements: readonly Entitlement[], knownSku: (skuId: string) => boolean): (skuId: string) => boolean {
  const named = new Set(entitlements.map((e) => e.product.trim().toLowerCase()));
  return (skuId) => named.has(skuId) || knownSku(skuId);
}

export function complianceReport(
  counts: readonly GroupCount[],
  entitlements: readonly Entitlement[],
  names: NameResolver,
): ComplianceRow[] {
  const covered = new Set<GroupCount>();
  const rows: ComplianceRow[] = [];
  for (const e of entitlements) {
    const wanted = e.product.trim().toLowerCase();
    const exact = (id: string, name: string): boolean => id === wanted || name.toLowerCase() === wanted;
    const scopes = [
      ['group', (c: GroupCount) => exact(c.groupId, names.groupName(c.groupId))],
      ['application', (c: GroupCount) => exact(c.applicationId, names.applicationName(c.applicationId))],
      ['sku', (c: GroupCount) => exact(c.skuId, names.skuName(c.skuId, c.groupId))],
    ] as const;
    let scope: ComplianceRow['scope'] = 'unmatched';
    let hit: GroupCount[] = [];
    for (const [s, test] of scopes) {
      hit = counts.filter(test);
      if (hit.length > 0) {
        scope = s;
        break;
      }
    }
    for (const c of hit) covered.add(c);
    const active = hit.reduce((n, c) => n + c.activeMachines, 0);
    rows.push({
      product: e.product,
      scope,
      groups: [...new Set(hit.map((c) => names.groupName(c.groupId)))],
      licenses: e.licenses,
      activeMachines: active,
      overUse: active > e.licenses,
      excess: Math.max(0, active - e.licenses),
    });
  }
  // Machines no entitlement covers, per group: in use without a licence on record.
  const uncovered = new Map<string, number>();
  for (const c of counts) {
    if (!covered.has(c) && c.activeMachines > 0) uncovered.set(c.groupId, (uncovered.get(c.groupId) ?? 0) + c.activeMachines);
  }
  const unlicensed = [...uncovered].map(([groupId, active]) => ({ name: names.groupName(groupId), active }));
  unlicensed.sort((a, b) => a.name.localeCompare(b.name));
  for (const { name, active } of unlicensed) {
    rows.push({ product: name, scope: 'group', groups: [name], licenses: null, activeMachines: active, overUse: false, excess: 0 });
  }
  return rows;
}
