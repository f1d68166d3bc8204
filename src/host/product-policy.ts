// Which KMS groups this host activates, and from which host-key group (PROTOCOL.md §7.1 step 6,
// §7.4). Everything is decided once from the catalogue and the configuration; a request is then
// one Map lookup.
import type { Catalog, KmsGroup } from '../catalog/catalog';
import type { HostKeyGroup } from '../catalog/types';
import { ConfigError } from '../errors';
import { lowerId } from '../protocol/guid';

type PolicyRefusalCode =
  | 'KMS_ERR_KMS_UNKNOWN_GROUP'
  | 'KMS_ERR_KMS_WRONG_APPLICATION'
  | 'KMS_ERR_KMS_RETAIL_GROUP'
  | 'KMS_ERR_KMS_PREVIEW_GROUP'
  | 'KMS_ERR_KMS_NO_HOST_KEY_GROUP';

type PolicyDecision =
  | { readonly ok: true; readonly group: KmsGroup; readonly hostKeyGroup: HostKeyGroup }
  /** `group` is there whenever the KMS group is in the catalogue, so refusals can name it. */
  | { readonly ok: false; readonly code: PolicyRefusalCode; readonly group?: KmsGroup };

export interface ProductPolicyOptions {
  /** Host-key group names or ids (config host.hostKeyGroups); empty = the default set of §7.4. */
  readonly hostKeyGroups: readonly string[];
  readonly allowRetail: boolean;
  readonly allowPreview: boolean;
}

export interface ProductPolicy {
  decide(applicationId: string, kmsCountedId: string): PolicyDecision;
  /** The configured host-key groups, in catalogue order. */
  readonly configuredHostKeyGroups: readonly HostKeyGroup[];
  /** The configured host-key groups chosen for at least one served KMS group (each needs an ePID). */
  readonly hostKeyGroupsInUse: readonly HostKeyGroup[];
  /** Every KMS group this host activates, with the host-key group that answers it. */
  readonly served: readonly { readonly group: KmsGroup; readonly hostKeyGroup: HostKeyGroup }[];
}

/** §7.4 "configured host-key groups": what a host with no host.hostKeyGroups setting uses. */
export function isDefaultHostKeyGroup(h: HostKeyGroup): boolean {
  return !h.isLab && !h.isPreview && h.groupId !== null && h.minKeyId !== null && h.maxKeyId !== null;
}

export function buildProductPolicy(catalog: Catalog, options: ProductPolicyOptions): ProductPolicy {
  const configured = resolveConfigured(catalog, options.hostKeyGroups);
  const order = new Map(catalog.hostKeyGroups.map((h, i) => [h.id.toLowerCase(), i]));

  // Per KMS group: the application it belongs to and the answer for a request naming that
  // application. The application check stays per request because it depends on the request.
  const byGroup = new Map<string, { applicationId: string; decision: PolicyDecision }>();
  const served: { group: KmsGroup; hostKeyGroup: HostKeyGroup }[] = [];
  const inUse = new Set<HostKeyGroup>();

  const activators = new Map<string, HostKeyGroup[]>();
  for (const h of configured) {
    for (const k of h.activatesKmsGroups) {
      const key = k.toLowerCase();
      const list = activators.get(key) ?? [];
      list.push(h);
      activators.set(key, list);
    }
  }

  for (const app of catalog.applications) {
    for (const raw of app.kmsGroups) {
      const group = catalog.kmsGroupById(raw.id)!;
      const candidates = activators.get(group.id.toLowerCase()) ?? [];
      let decision: PolicyDecision;
      // §7.1 step 6: retail and preview groups are refused even where a host key lists them.
      if (group.isRetail && !options.allowRetail) decision = { ok: false, code: 'KMS_ERR_KMS_RETAIL_GROUP', group };
      else if (group.isPreview && !options.allowPreview) decision = { ok: false, code: 'KMS_ERR_KMS_PREVIEW_GROUP', group };
      else {
        const chosen = chooseHostKeyGroup(candidates, order);
        if (chosen === undefined) decision = { ok: false, code: 'KMS_ERR_KMS_NO_HOST_KEY_GROUP', group };
        else {
          decision = { ok: true, group, hostKeyGroup: chosen };
          served.push({ group, hostKeyGroup: chosen });
          inUse.add(chosen);
        }
      }
      byGroup.set(group.id.toLowerCase(), { applicationId: app.id.toLowerCase(), decision: Object.freeze(decision) });
    }
  }

  const unknown: PolicyDecision = Object.freeze({ ok: false, code: 'KMS_ERR_KMS_UNKNOWN_GROUP' });
  const wrongApp = new Map<string, PolicyDecision>();
  for (const id of byGroup.keys()) {
    wrongApp.set(id, Object.freeze({ ok: false, code: 'KMS_ERR_KMS_WRONG_APPLICATION', group: catalog.kmsGroupById(id)! }));
  }

  return Object.freeze({
    decide(applicationId: string, kmsCountedId: string): PolicyDecision {
      // GUIDs from the codec are already lowercase; lowering keeps other callers honest.
      const key = lowerId(kmsCountedId);
      const entry = byGroup.get(key);
      if (entry === undefined) return unknown;
      if (entry.applicationId !== lowerId(applicationId)) return wrongApp.get(key)!;
      return entry.decision;
    },
    configuredHostKeyGroups: Object.freeze(configured),
    hostKeyGroupsInUse: Object.freeze(catalog.hostKeyGroups.filter((h) => inUse.has(h))),
    served: Object.freeze(served),
  });
}

/**
 * §7.4 "choosing the host-key group": the latest releaseDate wins; an undated group is older than
 * every dated one; equal dates go to the group that comes first in the catalogue.
 */
function chooseHostKeyGroup(candidates: readonly HostKeyGroup[], order: ReadonlyMap<string, number>): HostKeyGroup | undefined {
  let best: HostKeyGroup | undefined;
  for (const h of candidates) {
    if (best === undefined) {
      best = h;
      continue;
    }
    const a = h.releaseDate ?? '';
    const b = best.releaseDate ?? '';
    // "YYYY-MM-DD" strings compare as dates; '' sorts before every date.
    if (a > b || (a === b && order.get(h.id.toLowerCase())! < order.get(best.id.toLowerCase())!)) best = h;
  }
  return best;
}

function resolveConfigured(catalog: Catalog, names: readonly string[]): HostKeyGroup[] {
  if (names.length === 0) return catalog.hostKeyGroups.filter(isDefaultHostKeyGroup);
  const unknown: string[] = [];
  const chosen = new Set<HostKeyGroup>();
  for (const n of names) {
    const h = catalog.findHostKeyGroup(n);
    if (h === undefined) unknown.push(n);
    else chosen.add(h);
  }
  if (unknown.length > 0) {
    throw new ConfigError(
      'KMS_ERR_CONFIG_INVALID',
      `host.hostKeyGroups: ${unknown.map((n) => JSON.stringify(n)).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} ` +
        `not a host-key group of ${catalog.source}; ` +
        'use a name or id from its hostKeyGroups[] (e.g. "Windows Server 2022", "Office LTSC 2021"), or leave the list empty for the ' +
        'default set',
      { field: 'host.hostKeyGroups', unknown },
    );
  }
  // Catalogue order, so the tie-break in chooseHostKeyGroup does not depend on how the list was written.
  return catalog.hostKeyGroups.filter((h) => chosen.has(h));
}
