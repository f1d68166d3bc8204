// How the read side turns GUIDs into the names an administrator knows. The CLI builds one from
// the product catalogue (names.ts); the store receives it and never depends on catalogue
// internals. It lives here, not in store/, so that catalog/ imports nothing from the layers above.

export interface NameResolver {
  applicationName(id: string): string;
  groupName(id: string): string;
  skuName(activationId: string, groupId: string): string;
  /** The host-key group an ePID is kept for; the id itself when unknown. */
  hostKeyGroupName?(id: string): string;
}

/** Shows the ids themselves; for tools that run without a catalogue. */
export const ID_NAMES: NameResolver = Object.freeze({
  applicationName: (id: string) => id,
  groupName: (id: string) => id,
  skuName: (activationId: string) => activationId,
});

/**
 * Ids remembered per kind. The catalogue holds a few hundred, but hosts serve Activation IDs they
 * do not know (PROTOCOL.md §4.2): the ids read back are whatever clients sent, and the snapshot
 * worker and the fleet forwarder keep their memo as long as the process runs.
 */
const MAX_MEMO_ENTRIES = 4096;

/** Resolves each id once: the client list asks for the same few names a million times. */
export function memoizeNames(names: NameResolver): NameResolver {
  const apps = new Map<string, string>();
  const groups = new Map<string, string>();
  const skus = new Map<string, string>();
  const cached = (map: Map<string, string>, key: string, make: () => string): string => {
    let v = map.get(key);
    if (v !== undefined) return v;
    // The oldest first: a client cycling invented ids cannot grow the memo, and the catalogue's
    // own names, asked for again and again, come back at once.
    if (map.size >= MAX_MEMO_ENTRIES) map.delete(map.keys().next().value!);
    map.set(key, (v = make()));
    return v;
  };
  return {
    applicationName: (id) => cached(apps, id, () => names.applicationName(id)),
    groupName: (id) => cached(groups, id, () => names.groupName(id)),
    skuName: (activationId, groupId) => cached(skus, `${activationId}/${groupId}`, () => names.skuName(activationId, groupId)),
    hostKeyGroupName: (id) => names.hostKeyGroupName?.(id) ?? id,
  };
}
