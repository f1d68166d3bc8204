// Entitlement names are compared with the catalogue the way `report` matches them: the exact
// name or id of an application, KMS group or product (case-insensitive). Anything else would
// only show as a licence nobody uses, so `config check` refuses it and `report` warns.
import type { AppConfig } from '../config/defaults';
import type { Catalog } from '../catalog/catalog';
import { catalogEntries, explainUnresolved, resolveName } from '../catalog/name-match';

/** One line per entitlement that names nothing in the catalogue, with the likely meant name. */
export function entitlementProblems(catalog: Catalog, entitlements: AppConfig['entitlements']): string[] {
  const known = new Set<string>();
  for (const e of catalogEntries(catalog, ['application', 'group', 'sku'])) known.add(e.id).add(e.name.toLowerCase());
  const problems: string[] = [];
  entitlements.forEach((e, i) => {
    const wanted = e.product.trim();
    if (known.has(wanted.toLowerCase())) return;
    const r = resolveName(catalog, wanted, ['application', 'group', 'sku']);
    const hint =
      'found' in r
        ? ` (did you mean "${r.found.name}"? entitlements need the exact catalogue name)`
        : ` — ${explainUnresolved(wanted, r, 'name').replace(/^no name named like "[^"]*"/, 'nothing similar')}`;
    problems.push(`entitlements[${i}].product: "${wanted}" names no application, product group or product of the catalogue${hint}`);
  });
  return problems;
}
