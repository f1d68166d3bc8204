// The product catalogue as lookups: validates the parsed kms-catalog.json once, then answers the
// per-request questions (which application, group, SKU, host key) from Maps. Pure: no file I/O.
import { ConfigError } from '../errors';
import { isGuid, lowerId } from '../protocol/guid';
import type { CatalogApplication, CatalogKmsGroup, CatalogSku, HostBuild, HostKeyGroup, RawCatalog } from './types';

/** A KMS group with the application it belongs to. */
export interface KmsGroup extends CatalogKmsGroup {
  readonly application: CatalogApplication;
}

/** A SKU with the KMS group it belongs to. */
interface Sku extends CatalogSku {
  readonly group: KmsGroup;
}

export interface Catalog {
  /** Where the data came from (a file name), for messages. */
  readonly source: string;
  /** The generator's date stamp ("YYYY-MM-DD"), when present. */
  readonly generated: string | undefined;
  readonly applications: readonly CatalogApplication[];
  /** In catalogue order: the order breaks ties when choosing a host-key group (PROTOCOL.md §7.4). */
  readonly hostKeyGroups: readonly HostKeyGroup[];
  readonly hostBuilds: readonly HostBuild[];
  /** Oddities that do not stop the catalogue from working (dangling references). */
  readonly warnings: readonly string[];
  applicationById(id: string): CatalogApplication | undefined;
  kmsGroupById(id: string): KmsGroup | undefined;
  skuById(id: string): Sku | undefined;
  hostKeyGroupById(id: string): HostKeyGroup | undefined;
  /** By id or by name (case-insensitive), as an administrator writes it in the configuration. */
  findHostKeyGroup(nameOrId: string): HostKeyGroup | undefined;
  hostBuild(build: number): HostBuild | undefined;
  /** A name for a SKU an administrator can act on; never just "Unknown". */
  describeSku(activationId: string, kmsCountedId: string): string;
  describeKmsGroup(kmsCountedId: string): string;
  describeApplication(applicationId: string): string;
}

const DATE_SHAPE = /^\d{4}-\d{2}-\d{2}$/;
/** The advice for names that start with "unknown": printed once, below a table, never in a cell. */
export const CATALOG_UPDATE_HINT = 'update the product catalogue (catalog.file) when Microsoft ships new products';

/** True for the names describe*() gives ids the catalogue does not know. */
export function isUnknownName(name: string): boolean {
  return name.startsWith('unknown ');
}

/** Validates `raw` (the parsed JSON) and builds the lookups. Throws ConfigError KMS_ERR_CONFIG_INVALID. */
export function buildCatalog(raw: unknown, source = 'kms-catalog.json'): Catalog {
  const problems: string[] = [];
  const root = checkShape(raw, source, problems);
  if (problems.length > 0 || root === undefined) {
    throw new ConfigError(
      'KMS_ERR_CONFIG_INVALID',
      `${source}: not a usable product catalogue:\n  ${problems.slice(0, 20).join('\n  ')}` +
        (problems.length > 20 ? `\n  … and ${problems.length - 20} more` : ''),
      { file: source, errors: problems },
    );
  }
  return indexCatalog(freezeDeep(root), source);
}

// The catalogue is shared by every request; freezing it keeps one caller's mistake from
// changing another's answers.
function freezeDeep<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) freezeDeep(v);
  }
  return o;
}

function indexCatalog(raw: RawCatalog, source: string): Catalog {
  const warnings: string[] = [];
  const applications = new Map<string, CatalogApplication>();
  const groups = new Map<string, KmsGroup>();
  const skus = new Map<string, Sku>();
  const hostKeyGroups = new Map<string, HostKeyGroup>();
  const hostKeyGroupsByName = new Map<string, HostKeyGroup>();
  const builds = new Map<number, HostBuild>();
  const duplicate = (what: string, id: string): never => {
    throw new ConfigError('KMS_ERR_CONFIG_INVALID', `${source}: ${what} ${id} appears twice`, { file: source, id });
  };

  for (const app of raw.applications) {
    const appId = app.id.toLowerCase();
    if (applications.has(appId)) duplicate('application', appId);
    applications.set(appId, app);
    for (const g of app.kmsGroups) {
      const gid = g.id.toLowerCase();
      if (groups.has(gid)) duplicate('KMS group', gid);
      const group: KmsGroup = Object.freeze({ ...g, application: app });
      groups.set(gid, group);
      for (const s of g.skus) {
        const sid = s.id.toLowerCase();
        // Two groups claiming one SKU would make names ambiguous; the generator never does it.
        if (skus.has(sid)) duplicate('SKU', sid);
        skus.set(sid, Object.freeze({ ...s, group }));
      }
    }
  }
  for (const h of raw.hostKeyGroups) {
    const hid = h.id.toLowerCase();
    if (hostKeyGroups.has(hid)) duplicate('host-key group', hid);
    hostKeyGroups.set(hid, h);
    const lname = h.name.toLowerCase();
    if (!hostKeyGroupsByName.has(lname)) hostKeyGroupsByName.set(lname, h);
    for (const k of h.activatesKmsGroups) {
      if (!groups.has(k.toLowerCase()))
        warnings.push(`host-key group "${h.name}" lists KMS group ${k}, which the catalogue does not define`);
    }
  }
  for (const b of raw.hostBuilds) {
    if (builds.has(b.build)) duplicate('host build', String(b.build));
    builds.set(b.build, b);
  }

  const describeKmsGroup = (kmsCountedId: string): string => {
    const g = groups.get(lowerId(kmsCountedId));
    return g ? g.name : `unknown KMS group ${kmsCountedId}`;
  };

  return Object.freeze({
    source,
    generated: raw.generated,
    applications: raw.applications,
    hostKeyGroups: raw.hostKeyGroups,
    hostBuilds: raw.hostBuilds,
    warnings,
    applicationById: (id: string) => applications.get(id.toLowerCase()),
    kmsGroupById: (id: string) => groups.get(id.toLowerCase()),
    skuById: (id: string) => skus.get(id.toLowerCase()),
    hostKeyGroupById: (id: string) => hostKeyGroups.get(id.toLowerCase()),
    findHostKeyGroup: (nameOrId: string) => {
      const key = nameOrId
        .trim()
        .replace(/^\{|\}$/g, '')
        .toLowerCase();
      return hostKeyGroups.get(key) ?? hostKeyGroupsByName.get(nameOrId.trim().toLowerCase());
    },
    hostBuild: (build: number) => builds.get(build),
    describeSku: (activationId: string, kmsCountedId: string): string => {
      const sku = skus.get(lowerId(activationId));
      if (sku) return sku.name;
      const g = groups.get(lowerId(kmsCountedId));
      // Hosts activate SKUs they do not know (§4.2), so this is routine for new editions.
      if (g) return `unknown edition of ${g.name} (Activation ID ${activationId})`;
      return `unknown product (Activation ID ${activationId})`;
    },
    describeKmsGroup,
    describeApplication: (applicationId: string): string =>
      applications.get(lowerId(applicationId))?.name ?? `unknown application ${applicationId}`,
  });
}

// ---- shape validation: every problem names the entry (path and name) and the field ----

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function label(path: string, o: Obj): string {
  return typeof o.name === 'string' ? `${path} ("${o.name}")` : path;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 40 ? s.slice(0, 40) + '…' : s;
}

type Kind = 'string' | 'guid' | 'integer' | 'boolean' | 'date' | 'array' | 'integer|null' | 'date|null' | 'date?';

function fieldOk(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'string':
      return typeof v === 'string' && v.length > 0;
    case 'guid':
      return typeof v === 'string' && isGuid(v);
    case 'integer':
      return Number.isSafeInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'date':
      return typeof v === 'string' && DATE_SHAPE.test(v) && !Number.isNaN(Date.parse(v));
    case 'array':
      return Array.isArray(v);
    case 'integer|null':
      return v === null || Number.isSafeInteger(v);
    case 'date|null':
      return v === null || fieldOk(v, 'date');
    case 'date?':
      return v === undefined || fieldOk(v, 'date');
  }
}

const KIND_TEXT: Record<Kind, string> = {
  string: 'a non-empty string',
  guid: 'a GUID',
  integer: 'an integer',
  boolean: 'true or false',
  date: 'a date YYYY-MM-DD',
  array: 'an array',
  'integer|null': 'an integer or null',
  'date|null': 'a date YYYY-MM-DD or null',
  'date?': 'a date YYYY-MM-DD',
};

function checkFields(o: Obj, path: string, fields: Record<string, Kind>, problems: string[]): boolean {
  let ok = true;
  for (const [key, kind] of Object.entries(fields)) {
    if (!fieldOk(o[key], kind)) {
      ok = false;
      problems.push(`${label(path, o)}.${key}: expected ${KIND_TEXT[kind]}, found ${o[key] === undefined ? 'nothing' : show(o[key])}`);
    }
  }
  return ok;
}

function checkList(o: Obj, key: string, path: string, problems: string[], each: (item: Obj, itemPath: string) => void): void {
  const list = o[key];
  if (!Array.isArray(list)) {
    problems.push(`${label(path, o)}.${key}: expected an array, found ${list === undefined ? 'nothing' : show(list)}`);
    return;
  }
  list.forEach((item, i) => {
    const itemPath = `${path === '' ? '' : path + '.'}${key}[${i}]`;
    if (isObj(item)) each(item, itemPath);
    else problems.push(`${itemPath}: expected an object, found ${show(item)}`);
  });
}

function checkShape(raw: unknown, source: string, problems: string[]): RawCatalog | undefined {
  if (!isObj(raw)) {
    problems.push(`${source}: expected a JSON object at the top level, found ${show(raw)}`);
    return undefined;
  }
  checkList(raw, 'applications', '', problems, (app, p) => {
    checkFields(app, p, { id: 'guid', name: 'string' }, problems);
    checkList(app, 'kmsGroups', p, problems, (g, gp) => {
      checkFields(
        g,
        gp,
        {
          id: 'guid',
          name: 'string',
          nCountPolicy: 'integer',
          protocol: 'string',
          isRetail: 'boolean',
          isPreview: 'boolean',
          activatedByHostKeyGroups: 'array',
        },
        problems,
      );
      checkList(g, 'skus', gp, problems, (s, sp) => checkFields(s, sp, { id: 'guid', name: 'string' }, problems));
    });
  });
  checkList(raw, 'hostKeyGroups', '', problems, (h, p) => {
    if (
      !checkFields(
        h,
        p,
        {
          id: 'guid',
          name: 'string',
          groupId: 'integer|null',
          minKeyId: 'integer|null',
          maxKeyId: 'integer|null',
          releaseDate: 'date|null',
          isLab: 'boolean',
          isPreview: 'boolean',
          activatesKmsGroups: 'array',
        },
        problems,
      )
    )
      return;
    const list = h.activatesKmsGroups as unknown[];
    list.forEach((k, i) => {
      if (typeof k !== 'string' || !isGuid(k)) problems.push(`${label(p, h)}.activatesKmsGroups[${i}]: expected a GUID, found ${show(k)}`);
    });
    if (typeof h.minKeyId === 'number' && typeof h.maxKeyId === 'number' && h.minKeyId > h.maxKeyId) {
      problems.push(`${label(p, h)}: minKeyId ${h.minKeyId} is above maxKeyId ${h.maxKeyId}`);
    }
  });
  checkList(raw, 'hostBuilds', '', problems, (b, p) => {
    checkFields(
      b,
      p,
      {
        build: 'integer',
        name: 'string',
        platformId: 'integer',
        releaseDate: 'date?',
        useForEpid: 'boolean',
        mayBeServer: 'boolean',
        usesNdr64: 'boolean',
      },
      problems,
    );
  });
  return raw as unknown as RawCatalog;
}
