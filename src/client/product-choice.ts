// Turns what an administrator types after --product (a SKU name, a product-group name, a part of
// one, or an Activation ID GUID) into the fields a client of that product sends.
import { KmsError } from '../errors';
import { MAX_NAME_LENGTH, type Catalog, type KmsGroup } from '../catalog/catalog';
import type { KmsVersion } from '../protocol/kms/types';
import { explainUnresolved, resolveName } from '../catalog/name-match';

export interface ChosenProduct {
  readonly name: string;
  readonly applicationId: string;
  readonly kmsCountedId: string;
  readonly activationId: string;
  readonly requiredClientCount: number;
  /** The protocol version this product's clients speak by default. */
  readonly protocol: KmsVersion;
}

export function chooseProduct(catalog: Catalog, wanted: string): ChosenProduct {
  // No catalogue name is longer: a fuzzy search over a pasted page would take seconds, for nothing.
  if (wanted.trim().length > MAX_NAME_LENGTH)
    throw usage(`--product is longer than any name in the catalogue (${wanted.length} characters)`);
  const r = resolveName(catalog, wanted, ['sku', 'group']);
  if (!('found' in r)) {
    const hint = 'suggestions' in r && r.suggestions.length === 0 ? ' (kms-appliance activate --list-products shows them)' : '';
    throw usage(explainUnresolved(wanted.trim(), r, 'product') + hint);
  }
  if (r.found.kind === 'group') return fromGroup(catalog.kmsGroupById(r.found.id)!);
  const sku = catalog.skuById(r.found.id)!;
  return fromSku(sku.group, sku.id, sku.name);
}

/** Every volume product (SKUs of non-retail, non-preview groups), for `activate --list-products`. */
export function listProducts(catalog: Catalog): { name: string; group: string; activationId: string; protocol: string }[] {
  return allSkus(catalog)
    .filter((s) => !s.group.isRetail && !s.group.isPreview)
    .map((s) => ({ name: s.name, group: s.group.name, activationId: s.id, protocol: s.group.protocol }));
}

function allSkus(catalog: Catalog): { id: string; name: string; group: KmsGroup }[] {
  const out: { id: string; name: string; group: KmsGroup }[] = [];
  for (const app of catalog.applications) {
    for (const g of app.kmsGroups) {
      const group = catalog.kmsGroupById(g.id)!;
      for (const sku of g.skus) out.push({ id: sku.id, name: sku.name, group });
    }
  }
  return out;
}

function fromGroup(group: KmsGroup): ChosenProduct {
  const sku = group.skus[0];
  return fromSku(group, sku?.id ?? group.id, sku?.name ?? group.name);
}

function fromSku(group: KmsGroup, activationId: string, name: string): ChosenProduct {
  const major = Number.parseInt(group.protocol, 10);
  return {
    name,
    applicationId: group.application.id,
    kmsCountedId: group.id,
    activationId,
    requiredClientCount: group.nCountPolicy,
    protocol: major === 4 || major === 5 ? major : 6,
  };
}

function usage(message: string): KmsError {
  return new KmsError('KMS_ERR_CLI_USAGE', message);
}
