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
const MAX_PROBLEMS_LISTED = 20;
/** The advice for names that start with "unknown": printed once, below a table, never in a cell. */
export const CATALOG_UPDATE_HINT = 'update the product catalogue (catalog.file) when Microsoft ships new products';

/** The KMS versions this host answers (PROTOCOL.md §4.1: MinorVer must be 0). */
const KNOWN_PROTOCOLS = ['4.0', '5.0', '6.0'] as const;

/**
 * The version a group's clients speak by default, or undefined for one this host does not know
 * (a catalogue newer than the appliance): never rounded to the nearest known one.
 */
export function clientProtocol(group: Pick<CatalogKmsGroup, 'protocol'>): 4 | 5 | 6 | undefined {
  const i = (KNOWN_PROTOCOLS as readonly string[]).indexOf(group.protocol);
  return i < 0 ? undefined : ((i + 4) as 4 | 5 | 6);
}

/** For messages: the versions known, as "4.0, 5.0, 6.0". */
export function describeKnownProtocols(): string {
  return KNOWN_PROTOCOLS.join(', ');
}

/** True for the names describe*() gives ids the catalogue does not know. */
export function isUnknownName(name: string): boolean {
  return name.startsWith('unknown ');
}

/** Validates `raw` (the parsed JSON) and builds the lookups. Throws ConfigError KMS_ERR_CONFIG_INVALID. */
export function buildCatalog(raw: unknown, source = 'kms-catalog.json'): Catalog {
  const problems: string[] = [];
  const root = checkShape(raw, problems);
  if (problems.length > 0 || root === undefined) {
    throw new ConfigError(
      'KMS_ERR_CONFIG_INVALID',
      `${source}: not a usable product catalogue:\n  ${problems.slice(0, MAX_PROBLEMS_LISTED).join('\n  ')}` +
        (problems.length > MAX_PROBLEMS_LISTED ? `\n  … and ${problems.length - MAX_PROBLEMS_LISTED} more` : ''),
      // Each line names the file, and a file wrong in every entry gives a screenful, not 100,000 lines.
      {
        file: source,
        errors: [
          ...problems.slice(0, MAX_PROBLEMS_LISTED).map((p) => `${source}: ${p}`),
          ...(problems.length > MAX_PROBLEMS_LISTED ? [`${source}: … and ${problems.length - MAX_PROBLEMS_LISTED} more problems`] : []),
        ],
      },
    );
  }
  return indexCatalog(freezeDeep(root), source);
}

// The catalogue is shared by every request; freezing it keeps one caller's mistake from
// changing another's answers. A loop, not recursion: fields the appliance does not read are not
// validated, and a hand-edited file nesting one of them 100,000 arrays deep must not overflow the stack.
function freezeDeep<T>(root: T): T {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const o = pending.pop();
    if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
      Object.freeze(o);
      for (const v of Object.values(o)) pending.push(v);
    }
  }
  return root;
}

function indexCatalog(raw: RawCatalog, source: string): Catalog {
  const warnings: string[] = [];
  const applications = new Map<string, CatalogApplication>();
  const groups = new Map<string, KmsGroup>();
  const skus = new Map<string, Sku>();
  const hostKeyGroups = new Map<string, HostKeyGroup>();
  const hostKeyGroupsByName = new Map<string, HostKeyGroup>();
  const builds = new Map<number, HostBuild>();
  const conflict = (problem: string, id: string): ConfigError =>
    new ConfigError('KMS_ERR_CONFIG_INVALID', `${source}: ${problem}`, { file: source, id });
  // One id names one thing: a second entry with an application's, group's or SKU's id (in any
  // letter case) would make the lookups answer for whichever came last, and names ambiguous.
  const firstSeen = new Map<string, string>();
  const claim = (id: string, what: string, where: string): string => {
    const key = id.toLowerCase();
    const first = firstSeen.get(key);
    if (first !== undefined) throw conflict(`${where}: ${what} ${key} is already ${first}`, key);
    firstSeen.set(key, `the ${what} at ${where}`);
    return key;
  };

  raw.applications.forEach((app, a) => {
    const appPath = label(`applications[${a}]`, app as unknown as Obj);
    applications.set(claim(app.id, 'application', appPath), app);
    app.kmsGroups.forEach((g, k) => {
      const groupPath = label(`applications[${a}].kmsGroups[${k}]`, g as unknown as Obj);
      const group: KmsGroup = Object.freeze({ ...g, application: app });
      groups.set(claim(g.id, 'KMS group', groupPath), group);
      // A newer catalogue may describe clients of a KMS version newer than this host: their
      // requests are refused (0x8007000D, PROTOCOL.md §4.1) and `activate` will not guess one.
      if (clientProtocol(g) === undefined) {
        warnings.push(
          `${groupPath}: its clients speak KMS ${quote(g.protocol)}, which this host does not know ` +
            `(it answers ${describeKnownProtocols()}); they are refused until the appliance is updated`,
        );
      }
      g.skus.forEach((sku, i) => {
        const skuPath = label(`applications[${a}].kmsGroups[${k}].skus[${i}]`, sku as unknown as Obj);
        skus.set(claim(sku.id, 'SKU', skuPath), Object.freeze({ ...sku, group }));
      });
    });
  });
  raw.hostKeyGroups.forEach((h, i) => {
    const where = label(`hostKeyGroups[${i}]`, h as unknown as Obj);
    const hid = h.id.toLowerCase();
    const sameId = hostKeyGroups.get(hid);
    if (sameId) throw conflict(`${where}: host-key group ${hid} is already hostKeyGroups[${raw.hostKeyGroups.indexOf(sameId)}]`, hid);
    hostKeyGroups.set(hid, h);
    // host.hostKeyGroups names them: two of one name would leave which one serves to chance.
    const lname = h.name.trim().toLowerCase();
    const sameName = hostKeyGroupsByName.get(lname);
    if (sameName) throw conflict(`${where}: the name is already hostKeyGroups[${raw.hostKeyGroups.indexOf(sameName)}]'s`, hid);
    hostKeyGroupsByName.set(lname, h);
    for (const k of h.activatesKmsGroups) {
      if (!groups.has(k.toLowerCase()))
        warnings.push(`host-key group ${quote(h.name)} lists KMS group ${k}, which the catalogue does not define`);
    }
  });
  // Valid, and useless: every request would be refused with "no host key activates this product".
  if (raw.hostKeyGroups.length === 0 && groups.size > 0) {
    warnings.push('the catalogue has no host-key groups (hostKeyGroups is empty), so the host can serve none of its products');
  }
  raw.hostBuilds.forEach((b, i) => {
    const same = builds.get(b.build);
    if (same) throw conflict(`hostBuilds[${i}]: build ${b.build} is already hostBuilds[${raw.hostBuilds.indexOf(same)}]`, String(b.build));
    builds.set(b.build, b);
  });

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

/**
 * A name from the file, quoted and made harmless for a terminal or a log: a hand-edited catalogue
 * is read by serve and printed by the CLI, so its text is shown, never obeyed (controls, bidi and
 * other format characters as \u escapes) and never longer than a line.
 */
function quote(text: string): string {
  const shown = JSON.stringify(text.length > 60 ? text.slice(0, 60) + '…' : text);
  return shown.replace(UNSHOWABLE, (c) => {
    const code = c.codePointAt(0)!;
    return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

function label(path: string, o: Obj): string {
  return typeof o.name === 'string' ? `${path} (${quote(o.name)})` : path;
}

/** A found value for a message: strings and numbers as written, containers by kind (never serialised: they may nest deep). */
function show(v: unknown): string {
  if (typeof v === 'string') return quote(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object' && v !== null) return 'an object';
  const s = String(v);
  return s.length > 40 ? s.slice(0, 40) + '…' : s;
}

/**
 * Field kinds. The integer ranges are what the values become: nCountPolicy is the
 * RequiredClientCount a client of the group sends, which a host refuses above 1000 (PROTOCOL.md
 * §7.1 step 4); the rest are ePID fields (§7.4, PPPPP-GGGGG-KKK-KKKKKK-03-LLLL-BBBBB.0000-DDDYYYY),
 * where a number with more digits, or a negative one, would make every ePID of the host malformed.
 */
type Kind =
  | 'version'
  | 'name'
  | 'guid'
  | 'threshold'
  | 'platformId'
  | 'build'
  | 'boolean'
  | 'date'
  | 'array'
  | 'epidGroupId|null'
  | 'keyId|null'
  | 'date|null'
  | 'date?';

const INTEGER_RANGES = {
  threshold: [1, 1000],
  platformId: [0, 99_999],
  build: [1000, 99_999],
  'epidGroupId|null': [0, 99_999],
  'keyId|null': [0, 999_999_999],
} as const;

/** Names an administrator reads and types: a line of printable text. */
export const MAX_NAME_LENGTH = 200;
/** Controls (C0, DEL, C1), line and paragraph separators, and every format character (bidi, invisible, tags). */
// eslint-disable-next-line no-control-regex
const UNSHOWABLE_ONE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\p{Cf}/u;
const UNSHOWABLE = new RegExp(UNSHOWABLE_ONE.source, 'gu');

/**
 * A real calendar day (Date.parse takes "2024-02-31" for 2 March) no earlier than 1990: release
 * dates bound the ePID's date, and an ePID dated before 1990 is one the host itself would not
 * accept as stored (host/epid.ts), so it would be made anew, different, at every start.
 */
function isEpidDate(v: string): boolean {
  if (!DATE_SHAPE.test(v)) return false;
  const ms = Date.parse(v);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === v && v >= '1990-01-01';
}

function inRange(v: unknown, [min, max]: readonly [number, number]): boolean {
  return Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
}

function fieldOk(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'version':
      return typeof v === 'string' && /^[0-9]{1,2}\.[0-9]{1,2}$/.test(v);
    case 'name':
      return typeof v === 'string' && v.trim() !== '' && v.length <= MAX_NAME_LENGTH && !UNSHOWABLE_ONE.test(v);
    case 'guid':
      return typeof v === 'string' && isGuid(v);
    case 'threshold':
    case 'platformId':
    case 'build':
      return inRange(v, INTEGER_RANGES[kind]);
    case 'boolean':
      return typeof v === 'boolean';
    case 'date':
      return typeof v === 'string' && isEpidDate(v);
    case 'array':
      return Array.isArray(v);
    case 'epidGroupId|null':
    case 'keyId|null':
      return v === null || inRange(v, INTEGER_RANGES[kind]);
    case 'date|null':
      return v === null || fieldOk(v, 'date');
    case 'date?':
      return v === undefined || fieldOk(v, 'date');
  }
}

const range = (r: readonly [number, number]): string => `${r[0]} … ${r[1]}`;

const KIND_TEXT: Record<Kind, string> = {
  version: 'a protocol version like "6.0"',
  name: `a name of 1 to ${MAX_NAME_LENGTH} printable characters (no control or format characters)`,
  guid: 'a GUID',
  threshold: `an integer ${range(INTEGER_RANGES.threshold)} (the activation threshold clients send)`,
  platformId: `an integer ${range(INTEGER_RANGES.platformId)} (the ePID's platform id)`,
  build: `an integer ${range(INTEGER_RANGES.build)} (the ePID's build)`,
  boolean: 'true or false',
  date: 'a date YYYY-MM-DD from 1990 on',
  array: 'an array',
  'epidGroupId|null': `an integer ${range(INTEGER_RANGES['epidGroupId|null'])} (the ePID's group id) or null`,
  'keyId|null': `an integer ${range(INTEGER_RANGES['keyId|null'])} (the ePID's key id) or null`,
  'date|null': 'a date YYYY-MM-DD from 1990 on, or null',
  'date?': 'a date YYYY-MM-DD from 1990 on',
};

function checkFields(o: Obj, path: string, fields: Record<string, Kind>, problems: string[]): boolean {
  let ok = true;
  for (const [key, kind] of Object.entries(fields)) {
    if (!fieldOk(o[key], kind)) {
      ok = false;
      problems.push(`${label(path, o)}.${key}: expected ${KIND_TEXT[kind]}, found ${o[key] === undefined ? 'nothing' : show(o[key])}`);
    } else if (kind === 'guid') canonicalGuid(o, key);
  }
  return ok;
}

/**
 * GUIDs in the lowercase every lookup, the store and the wire codec use: a hand-edited file may
 * write them in capitals (as Windows tools print them), and every reader of the catalogue then
 * sees one spelling. Only a changed value is written, so a catalogue already built stays untouched.
 */
function canonicalGuid(o: Obj, key: string): void {
  const v = o[key] as string;
  const lower = v.toLowerCase();
  if (lower !== v) o[key] = lower;
}

function checkList(o: Obj, key: string, path: string, problems: string[], each: (item: Obj, itemPath: string) => void): void {
  const list = o[key];
  if (!Array.isArray(list)) {
    const where = path === '' ? key : `${label(path, o)}.${key}`;
    problems.push(`${where}: expected an array, found ${list === undefined ? 'nothing' : show(list)}`);
    return;
  }
  list.forEach((item, i) => {
    const itemPath = `${path === '' ? '' : path + '.'}${key}[${i}]`;
    if (isObj(item)) each(item, itemPath);
    else problems.push(`${itemPath}: expected an object, found ${show(item)}`);
  });
}

function checkShape(raw: unknown, problems: string[]): RawCatalog | undefined {
  if (!isObj(raw)) {
    problems.push(`expected a JSON object at the top level, found ${show(raw)}`);
    return undefined;
  }
  checkList(raw, 'applications', '', problems, (app, p) => {
    checkFields(app, p, { id: 'guid', name: 'name' }, problems);
    checkList(app, 'kmsGroups', p, problems, (g, gp) => {
      checkFields(
        g,
        gp,
        {
          id: 'guid',
          name: 'name',
          nCountPolicy: 'threshold',
          protocol: 'version',
          isRetail: 'boolean',
          isPreview: 'boolean',
        },
        problems,
      );
      // Host-key groups named in a refusal's explanation (§7.4): objects like hostKeyGroups' entries.
      checkList(g, 'activatedByHostKeyGroups', gp, problems, (h, hp) =>
        checkFields(h, hp, { id: 'guid', name: 'name', groupId: 'epidGroupId|null' }, problems),
      );
      checkList(g, 'skus', gp, problems, (s, sp) => checkFields(s, sp, { id: 'guid', name: 'name' }, problems));
    });
  });
  checkList(raw, 'hostKeyGroups', '', problems, (h, p) => {
    if (
      !checkFields(
        h,
        p,
        {
          id: 'guid',
          name: 'name',
          groupId: 'epidGroupId|null',
          minKeyId: 'keyId|null',
          maxKeyId: 'keyId|null',
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
      else canonicalGuid(list as unknown as Obj, String(i));
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
        build: 'build',
        name: 'name',
        platformId: 'platformId',
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
