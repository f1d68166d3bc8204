// The catalogue as the store's NameResolver: GUIDs in the database become the names an
// administrator knows, and an unknown product is still described by what is known of it.
import type { Catalog } from './catalog';
import type { NameResolver } from './name-resolver';

export function catalogNames(catalog: Catalog): NameResolver {
  return {
    applicationName: (id) => catalog.describeApplication(id),
    groupName: (id) => catalog.describeKmsGroup(id),
    skuName: (activationId, groupId) => catalog.describeSku(activationId, groupId),
    hostKeyGroupName: (id) => catalog.hostKeyGroupById(id)?.name ?? id,
  };
}
