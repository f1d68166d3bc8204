// Typed view of data/kms-catalog.json, field for field as its generator writes it (the file's own
// `description` explains every key). Only the fields the appliance reads are required; the rest
// (names per source, C-reference slots, discrepancies) are carried along for reports.

export interface CatalogSku {
  /** The Activation ID clients send. */
  readonly id: string;
  readonly name: string;
  /** The published client setup key (GVLK), when known. */
  readonly gvlk?: string;
  readonly sources?: readonly string[];
}

interface HostKeyGroupRef {
  readonly id: string;
  readonly name: string;
  readonly groupId: number | null;
}

export interface CatalogKmsGroup {
  /** The KmsCountedID clients send. */
  readonly id: string;
  readonly name: string;
  /** The activation threshold its clients send as RequiredClientCount. */
  readonly nCountPolicy: number;
  /** Default KMS protocol version of its clients ("4.0", "5.0", "6.0"); informational only. */
  readonly protocol: string;
  readonly isRetail: boolean;
  readonly isPreview: boolean;
  readonly activatedByHostKeyGroups: readonly HostKeyGroupRef[];
  readonly skus: readonly CatalogSku[];
  readonly names?: Readonly<Record<string, string>>;
  readonly sources?: readonly string[];
  readonly hostEpidSlot?: unknown;
}

export interface CatalogApplication {
  /** The ApplicationID clients send. */
  readonly id: string;
  readonly name: string;
  readonly kmsGroups: readonly CatalogKmsGroup[];
  readonly minActiveClients?: number;
  readonly names?: Readonly<Record<string, string>>;
  readonly sources?: readonly string[];
}

/** A host key (CSVLK) group: what a host's ePID names (PROTOCOL.md §7.4). */
export interface HostKeyGroup {
  readonly id: string;
  readonly name: string;
  /** The ePID's GGGGG; null when the databases do not know it. */
  readonly groupId: number | null;
  /** Key id range for the ePID's KKK-KKKKKK, both ends inclusive. */
  readonly minKeyId: number | null;
  readonly maxKeyId: number | null;
  /** "YYYY-MM-DD": lower bound for the ePID's date; null when unknown. */
  readonly releaseDate: string | null;
  readonly isLab: boolean;
  readonly isPreview: boolean;
  readonly activatesKmsGroups: readonly string[];
  readonly exampleEpid?: string | null;
  readonly epidSlot?: string | null;
}

export interface HostBuild {
  readonly build: number;
  readonly name: string;
  /** The ePID's PPPPP. */
  readonly platformId: number;
  /** "YYYY-MM-DD"; absent in the C reference's list. */
  readonly releaseDate?: string;
  readonly useForEpid: boolean;
  readonly mayBeServer: boolean;
  readonly usesNdr64: boolean;
}

/** The whole file. */
export interface RawCatalog {
  readonly description?: string;
  readonly generated?: string;
  readonly generator?: string;
  readonly source?: Readonly<Record<string, string>>;
  readonly applications: readonly CatalogApplication[];
  readonly hostKeyGroups: readonly HostKeyGroup[];
  readonly hostBuilds: readonly HostBuild[];
  readonly hostEpidSlots?: readonly unknown[];
  readonly hostBuildsCDb?: readonly unknown[];
  readonly discrepancies?: readonly unknown[];
}
