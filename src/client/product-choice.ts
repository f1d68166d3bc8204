// Turns what an administrator types after --product (a SKU name, a product-group name, a part of
// one, or an Activation ID GUID) into the fields a client of that product sends.
import { KmsError } from '../errors';
import type { Catalog, KmsGroup } from '../catalog/catalog';
import type { KmsVersion } from '../protocol/kms/types';
import { isGuid } from '../protocol/guid';

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
  const text = wanted.trim();
  if (isGuid(text)) {
    const sku = catalog.skuById(text.toLowerCase());
    if (sku) return fromSku(sku.group, sku.id, sku.name);
    const group = catalog.kmsGroupById(text.toLowerCase());
    if (group) return fromGroup(group);
    throw usage(`no SKU or product group with id ${text} in the catalogue (${catalog.source})`);
  }
  const lower = text.toLowerCase();
  const skus = allSkus(catalog);
  const exact = skus.find((s) => s.name.toLowerCase() === lower);
  if (exact) return fromSku(exact.group, exact.id, exact.name);
  const groups = catalog.applications.flatMap((a) => a.kmsGroups.map((g) => catalog.kmsGroupById(g.id)!));
  const exactGroup = groups.find((g) => g.name.toLowerCase() === lower);
  if (exactGroup) return fromGroup(exactGroup);
  const partial = skus.filter((s) => s.name.toLowerCase().includes(lower));
  if (partial.length === 1) return fromSku(partial[0]!.group, partial[0]!.id, partial[0]!.name);
  if (partial.length > 1) {
    const names = partial.slice(0, 12).map((s) => `"${s.name}"`).join(', ');
    throw usage(`"${text}" matches ${partial.length} products: ${names}${partial.length > 12 ? ', …' : ''}; be more specific`);
  }
  throw usage(`no product named like "${text}"; try a name such as "Windows 10/11 Enterprise" or an Activation ID, or --list-products`);
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
