// Entitlement names are compared with the catalogue the way `report` matches them: the exact
// name or id of an application, KMS group or product (case-insensitive). Anything else would
// only show as a licence nobody uses, so `config check` refuses it and `report` warns. So are two
// entitlements naming one thing: the report compares each with all of that thing's machines, so
// two purchases written as two entries would both show as over-used.
import type { AppConfig } from '../config/defaults';
import { MAX_NAME_LENGTH, type Catalog } from '../catalog/catalog';
import { catalogEntries, explainUnresolved, resolveName, type NamedEntry } from '../catalog/name-match';
import { inert } from './terminal';

/** The order `report` tries (store/compliance.ts): a KMS group, then an application, then a product. */
const MATCH_ORDER = ['group', 'application', 'sku'] as const;
const KIND_WORDS: Readonly<Record<NamedEntry['kind'], string>> = { group: 'product group', application: 'application', sku: 'product' };

/** What was typed, inert and at most a line long. */
function shown(text: string): string {
  return inert(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** Every exact name and id of the catalogue, lowercased, to what it names (first kind in MATCH_ORDER wins). */
function exactNames(catalog: Catalog): Map<string, NamedEntry> {
  const byKey = new Map<string, NamedEntry>();
  for (const kind of MATCH_ORDER) {
    for (const e of catalogEntries(catalog, [kind])) {
      for (const key of [e.id.toLowerCase(), e.name.toLowerCase()]) if (!byKey.has(key)) byKey.set(key, e);
    }
  }
  return byKey;
}

/** An entitlement whose machines all count against a wider one as well (a group of an application, a product of either). */
interface EntitlementOverlap {
  /** Index in config.entitlements of the application or group entry. */
  readonly wider: number;
  /** Index of the group or product entry inside it. */
  readonly narrower: number;
}

/** The KMS group and application an entry lies within, as "kind:id" keys. */
function containers(catalog: Catalog, entry: NamedEntry): string[] {
  if (entry.kind === 'group') {
    const g = catalog.kmsGroupById(entry.id);
    return g ? [`application:${g.application.id}`] : [];
  }
  if (entry.kind === 'sku') {
    const sku = catalog.skuById(entry.id);
    return sku ? [`group:${sku.group.id}`, `application:${sku.group.application.id}`] : [];
  }
  return [];
}

/**
 * Pairs of entitlements where one lies within the other ("Windows" and "Windows Server 2022"):
 * the report compares each with its machines, so the narrower one's machines count against both.
 * Not refused: a site may mean a share of a wider purchase; the report says it either way.
 */
export function entitlementOverlaps(catalog: Catalog, entitlements: AppConfig['entitlements']): EntitlementOverlap[] {
  const byKey = exactNames(catalog);
  const resolved = entitlements.map((e) => byKey.get(e.product.trim().toLowerCase()));
  const overlaps: EntitlementOverlap[] = [];
  resolved.forEach((inner, narrower) => {
    if (inner === undefined) return;
    const within = containers(catalog, inner);
    resolved.forEach((outer, wider) => {
      if (outer !== undefined && within.includes(`${outer.kind}:${outer.id}`)) overlaps.push({ wider, narrower });
    });
  });
  return overlaps;
}

/** The sentence `report` prints for an overlap; `machines` = the narrower entry's active machines. */
export function describeOverlap(entitlements: AppConfig['entitlements'], o: EntitlementOverlap, machines: number): string {
  const wide = entitlements[o.wider]!;
  const narrow = entitlements[o.narrower]!;
  return (
    `entitlements[${o.narrower}] ("${shown(narrow.product.trim())}") lies within entitlements[${o.wider}] ` +
    `("${shown(wide.product.trim())}"): its ${machines} machine${machines === 1 ? '' : 's'} count against both ` +
    `(if the ${narrow.licenses} licences are part of the ${wide.licenses}, that is as meant; if they were bought ` +
    'separately, list the wider purchase by its groups instead)'
  );
}

/** One line per entitlement that names nothing in the catalogue, with the likely meant name, or repeats an earlier one. */
export function entitlementProblems(catalog: Catalog, entitlements: AppConfig['entitlements']): string[] {
  const byKey = exactNames(catalog);
  const problems: string[] = [];
  const firstFor = new Map<NamedEntry, number>();
  entitlements.forEach((e, i) => {
    const wanted = e.product.trim();
    const entry = byKey.get(wanted.toLowerCase());
    if (entry !== undefined) {
      const first = firstFor.get(entry);
      if (first === undefined) firstFor.set(entry, i);
      else {
        const earlier = entitlements[first]!;
        problems.push(
          `entitlements[${i}].product: "${shown(wanted)}" names the same ${KIND_WORDS[entry.kind]} as entitlements[${first}] ` +
            `("${shown(earlier.product.trim())}"), and each would be compared with all its machines: ` +
            `put the licences in one entry (${earlier.licenses} + ${e.licenses} = ${earlier.licenses + e.licenses})`,
        );
      }
      return;
    }
    // Longer than any catalogue name can be: not worth a fuzzy search, whose cost grows with the
    // words typed (a 1 MiB configuration allows a lot of them).
    if (wanted.length > MAX_NAME_LENGTH) {
      problems.push(
        `entitlements[${i}].product: "${shown(wanted)}" is longer than any name in the catalogue (${wanted.length} characters)`,
      );
      return;
    }
    const r = resolveName(catalog, wanted, ['application', 'group', 'sku']);
    const hint =
      'found' in r
        ? ` (did you mean "${r.found.name}"? entitlements need the exact catalogue name)`
        : ` — ${explainUnresolved(wanted, r, 'name').replace(/^no name named like "[^"]*"/, 'nothing similar')}`;
    problems.push(
      `entitlements[${i}].product: "${shown(wanted)}" names no application, product group or product of the catalogue${inert(hint)}`,
    );
  });
  return problems;
}
