// PROTOCOL.md §10 KMS message items (C14–C25, C40) against the running appliance: requests built from
// the §4.2/§6 layouts, responses decrypted and checked here the way a client does (§6.1, §6.3, §6.6).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHmac, randomUUID } from 'node:crypto';
import { startHarness } from '../server/appliance-harness';
import {
  E_INVALID_DATA,
  E_PRODUCT,
  E_TIME,
  GROUP,
  activateOnce,
  clientProblems,
  decodeKmsResponse,
  epidProblems,
  filetimeOf,
  guidBytes,
  hex,
  khmac,
  kmsRequest,
  roundup16,
  sha256,
  timeSlot,
  xor16,
  type Group,
  type SentRequest,
} from './wire';
import { ROOT } from '../paths';

const HOUR = 3_600_000;
const MINUTE = 60_000;

async function served(t: Test, port: number, sent: SentRequest, what: string): Promise<Buffer> {
  const r = await activateOnce(port, sent);
  t.equal(r.hresult, 0, `${what}: served`);
  return r.response ?? Buffer.alloc(0);
}

t.test("the suite's v6 HMAC key matches the §6.5 worked value", async (t) => {
  t.same(khmac(0n), hex('ac 0c 6f 55 aa 8c ab c2 64 c0 64 2e b9 61 54 0a'));
});

t.test('C14 served responses echo version, CMID and RequestTime and carry a well-formed ePID', async (t) => {
  const h = await startHarness(t);
  const cases: [Group, 4 | 5 | 6][] = [
    [GROUP.win7, 4],
    [GROUP.office2010, 4],
    [GROUP.office2013, 5],
    [GROUP.win10, 6],
    [GROUP.office2021, 6],
    [GROUP.win10, 4], // a v6 product forcing older versions: answered in the request's version
    [GROUP.win10, 5],
  ];
  for (const [group, version] of cases) {
    const cmid = randomUUID();
    const requestTime = filetimeOf(Date.now() - 12 * MINUTE);
    const sent = kmsRequest(version, { group, cmid, requestTime });
    const m = await served(t, h.port, sent, `v${version} ${group.kms}`);
    const d = decodeKmsResponse(version, m);
    const what = `v${version} ${group.kms}`;
    t.same([d.clearMajor, d.clearMinor, d.base.major, d.base.minor], [version, 0, version, 0], `${what}: clear and inner version echoed`);
    t.same(d.base.cmid, guidBytes(cmid), `${what}: CMID echoed`);
    t.equal(d.base.clientTime, requestTime, `${what}: RequestTime echoed`);
    t.same(epidProblems(d.base), [], `${what}: ePID ${d.base.epid} well formed`);
    t.equal(d.base.pidSize, 2 * (d.base.epid.length + 1), `${what}: PIDSize = 2 × (characters + 1)`);
    t.same(clientProblems(sent, m), [], `${what}: every client check passes`);
  }
});

interface RawHostKeyGroup {
  name: string;
  groupId: number | null;
  minKeyId: number | null;
  maxKeyId: number | null;
  releaseDate: string | null;
  isLab: boolean;
  isPreview: boolean;
  activatesKmsGroups: string[];
}
interface RawKmsGroup {
  id: string;
  name: string;
  protocol: string;
  nCountPolicy: number;
  isRetail: boolean;
  isPreview: boolean;
  skus: { id: string }[];
}
const RAW_CATALOG = JSON.parse(fs.readFileSync(path.join(ROOT, 'data', 'kms-catalog.json'), 'utf8')) as {
  applications: { id: string; kmsGroups: RawKmsGroup[] }[];
  hostKeyGroups: RawHostKeyGroup[];
  hostBuilds: { build: number; platformId: number; releaseDate: string }[];
};

/** §7.4 "Choosing the host-key group", applied to the raw catalogue with the default configuration. */
function expectedHostKeyGroup(kmsGroupId: string): RawHostKeyGroup | undefined {
  const configured = RAW_CATALOG.hostKeyGroups.filter(
    (h) => !h.isLab && !h.isPreview && h.groupId !== null && h.minKeyId !== null && h.maxKeyId !== null,
  );
  let best: RawHostKeyGroup | undefined;
  for (const h of configured) {
    if (!h.activatesKmsGroups.includes(kmsGroupId)) continue;
    if (best === undefined || (h.releaseDate ?? '') > (best.releaseDate ?? '')) best = h;
  }
  return best;
}

function dayOfYearToMs(day: number, year: number): number {
  return Date.UTC(year, 0, 1) + (day - 1) * 86_400_000;
}

t.test('C14 (§7.4) every served volume group gets the ePID of its host-key group: id, key range, build, date', async (t) => {
  const build = 20348;
  const h = await startHarness(t, (c) => {
    c.host.build = build;
  });
  const hostBuild = RAW_CATALOG.hostBuilds.find((b) => b.build === build)!;
  let checked = 0;
  for (const app of RAW_CATALOG.applications) {
    for (const g of app.kmsGroups) {
      if (g.isRetail || g.isPreview) continue;
      const hk = expectedHostKeyGroup(g.id);
      t.ok(hk, `${g.name}: the catalogue has a host-key group for it`);
      if (!hk) continue;
      const version = Number(g.protocol[0]) as 4 | 5 | 6;
      const sent = kmsRequest(version, {
        group: { app: app.id, kms: g.id, sku: g.skus[0]?.id ?? randomUUID() },
        requiredClientCount: g.nCountPolicy,
      });
      const m = await served(t, h.port, sent, g.name);
      const epid = decodeKmsResponse(version, m).base.epid;
      const parts = /^(\d{5})-(\d{5})-(\d{3})-(\d{6})-03-(\d{4,5})-(\d{4,5})\.0000-(\d{3})(\d{4})$/.exec(epid);
      t.ok(parts, `${g.name}: ${epid} has the §7.4 shape`);
      if (!parts) continue;
      const [, platform, groupId, k1, k2, lcid, epidBuild, day, year] = parts.map(Number) as number[];
      const keyId = k1! * 1_000_000 + k2!;
      const issued = dayOfYearToMs(day!, year!);
      const what = `${g.name} → "${hk.name}"`;
      t.equal(platform, hostBuild.platformId, `${what}: platform id of build ${build}`);
      t.equal(groupId, hk.groupId, `${what}: group id ${hk.groupId}`);
      t.ok(keyId >= hk.minKeyId! && keyId <= hk.maxKeyId!, `${what}: key id ${keyId} in ${hk.minKeyId}…${hk.maxKeyId}`);
      t.same([lcid, epidBuild], [1033, build], `${what}: LCID and build`);
      t.ok(day! >= 1 && day! <= (year! % 4 === 0 ? 366 : 365), `${what}: day of year ${day}`);
      t.ok(
        issued >= Date.parse(hostBuild.releaseDate) - 86_400_000 && issued <= Date.now(),
        `${what}: date between the build's release and today`,
      );
      if (hk.releaseDate) t.ok(issued >= Date.parse(hk.releaseDate) - 86_400_000, `${what}: not before the host key's release`);
      checked++;
    }
  }
  t.ok(checked >= 25, `${checked} groups checked`);
});

t.test('C15 v4: the response is 60 + PIDSize bytes ending in the V4 MAC of the rest', async (t) => {
  const h = await startHarness(t);
  for (const group of [GROUP.win7, GROUP.office2010, GROUP.server2008r2]) {
    const sent = kmsRequest(4, { group });
    const m = await served(t, h.port, sent, group.kms);
    const d = decodeKmsResponse(4, m);
    t.equal(m.length, 60 + d.base.pidSize, 'length 60 + PIDSize');
    t.same(m.subarray(m.length - 16), d.macExpected, 'last 16 bytes = V4 MAC of the response base');
    // The checker is not vacuous: one flipped bit in the base changes the MAC.
    const tampered = Buffer.from(m);
    tampered[40] = tampered[40]! ^ 1;
    t.not(decodeKmsResponse(4, tampered).macExpected!.toString('hex'), d.mac!.toString('hex'));
  }
});

t.test('C16 v4: a corrupted MAC is refused with 0x8007000D when MAC checking is on', async (t) => {
  const on = await startHarness(t);
  const bad = kmsRequest(4, { group: GROUP.win7 }, { corruptMac: true });
  t.equal((await activateOnce(on.port, bad)).hresult, E_INVALID_DATA, 'refused');
  t.equal((await activateOnce(on.port, kmsRequest(4, { group: GROUP.win7 }))).hresult, 0, 'a correct MAC is served');
  const off = await startHarness(t, (c) => {
    c.kms.verifyV4Mac = false;
  });
  t.equal((await activateOnce(off.port, bad)).hresult, 0, 'with the check off the same request is served');
});

t.test('C17 v5: AES-128-CBC with the wire IV, valid padding, IV echoed, Hash = SHA-256(RandomXoredIVs ⊕ Dreq)', async (t) => {
  const h = await startHarness(t);
  for (const group of [GROUP.office2013, GROUP.win10]) {
    const sent = kmsRequest(5, { group });
    const m = await served(t, h.port, sent, group.kms);
    const d = decodeKmsResponse(5, m);
    t.ok(d.paddingValid, 'padding 1–16 bytes, each equal to its length');
    t.same(d.wireIv, sent.iv, 'wire IV = request IV');
    t.same(sha256(xor16(d.randomXoredIvs!, sent.dreq!)), d.hash, 'Hash = SHA-256(RandomXoredIVs ⊕ Dreq)');
    t.same(d.base.cmid, sent.base.subarray(64, 80), 'decrypts to the echoed CMID');
  }
});

t.test('C18 v6: K6 decryption, valid padding, XoredIVs = Dreq, Hash and HMAC verify', async (t) => {
  const h = await startHarness(t);
  for (const group of [GROUP.win10, GROUP.office2021, GROUP.server2022]) {
    const sent = kmsRequest(6, { group });
    const m = await served(t, h.port, sent, group.kms);
    const d = decodeKmsResponse(6, m);
    t.ok(d.paddingValid, 'padding valid');
    t.same(d.xoredIvs, sent.dreq, 'XoredIVs = Dreq');
    t.same(sha256(xor16(d.randomXoredIvs!, sent.dreq!)), d.hash, 'Hash verifies');
    t.same(d.hmac, d.hmacExpected, 'HMAC with Khmac(ClientTime) over Ds … XoredIVs');
    const tampered = Buffer.from(m);
    tampered[100] = tampered[100]! ^ 1;
    t.not(clientProblems(sent, tampered).length, 0, 'the checks reject a flipped ciphertext bit');
  }
});

t.test('C19 v6: a fresh response IV, and fresh randomness for identical requests', async (t) => {
  const h = await startHarness(t);
  const sent = kmsRequest(6, { group: GROUP.win10 });
  const a = decodeKmsResponse(6, await served(t, h.port, sent, 'first'));
  const b = decodeKmsResponse(6, await served(t, h.port, sent, 'identical second'));
  t.not(a.wireIv!.toString('hex'), sent.iv!.toString('hex'), 'response IV ≠ request IV');
  t.not(a.ds!.toString('hex'), sent.dreq!.toString('hex'), 'Ds ≠ Dreq');
  t.not(a.wireIv!.toString('hex'), b.wireIv!.toString('hex'), 'IVs differ');
  t.not(a.randomXoredIvs!.toString('hex'), b.randomXoredIvs!.toString('hex'), 'RandomXoredIVs differ');
  t.not(a.hash!.toString('hex'), b.hash!.toString('hex'), 'Hashes differ');
});

t.test('C20 v6: the HwId is the same in every response and across a restart', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-conformance-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const hwids = new Set<string>();
  const first = await startHarness(t, undefined, { dataDir });
  for (const group of [GROUP.win10, GROUP.office2021, GROUP.server2022, GROUP.win10]) {
    hwids.add(decodeKmsResponse(6, await served(t, first.port, kmsRequest(6, { group }), group.kms)).hwid!.toString('hex'));
  }
  t.equal(hwids.size, 1, 'one HwId for every product');
  await first.appliance.stop();
  const second = await startHarness(t, undefined, { dataDir });
  hwids.add(
    decodeKmsResponse(6, await served(t, second.port, kmsRequest(6, { group: GROUP.win10 }), 'after restart')).hwid!.toString('hex'),
  );
  t.equal(hwids.size, 1, 'the same HwId after the restart');
  const [hwid] = hwids;
  t.notOk(['3a1c049600b60076', '364f463a8863d35f'].includes(hwid!), "not an emulator's well-known HwId (§7.5)");
});

t.test('C21 v5 = 4 + roundup16(108 + P + 1), v6 = 4 + roundup16(148 + P + 1)', async (t) => {
  // Build 20348 gives 49-character ePIDs (P = 100), build 9600 48 characters (P = 98).
  for (const build of [20348, 9600]) {
    const h = await startHarness(t, (c) => {
      c.host.build = build;
    });
    for (const version of [5, 6] as const) {
      const m = await served(t, h.port, kmsRequest(version, { group: GROUP.win10 }), `build ${build} v${version}`);
      const P = decodeKmsResponse(version, m).base.pidSize;
      t.equal(P, build === 9600 ? 98 : 100, `build ${build}: PIDSize`);
      t.equal(m.length, 4 + roundup16((version === 5 ? 108 : 148) + P + 1), `build ${build} v${version}: length ${m.length}`);
    }
  }
});

t.test('C22 unknown versions, short messages and bad v5/v6 padding are refused with 0x8007000D', async (t) => {
  const h = await startHarness(t);
  const cases: [string, Buffer][] = [
    ['version 7.0', kmsRequest(6, { group: GROUP.win10 }, { outerMajor: 7 }).message],
    ['version 6.1', kmsRequest(6, { group: GROUP.win10 }, { outerMinor: 1 }).message],
    ['version 5.1', kmsRequest(5, { group: GROUP.win10 }, { outerMinor: 1 }).message],
    ['version 4.1', kmsRequest(4, { group: GROUP.win7, innerMinor: 1 }).message],
    ['version 3.0', kmsRequest(4, { group: GROUP.win7, innerMajor: 3 }).message],
    ['v4 of 251 bytes', kmsRequest(4, { group: GROUP.win7 }).message.subarray(0, 251)],
    ['v5 of 259 bytes', kmsRequest(5, { group: GROUP.win10 }).message.subarray(0, 259)],
    ['v6 of 259 bytes', kmsRequest(6, { group: GROUP.win10 }).message.subarray(0, 259)],
    ['v6 of 252 bytes', kmsRequest(6, { group: GROUP.win10 }).message.subarray(0, 252)],
    ['v5 padding 03 03 03 03', kmsRequest(5, { group: GROUP.win10 }, { padding: hex('03 03 03 03') }).message],
    ['v6 padding 04 04 04 05', kmsRequest(6, { group: GROUP.win10 }, { padding: hex('04 04 04 05') }).message],
    ['v6 padding 00 00 00 00', kmsRequest(6, { group: GROUP.win10 }, { padding: hex('00 00 00 00') }).message],
    // §6.2 / §7.1 step 3: the inner version must equal the clear one.
    ['v6 with inner version 5.0', kmsRequest(6, { group: GROUP.win10, innerMajor: 5 }).message],
  ];
  for (const [what, message] of cases) {
    const r = await activateOnce(h.port, { version: 4, message, base: Buffer.alloc(236) });
    t.equal(r.hresult, E_INVALID_DATA, what);
    t.equal(r.response, undefined, `${what}: no response data`);
  }
});

t.test('C23 RequiredClientCount above 1000 is refused without 32-bit wrap-around; 1000 is served', async (t) => {
  const h = await startHarness(t);
  for (const n of [1001, 0x80000000, 0x800003e8, 0xffffffff]) {
    const r = await activateOnce(h.port, kmsRequest(6, { group: GROUP.win10, requiredClientCount: n }));
    t.equal(r.hresult, E_INVALID_DATA, `RequiredClientCount 0x${n.toString(16)} refused`);
  }
  const sent = kmsRequest(6, { group: GROUP.win10, requiredClientCount: 1000 });
  t.same(clientProblems(sent, await served(t, h.port, sent, 'RequiredClientCount 1000')), []);
});

t.test('C24 RequestTime 4 h 1 min off is refused with 0xC004F06C; 3 h 59 min is served', async (t) => {
  const h = await startHarness(t);
  for (const sign of [1, -1]) {
    const far = kmsRequest(6, { group: GROUP.win10, requestTime: filetimeOf(Date.now() + sign * (4 * HOUR + MINUTE)) });
    t.equal((await activateOnce(h.port, far)).hresult, E_TIME, `${sign > 0 ? 'ahead' : 'behind'} by 4 h 1 min`);
    const near = kmsRequest(6, { group: GROUP.win10, requestTime: filetimeOf(Date.now() + sign * (3 * HOUR + 59 * MINUTE)) });
    t.same(clientProblems(near, await served(t, h.port, near, `${sign > 0 ? 'ahead' : 'behind'} by 3 h 59 min`)), []);
  }
});

t.test('C25 unknown, foreign-application, retail and preview groups get 0xC004F042; unknown SKUs are served', async (t) => {
  const h = await startHarness(t);
  const refused: [string, SentRequest][] = [
    ['unknown KmsCountedID', kmsRequest(6, { group: GROUP.win10, kms: randomUUID() })],
    ['Office 2021 group sent as Windows', kmsRequest(6, { group: GROUP.office2021, app: GROUP.win10.app })],
    ['Windows 10 group sent as Office', kmsRequest(6, { group: GROUP.win10, app: GROUP.office2021.app })],
    ['Office 2010 group sent as Office 2013+', kmsRequest(4, { group: GROUP.office2010, app: GROUP.office2021.app })],
    ['retail Windows 10/11 group', kmsRequest(6, { group: GROUP.win10Retail })],
    ['preview Windows group', kmsRequest(5, { group: GROUP.windowsPreview })],
    ['unknown ApplicationID', kmsRequest(6, { group: GROUP.win10, app: randomUUID() })],
  ];
  for (const [what, sent] of refused) t.equal((await activateOnce(h.port, sent)).hresult, E_PRODUCT, what);
  const unknownSku = kmsRequest(6, { group: GROUP.win10, sku: randomUUID() });
  t.same(clientProblems(unknownSku, await served(t, h.port, unknownSku, 'unknown ActivationID, known volume group')), []);
});

t.test('C40 v6: the HMAC key comes from the echoed ClientTime, even in another 4-hour slot', async (t) => {
  const h = await startHarness(t);
  const now = Date.now();
  // At least one of ±3 h 50 min lies in another slot (a slot is ≈ 4.12 h wide).
  const offsets = [-(3 * HOUR + 50 * MINUTE), 3 * HOUR + 50 * MINUTE].filter(
    (o) => timeSlot(filetimeOf(now + o)) !== timeSlot(filetimeOf(now)),
  );
  t.ok(offsets.length >= 1, 'a request time in another slot within ±4 h');
  for (const offset of offsets) {
    const sent = kmsRequest(6, { group: GROUP.win10, requestTime: filetimeOf(now + offset) });
    const m = await served(t, h.port, sent, `${offset / MINUTE} min`);
    t.same(clientProblems(sent, m), [], 'the response verifies with Khmac(ClientTime)');
    const d = decodeKmsResponse(6, m);
    const hostKeyed = createHmac('sha256', khmac(filetimeOf(Date.now())))
      .update(d.hmacInput!)
      .digest()
      .subarray(16);
    t.not(hostKeyed.toString('hex'), d.hmac!.toString('hex'), 'not keyed on the host clock');
  }
});
