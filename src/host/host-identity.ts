// Who this host says it is: one ePID per host-key group and one HwId, generated once and kept in
// the store so clients see the same host across restarts (PROTOCOL.md §7.4, §7.5, C20, C26), or
// pinned by configuration. Also the build/NDR64 consistency rule an emulator usually breaks.
import type { Catalog } from '../catalog/catalog';
import type { HostBuild, HostKeyGroup } from '../catalog/types';
import { ConfigError, KmsError } from '../errors';
import { earliestEpidDateMs, epidDateMs, generateEpid, parseEpid } from './epid';
import type { ActivationStore, Clock, RandomBytes } from './ports';

/** The first build whose RPC runtime accepts NDR64 (Windows 8 / Server 2012), §7.4. */
const NDR64_MIN_BUILD = 9200;

/** HwIds that identify the reference emulators (§7.5); never sent, never accepted in configuration. */
const EMULATOR_HWIDS: readonly string[] = ['3a1c049600b60076', '364f463a8863d35f'];

export const HWID_SETTING = 'host.hwid';
export const EPID_SETTING_PREFIX = 'host.epid.';

export interface HostIdentitySettings {
  readonly build: number;
  readonly lcid: number;
  /** 16 hex digits, or '' to generate one and keep it in the store. */
  readonly hwid: string;
  /** Pinned ePIDs keyed by host-key group name or id. */
  readonly epids: Readonly<Record<string, string>>;
  readonly ndr64: boolean;
}

export interface HostIdentityDeps {
  readonly store: ActivationStore;
  readonly catalog: Catalog;
  readonly randomBytes: RandomBytes;
  readonly clock: Clock;
}

export interface HostIdentity {
  readonly build: number;
  readonly lcid: number;
  readonly platformId: number;
  readonly hwid: Buffer;
  /** The ePID for a host-key group (id): pinned, stored, or generated now and stored. */
  epidFor(hostKeyGroupId: string): string;
}

/** Validates the settings against the catalogue (ConfigError listing every problem) and loads the identity. */
export function loadHostIdentity(deps: HostIdentityDeps, settings: HostIdentitySettings): HostIdentity {
  const { store, catalog, randomBytes, clock } = deps;
  const problems: string[] = [];
  const hostBuild = checkBuild(catalog, settings, problems);
  checkLcid(settings.lcid, problems);
  const configuredHwid = checkHwid(settings.hwid, problems);
  const pinned = hostBuild === undefined ? new Map<string, string>() : checkPinnedEpids(catalog, settings, hostBuild, problems);
  if (problems.length > 0 || hostBuild === undefined) {
    throw new ConfigError('KMS_ERR_CONFIG_INVALID', problems.join('\n'), { field: 'host', errors: problems });
  }

  const hwid = configuredHwid ?? storedOrNewHwid(store, randomBytes);
  const cache = new Map<string, string>(pinned);

  const epidFor = (hostKeyGroupId: string): string => {
    const id = hostKeyGroupId.toLowerCase();
    const cached = cache.get(id);
    if (cached !== undefined) return cached;
    const group = catalog.hostKeyGroupById(id);
    if (group === undefined) {
      throw new KmsError('KMS_ERR_CONFIG_INVALID', `host-key group ${hostKeyGroupId} is not in ${catalog.source}`, { hostKeyGroupId });
    }
    const key = EPID_SETTING_PREFIX + id;
    const stored = store.getSetting(key);
    // A stored ePID survives only while it still describes this host: a changed build or LCID
    // (or a catalogue that moved the group's key range) makes it a lie, so it is replaced.
    let epid = stored !== undefined && storedEpidFits(stored, group, hostBuild, settings.lcid) ? stored : undefined;
    if (epid === undefined) {
      epid = generateEpid({ hostBuild, group: usableGroup(group), lcid: settings.lcid, nowMs: clock.now(), randomBytes });
      store.setSetting(key, epid);
    }
    cache.set(id, epid);
    return epid;
  };

  return Object.freeze({ build: hostBuild.build, lcid: settings.lcid, platformId: hostBuild.platformId, hwid, epidFor });
}

function usableGroup(group: HostKeyGroup): HostKeyGroup & { groupId: number; minKeyId: number; maxKeyId: number } {
  const { groupId, minKeyId, maxKeyId } = group;
  if (groupId === null || minKeyId === null || maxKeyId === null) {
    throw new ConfigError(
      'KMS_ERR_CONFIG_INVALID',
      `host-key group "${group.name}" has no group id or key id range in the catalogue, so no ePID can be generated for it; ` +
        'pin one under host.epids or remove the group from host.hostKeyGroups',
      { hostKeyGroup: group.id },
    );
  }
  return { ...group, groupId, minKeyId, maxKeyId };
}

function storedEpidFits(epid: string, group: HostKeyGroup, hostBuild: HostBuild, lcid: number): boolean {
  const p = parseEpid(epid);
  if (p === undefined) return false;
  if (p.platformId !== hostBuild.platformId || p.build !== hostBuild.build || p.lcid !== lcid) return false;
  if (p.groupId !== group.groupId) return false;
  if (group.minKeyId === null || group.maxKeyId === null || p.keyId < group.minKeyId || p.keyId > group.maxKeyId) return false;
  const earliest = earliestEpidDateMs(hostBuild, group);
  // A date after today is kept: it only means the host clock went back since it was generated.
  return earliest === undefined || epidDateMs(p) >= earliest;
}

function epidBuilds(catalog: Catalog): string {
  return catalog.hostBuilds
    .filter((b) => b.useForEpid)
    .map((b) => `${b.build} (${b.name})`)
    .join(', ');
}

function checkBuild(catalog: Catalog, settings: HostIdentitySettings, problems: string[]): HostBuild | undefined {
  const hostBuild = Number.isSafeInteger(settings.build) ? catalog.hostBuild(settings.build) : undefined;
  if (hostBuild === undefined || !hostBuild.useForEpid) {
    const builds = epidBuilds(catalog);
    problems.push(
      builds === ''
        ? `host.build ${settings.build} cannot be used: the catalogue lists no host build for ePIDs (hostBuilds with useForEpid); ` +
            'fix catalog.file or remove it to use the shipped catalogue'
        : `host.build ${settings.build} is not a host build the catalogue uses in ePIDs; choose one of: ${builds}`,
    );
    return undefined;
  }
  // §7.4: builds ≥ 9200 ↔ NDR64 accepted; a mismatch tells a client it is talking to an emulator.
  if (settings.ndr64 && hostBuild.build < NDR64_MIN_BUILD) {
    problems.push(
      `host.build ${hostBuild.build} (${hostBuild.name}) cannot speak NDR64, but kms.ndr64 is on: ` +
        `set host.build to ${NDR64_MIN_BUILD} or later (e.g. 20348), or set kms.ndr64 to false`,
    );
  } else if (!settings.ndr64 && hostBuild.build >= NDR64_MIN_BUILD) {
    problems.push(
      `host.build ${hostBuild.build} (${hostBuild.name}) always accepts NDR64, but kms.ndr64 is off: ` +
        `set kms.ndr64 to true, or set host.build below ${NDR64_MIN_BUILD} (7601 or 6002)`,
    );
  }
  return hostBuild;
}

function checkLcid(lcid: number, problems: string[]): void {
  // The ePID prints the LCID in 4 or 5 decimal digits (§7.4 shape); real locales are all in that range.
  if (!Number.isSafeInteger(lcid) || lcid < 1000 || lcid > 99999) {
    problems.push(`host.lcid ${lcid} is not a Windows locale id; use a decimal LCID such as 1033 (en-US), 1031 (de-DE) or 2057 (en-GB)`);
  }
}

function checkHwid(hwid: string, problems: string[]): Buffer | undefined {
  if (hwid === '') return undefined;
  const hex = hwid.trim().toLowerCase();
  if (!/^[0-9a-f]{16}$/.test(hex)) {
    problems.push(`host.hwid "${hwid}" must be 16 hex digits (8 bytes), or empty to generate one`);
    return undefined;
  }
  if (EMULATOR_HWIDS.includes(hex)) {
    problems.push(
      `host.hwid ${hwid} is a KMS emulator's well-known HwId and marks this host as one; leave host.hwid empty to generate a random one`,
    );
    return undefined;
  }
  return Buffer.from(hex, 'hex');
}

function storedOrNewHwid(store: ActivationStore, randomBytes: RandomBytes): Buffer {
  const stored = store.getSetting(HWID_SETTING);
  if (stored !== undefined && /^[0-9a-f]{16}$/.test(stored) && !EMULATOR_HWIDS.includes(stored)) return Buffer.from(stored, 'hex');
  let hwid = randomBytes(8);
  while (EMULATOR_HWIDS.includes(hwid.toString('hex'))) hwid = randomBytes(8);
  store.setSetting(HWID_SETTING, hwid.toString('hex'));
  return Buffer.from(hwid);
}

function checkPinnedEpids(catalog: Catalog, settings: HostIdentitySettings, hostBuild: HostBuild, problems: string[]): Map<string, string> {
  const pinned = new Map<string, string>();
  for (const [name, epid] of Object.entries(settings.epids)) {
    const group = catalog.findHostKeyGroup(name);
    const where = `host.epids["${name}"]`;
    if (group === undefined) {
      problems.push(`${where}: "${name}" is not a host-key group name or id of the catalogue`);
      continue;
    }
    const p = parseEpid(epid);
    if (p === undefined) {
      problems.push(`${where}: "${epid}" is not an ePID of the form PPPPP-GGGGG-KKK-KKKKKK-03-LLLL-BBBBB.0000-DDDYYYY`);
      continue;
    }
    // All ePIDs of one host share platform, LCID and build (C26), so a pin must agree with host.*.
    if (p.build !== hostBuild.build || p.platformId !== hostBuild.platformId) {
      problems.push(
        `${where}: names build ${p.build} / platform ${p.platformId}, ` +
          `but host.build is ${hostBuild.build} (platform ${hostBuild.platformId}); make them agree`,
      );
    }
    if (p.lcid !== settings.lcid) problems.push(`${where}: names LCID ${p.lcid}, but host.lcid is ${settings.lcid}; make them agree`);
    if (group.groupId !== null && p.groupId !== group.groupId) {
      problems.push(`${where}: names group id ${p.groupId}, but "${group.name}" has group id ${group.groupId}`);
    }
    const id = group.id.toLowerCase();
    if (pinned.has(id)) problems.push(`${where}: "${group.name}" is pinned twice`);
    pinned.set(id, epid);
  }
  return pinned;
}
