import t from 'tap';
import { randomBytes } from 'node:crypto';
import { loadCatalog } from '../../src/catalog/load';
import { KmsError } from '../../src/errors';
import { parseEpid } from '../../src/host/epid';
import { EPID_SETTING_PREFIX, HWID_SETTING, loadHostIdentity, type HostIdentitySettings } from '../../src/host/host-identity';
import { MemoryActivationStore } from '../../src/host/memory-store';
import { buildProductPolicy } from '../../src/host/product-policy';
import { UNKNOWN_GUID } from '../ids';

const catalog = loadCatalog();
const policy = buildProductPolicy(catalog, { hostKeyGroups: [], allowRetail: false, allowPreview: false });
const clock = { now: () => Date.UTC(2026, 10, 24, 12) };
const SETTINGS: HostIdentitySettings = { build: 20348, lcid: 1033, hwid: '', epids: {}, ndr64: true };
const W10_2019 = catalog.findHostKeyGroup('Windows 10 2019')!.id;
const S2022 = catalog.findHostKeyGroup('Windows Server 2022')!.id;

function load(store: MemoryActivationStore, settings: Partial<HostIdentitySettings> = {}, rnd = randomBytes) {
  return loadHostIdentity({ store, catalog, randomBytes: rnd, clock }, { ...SETTINGS, ...settings });
}

function configErrors(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if ((err as KmsError).code !== 'KMS_ERR_CONFIG_INVALID') return [`code ${(err as KmsError).code}`];
    return ((err as KmsError).details.errors as string[] | undefined) ?? [(err as Error).message];
  }
  return [];
}

t.test('one ePID per host-key group, sharing platform, LCID and build (C26)', async (t) => {
  const id = load(new MemoryActivationStore());
  t.equal(id.build, 20348);
  t.equal(id.platformId, 3612);
  const parts = policy.hostKeyGroupsInUse.map((h) => ({ h, p: parseEpid(id.epidFor(h.id))! }));
  for (const { h, p } of parts) {
    t.ok(p, h.name);
    t.equal(p.platformId, 3612);
    t.equal(p.build, 20348);
    t.equal(p.lcid, 1033);
    t.equal(p.groupId, h.groupId);
    t.ok(p.keyId >= h.minKeyId! && p.keyId <= h.maxKeyId!);
  }
  t.equal(id.epidFor(W10_2019), id.epidFor(W10_2019.toUpperCase()), 'same answer every time');
  t.not(
    id.epidFor(W10_2019),
    id.epidFor(catalog.findHostKeyGroup('Windows 8.1')!.id),
    'groups sharing group id 206 still get their own ePID',
  );
});

t.test('ePIDs and HwId survive a reload from the same store (C20, C26)', async (t) => {
  const store = new MemoryActivationStore();
  const first = load(store);
  const epid = first.epidFor(W10_2019);
  t.equal(store.getSetting(EPID_SETTING_PREFIX + W10_2019), epid, 'persisted at first use');
  t.equal(store.getSetting(HWID_SETTING), first.hwid.toString('hex'));
  t.equal(first.hwid.length, 8);
  const again = load(store);
  t.equal(again.epidFor(W10_2019), epid);
  t.same(again.hwid, first.hwid);
  const other = load(new MemoryActivationStore());
  t.not(other.epidFor(W10_2019), epid, 'a fresh store gets a fresh identity');
  t.notSame(other.hwid, first.hwid);
});

t.test('a changed build or LCID regenerates stored ePIDs; an unrelated change keeps them', async (t) => {
  const store = new MemoryActivationStore();
  const epid = load(store).epidFor(S2022);
  const sameAgain = load(store, { hwid: '0011223344556677' }).epidFor(S2022);
  t.equal(sameAgain, epid);
  const newBuild = load(store, { build: 26100 }).epidFor(S2022);
  t.not(newBuild, epid);
  t.equal(parseEpid(newBuild)!.build, 26100);
  t.equal(store.getSetting(EPID_SETTING_PREFIX + S2022), newBuild);
  const newLcid = load(store, { build: 26100, lcid: 1031 }).epidFor(S2022);
  t.equal(parseEpid(newLcid)!.lcid, 1031);
  t.equal(parseEpid(newLcid)!.build, 26100);
  // damaged stored values are replaced too
  store.setSetting(EPID_SETTING_PREFIX + S2022, 'garbage');
  store.setSetting(HWID_SETTING, 'zz');
  const repaired = load(store, { build: 26100, lcid: 1031 });
  t.ok(parseEpid(repaired.epidFor(S2022)));
  t.match(store.getSetting(HWID_SETTING), /^[0-9a-f]{16}$/);
  // a stored ePID naming another group's id (catalogue changed) is replaced
  store.setSetting(EPID_SETTING_PREFIX + S2022, '03612-00206-010-000000-03-1031-26100.0000-3102024');
  t.equal(parseEpid(load(store, { build: 26100, lcid: 1031 }).epidFor(S2022))!.groupId, 4573);
});

t.test('pinned ePIDs win, by group name or id, and are checked', async (t) => {
  const pinned = '03612-04573-000-123456-03-1033-20348.0000-2402021';
  const store = new MemoryActivationStore();
  const id = load(store, { epids: { 'windows server 2022': pinned } });
  t.equal(id.epidFor(S2022), pinned);
  t.equal(store.getSetting(EPID_SETTING_PREFIX + S2022), undefined, 'a pin is not written to the store');
  t.equal(load(store, { epids: { [S2022]: pinned } }).epidFor(S2022), pinned);
  // a pin may name a group that cannot generate one
  const azure2019 = catalog.findHostKeyGroup('Windows Server 2019 (Azure Only)')!;
  t.equal(
    load(store, { epids: { [azure2019.name]: '03612-00206-999-000001-03-1033-20348.0000-2402021' } }).epidFor(azure2019.id),
    '03612-00206-999-000001-03-1033-20348.0000-2402021',
  );

  t.equal(configErrors(() => load(store, { epids: { 'Windows Server 2031': pinned } })).length, 1);
  t.equal(configErrors(() => load(store, { epids: { 'Windows Server 2022': 'not an epid' } })).length, 1);
  t.equal(
    configErrors(() => load(store, { epids: { 'Windows Server 2022': '03612-04573-000-123456-03-1033-20348.0000-3662021' } })).length,
    1,
    'day 366 in 2021',
  );
  const mismatch = configErrors(() =>
    load(store, { epids: { 'Windows Server 2022': '06401-00206-000-123456-03-1031-9600.0000-2402021' } }),
  );
  t.equal(mismatch.length, 3, 'build/platform, LCID and group id each reported');
});

t.test("HwId: configured, or random and never the emulators' values (§7.5)", async (t) => {
  const store = new MemoryActivationStore();
  t.equal(load(store, { hwid: '0123456789ABCDEF' }).hwid.toString('hex'), '0123456789abcdef');
  t.equal(store.getSetting(HWID_SETTING), undefined, 'a configured HwId is not stored');
  t.equal(configErrors(() => load(store, { hwid: '3A1C049600B60076' })).length, 1);
  t.equal(configErrors(() => load(store, { hwid: '364F463A8863D35F' })).length, 1);
  t.equal(configErrors(() => load(store, { hwid: '0123' })).length, 1);
  // a random source that first yields an emulator HwId is asked again
  const seq = [Buffer.from('3a1c049600b60076', 'hex'), Buffer.from('1122334455667788', 'hex')];
  const rnd = (n: number) => (n === 8 && seq.length > 0 ? seq.shift()! : randomBytes(n));
  t.equal(load(new MemoryActivationStore(), {}, rnd).hwid.toString('hex'), '1122334455667788');
});

t.test('build and NDR64 must agree; the build must be an ePID build of the catalogue', async (t) => {
  const store = new MemoryActivationStore();
  t.equal(load(store, { build: 7601, ndr64: false }).platformId, 55041);
  t.equal(load(store, { build: 9200, ndr64: true }).platformId, 5426);
  const legacyWithNdr64 = configErrors(() => load(store, { build: 7601, ndr64: true }));
  t.equal(legacyWithNdr64.length, 1);
  t.match(legacyWithNdr64[0], 'kms.ndr64');
  t.match(legacyWithNdr64[0], 'host.build');
  t.equal(configErrors(() => load(store, { build: 20348, ndr64: false })).length, 1);
  t.equal(configErrors(() => load(store, { build: 10240 })).length, 1, 'in the catalogue but not used for ePIDs');
  t.equal(configErrors(() => load(store, { build: 12345 })).length, 1);
  t.equal(configErrors(() => load(store, { lcid: 33 })).length, 1);
  t.equal(configErrors(() => load(store, { build: 12345, lcid: 33, hwid: 'x' })).length, 3, 'all problems at once');
});

t.test('a group without key id range cannot generate an ePID', async (t) => {
  const id = load(new MemoryActivationStore());
  const azure2019 = catalog.findHostKeyGroup('Windows Server 2019 (Azure Only)')!;
  t.throws(() => id.epidFor(azure2019.id), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.throws(() => id.epidFor(UNKNOWN_GUID), { code: 'KMS_ERR_CONFIG_INVALID' });
});

t.test('a catalogue without any host build for ePIDs is named as the problem, not an empty list to choose from', async (t) => {
  // A hand-edited catalog.file whose hostBuilds lost every useForEpid entry.
  const noBuilds = Object.create(catalog, { hostBuilds: { value: [] }, hostBuild: { value: () => undefined } }) as typeof catalog;
  const errors = configErrors(() =>
    loadHostIdentity({ store: new MemoryActivationStore(), catalog: noBuilds, randomBytes, clock }, SETTINGS),
  );
  t.match(errors, [/the catalogue lists no host build for ePIDs.*fix catalog\.file/]);
  t.notMatch(errors.join(' '), /choose one of: $/m);
});
