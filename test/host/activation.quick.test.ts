import t from 'tap';
import { HRESULT } from '../../src/errors';
import { MAX_REQUIRED_CLIENT_COUNT } from '../../src/host/activation';
import { licenseStatusName } from '../../src/protocol/kms/license-status';
import { COUNT_WINDOW_MS } from '../../src/host/counting';
import { parseEpid } from '../../src/host/epid';
import { filetimeFromMs } from '../../src/protocol/filetime';
import { DAY, HOUR, MINUTE, T0, catalog, cmid, group, makeHost } from './host-harness';
import { OFFICE_2010_APP, OFFICE_2013_APP, SPARE_V4_GUID, UNKNOWN_GUID, WINDOWS_APP } from '../ids';

const INVALID = HRESULT.INVALID_DATA; // 0x8007000D
const TIME = HRESULT.TIME_INVALID; // 0xC004F06C
const NOT_SERVED = HRESULT.PRODUCT_NOT_SERVED; // 0xC004F042

function counts(host: ReturnType<typeof makeHost>): number {
  return host.store.snapshot(WINDOWS_APP, host.now, COUNT_WINDOW_MS).activeClients;
}

t.test('a served v4, v5 and v6 request verifies and echoes version, CMID and time (C14)', async (t) => {
  const host = makeHost();
  for (const version of [4, 5, 6] as const) {
    const x = host.request({ version, clientMachineId: cmid(version) });
    t.equal(x.result.hresult, 0);
    t.equal(x.verified?.version, version);
    t.equal(x.verified?.base.majorVersion, version);
    t.equal(x.verified?.base.minorVersion, 0);
    t.equal(x.verified?.base.clientMachineId, cmid(version));
    t.equal(x.verified?.base.clientTime, filetimeFromMs(host.now));
    t.ok(parseEpid(x.verified!.base.epid), 'ePID well-formed');
    if (version === 6) t.same(x.verified?.hwid, host.deps.identity.hwid);
  }
});

t.test('C22: bad version, short message, bad padding, bad MAC -> 0x8007000D', async (t) => {
  const host = makeHost();
  const good = host.request({ version: 6 }).sent.message;
  const v7 = Buffer.from(good);
  v7.writeUInt16LE(7, 2);
  const v61 = Buffer.from(good);
  v61.writeUInt16LE(1, 0);
  for (const [name, message, code] of [
    ['7.0', v7, 'KMS_ERR_KMS_VERSION'],
    ['6.1', v61, 'KMS_ERR_KMS_VERSION'],
    ['v6 259 bytes', good.subarray(0, 259), 'KMS_ERR_KMS_LENGTH'],
    ['3 bytes', good.subarray(0, 3), 'KMS_ERR_KMS_LENGTH'],
  ] as const) {
    const r = host.send(message);
    t.equal(r.hresult, INVALID, name);
    t.equal(r.outcome.code, code, name);
    t.equal(r.outcome.result, 'refused');
    t.equal(r.response, undefined);
  }
  t.equal(host.send(v7).outcome.protocolVersion, undefined, 'no version named when the version is bad');
  t.equal(host.send(good.subarray(0, 259)).outcome.protocolVersion, 6);

  // the last cipher block decides the padding
  const padding = Buffer.from(good);
  padding[padding.length - 1]! ^= 0x55;
  const p = host.send(padding);
  t.equal(p.hresult, INVALID);
  t.ok(['KMS_ERR_KMS_PADDING', 'KMS_ERR_KMS_INNER_VERSION'].includes(p.outcome.code!), `refused as ${p.outcome.code}`);
  const v5 = Buffer.from(host.request({ version: 5, clientMachineId: cmid(5) }).sent.message);
  v5[v5.length - 1]! ^= 0x01;
  t.equal(host.send(v5).hresult, INVALID);

  const v4 = host.request({ version: 4, clientMachineId: cmid(4) }).sent.message;
  const badMac = Buffer.from(v4);
  badMac[badMac.length - 1]! ^= 0xff;
  t.equal(host.send(badMac).outcome.code, 'KMS_ERR_KMS_MAC');
  t.equal(host.send(v4.subarray(0, 251)).hresult, INVALID, 'v4 251 bytes');
  t.equal(host.send(Buffer.concat([good, Buffer.alloc(8)])).hresult, 0, 'excess bytes are ignored (§4.1)');
  const lax = makeHost({ settings: { verifyV4Mac: false } });
  t.equal(lax.send(badMac).hresult, 0, 'MAC not checked when kms.verifyV4Mac is off');
  t.equal(counts(host), 3, 'only the three good clients count');
});

t.test('C23: RequiredClientCount 1000 served, 1001 / 0x80000000 / 0xFFFFFFFF refused', async (t) => {
  const host = makeHost();
  t.equal(MAX_REQUIRED_CLIENT_COUNT, 1000);
  const ok = host.request({ requiredClientCount: 1000 });
  t.equal(ok.result.hresult, 0);
  t.equal(ok.result.outcome.result, 'below-threshold');
  for (const n of [1001, 0x80000000, 0x800003e8, 0xffffffff]) {
    const r = host.request({ requiredClientCount: n, clientMachineId: cmid(n) }).result;
    t.equal(r.hresult, INVALID, `0x${n.toString(16)}`);
    t.equal(r.outcome.code, 'KMS_ERR_KMS_POLICY_RANGE');
    t.equal(r.outcome.requiredClientCount, n);
  }
  const zero = host.request({ requiredClientCount: 0, clientMachineId: cmid(7) });
  t.equal(zero.result.outcome.result, 'activated', 'RequiredClientCount 0 is treated as 1 (U8)');
  t.equal(counts(host), 2);
});

t.test('C24: ±3 h 59 min served, ±4 h 1 min refused with 0xC004F06C', async (t) => {
  const host = makeHost();
  let n = 0;
  for (const offset of [3 * HOUR + 59 * MINUTE, -(3 * HOUR + 59 * MINUTE), 4 * HOUR, -4 * HOUR]) {
    const r = host.request({ requestTime: filetimeFromMs(host.now + offset), clientMachineId: cmid(++n) });
    t.equal(r.result.hresult, 0, `${offset / MINUTE} min served`);
    t.equal(r.verified?.base.clientTime, filetimeFromMs(host.now + offset), 'the client time is echoed, not the host clock');
  }
  for (const offset of [4 * HOUR + MINUTE, -(4 * HOUR + MINUTE), 30 * DAY]) {
    const r = host.request({ requestTime: filetimeFromMs(host.now + offset), clientMachineId: cmid(++n) });
    t.equal(r.result.hresult, TIME, `${offset / MINUTE} min refused`);
    t.equal(r.result.outcome.code, 'KMS_ERR_KMS_TIME_SKEW');
  }
  t.equal(counts(host), 4);
  const unchecked = makeHost({ settings: { checkRequestTime: false } });
  t.equal(unchecked.request({ requestTime: filetimeFromMs(unchecked.now - 30 * DAY) }).result.hresult, 0, 'check off');
  const narrow = makeHost({ settings: { maxClockSkewMinutes: 10 } });
  t.equal(narrow.request({ requestTime: filetimeFromMs(narrow.now + 11 * MINUTE) }).result.hresult, TIME, 'configurable window');
});

t.test('C25: unknown group, wrong application, retail, preview -> 0xC004F042; unknown SKU served', async (t) => {
  const host = makeHost();
  const cases = [
    [{ kmsCountedId: UNKNOWN_GUID }, 'KMS_ERR_KMS_UNKNOWN_GROUP'],
    [{ applicationId: OFFICE_2013_APP }, 'KMS_ERR_KMS_WRONG_APPLICATION'],
    [{ groupName: 'Windows 10/11 (Retail)' }, 'KMS_ERR_KMS_RETAIL_GROUP'],
    [{ groupName: 'Windows Preview', version: 5 as const }, 'KMS_ERR_KMS_PREVIEW_GROUP'],
    [{ groupName: 'Office 2013 (Pre-release)', version: 5 as const }, 'KMS_ERR_KMS_PREVIEW_GROUP'],
  ] as const;
  let n = 0;
  for (const [over, code] of cases) {
    const r = host.request({ ...over, clientMachineId: cmid(++n) }).result;
    t.equal(r.hresult, NOT_SERVED, code);
    t.equal(r.outcome.code, code);
    t.ok(r.outcome.explanation && r.outcome.explanation.length > 20, 'an explanation for the admin');
  }
  const unknownSku = host.request({ activationId: SPARE_V4_GUID, clientMachineId: cmid(++n) });
  t.equal(unknownSku.result.hresult, 0);
  t.match(unknownSku.result.outcome.skuName, 'Windows 10/11 2015 (Volume)', 'named after its group');
  t.equal(counts(host), 1);
  t.equal(host.store.snapshot(OFFICE_2013_APP, host.now, COUNT_WINDOW_MS).activeClients, 0);
  const narrowed = makeHost({ policy: { hostKeyGroups: ['Windows Server 2025'] } });
  t.equal(narrowed.request().result.outcome.code, 'KMS_ERR_KMS_NO_HOST_KEY_GROUP');
  t.equal(narrowed.request({ groupName: 'Windows Server 2025' }).result.hresult, 0);
});

t.test('C26: one ePID per host-key group across requests, versions and restarts', async (t) => {
  const host = makeHost();
  const first = host.request({ version: 6 }).verified!.base.epid;
  t.equal(host.request({ version: 4, clientMachineId: cmid(2) }).verified!.base.epid, first);
  t.equal(
    host.request({ version: 5, groupName: 'Windows 7', clientMachineId: cmid(3) }).verified!.base.epid,
    first,
    'Windows 7 answered by the same Windows 10 2019 key',
  );
  t.equal(parseEpid(first)!.groupId, 206);
  const vista = host.request({ version: 4, groupName: 'Windows Vista', clientMachineId: cmid(4) }).verified!.base.epid;
  t.equal(parseEpid(vista)!.groupId, 172);
  const s2022 = host.request({ groupName: 'Windows Server 2022', clientMachineId: cmid(5) }).verified!.base.epid;
  t.equal(parseEpid(s2022)!.groupId, 4573);
  const office = host.request({ groupName: 'Office 2024', clientMachineId: cmid(6) }).verified!.base.epid;
  t.not(office, first, 'Office LTSC 2024 has its own ePID although its group id is also 206');
  for (const e of [first, vista, s2022, office]) {
    const p = parseEpid(e)!;
    t.same([p.platformId, p.lcid, p.build], [3612, 1033, 20348]);
  }
  const restarted = host.restart();
  t.equal(restarted.request({ clientMachineId: cmid(7) }).verified!.base.epid, first);
  t.equal(restarted.request({ groupName: 'Office 2024', clientMachineId: cmid(8) }).verified!.base.epid, office);
  t.same(restarted.deps.identity.hwid, host.deps.identity.hwid, 'C20');
  const pre2012 = makeHost({ identity: { build: 7601, ndr64: false } });
  t.equal(parseEpid(pre2012.request({ version: 4 }).verified!.base.epid)!.platformId, 55041);
});

t.test('C27: counts 1, 2, 3…; a repeat is unchanged; applications are independent', async (t) => {
  const host = makeHost();
  const seq = [1, 2, 3, 4].map((n) => host.request({ clientMachineId: cmid(n) }).verified!.base.currentCount);
  t.same(seq, [1, 2, 3, 4]);
  t.equal(host.request({ clientMachineId: cmid(2) }).verified!.base.currentCount, 4);
  t.equal(host.request({ groupName: 'Office 2010', version: 4, clientMachineId: cmid(1) }).verified!.base.currentCount, 1);
  t.equal(host.request({ groupName: 'Office 2016', clientMachineId: cmid(1) }).verified!.base.currentCount, 1);
  t.equal(host.request({ groupName: 'Office 2019', clientMachineId: cmid(2) }).verified!.base.currentCount, 2);
  t.equal(
    host.request({ groupName: 'Windows Server 2022', clientMachineId: cmid(9) }).verified!.base.currentCount,
    5,
    'servers and clients share the Windows count',
  );
  t.equal(host.store.snapshot(OFFICE_2010_APP, host.now, COUNT_WINDOW_MS).activeClients, 1);
});

t.test('C28: the count is capped at 2 × the largest threshold seen', async (t) => {
  const servers = makeHost();
  const got: number[] = [];
  for (let n = 1; n <= 12; n++)
    got.push(servers.request({ groupName: 'Windows Server 2019', clientMachineId: cmid(n) }).verified!.base.currentCount);
  t.same(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10], 'only servers: 10');
  t.equal(servers.request({ clientMachineId: cmid(13) }).verified!.base.currentCount, 13, 'a Windows client raises the cap to 50');
  const clients = makeHost();
  let last = 0;
  for (let n = 1; n <= 55; n++) last = clients.request({ clientMachineId: cmid(n) }).verified!.base.currentCount;
  t.equal(last, 50);
  t.equal(clients.store.snapshot(WINDOWS_APP, clients.now, COUNT_WINDOW_MS).activeClients, 55, 'the store still knows them all');
});

t.test('C29: 30-day expiry at the boundary; counts survive a restart', async (t) => {
  const host = makeHost();
  host.request({ clientMachineId: cmid(1) });
  host.request({ clientMachineId: cmid(2) });
  host.now += COUNT_WINDOW_MS;
  t.equal(host.request({ clientMachineId: cmid(3) }).verified!.base.currentCount, 3, 'exactly 30 days: still counted');
  host.now += 1;
  const restarted = host.restart();
  t.equal(restarted.request({ clientMachineId: cmid(4) }).verified!.base.currentCount, 2, '30 days + 1 ms: the first two are gone');
});

t.test('C30: refused requests change no count', async (t) => {
  const host = makeHost();
  host.request({ clientMachineId: cmid(1) });
  host.request({ clientMachineId: cmid(2), requiredClientCount: 1001 });
  host.request({ clientMachineId: cmid(3), requestTime: filetimeFromMs(host.now - 5 * HOUR) });
  host.request({ clientMachineId: cmid(4), groupName: 'Windows 10/11 (Retail)' });
  host.request({ clientMachineId: cmid(5), kmsCountedId: UNKNOWN_GUID });
  host.send(Buffer.alloc(260));
  t.equal(host.store.events.filter((e) => e.kind === 'refusal').length, 5, 'every refusal is recorded');
  t.equal(host.request({ clientMachineId: cmid(6) }).verified!.base.currentCount, 2);
  // a refusal with a higher threshold does not raise the cap either
  const servers = makeHost();
  for (let n = 1; n <= 11; n++) servers.request({ groupName: 'Windows Server 2019', clientMachineId: cmid(n) });
  servers.request({ clientMachineId: cmid(99), requestTime: filetimeFromMs(servers.now + 5 * HOUR) });
  t.equal(servers.request({ groupName: 'Windows Server 2019', clientMachineId: cmid(12) }).verified!.base.currentCount, 10);
});

t.test('C31: intervals come from the settings', async (t) => {
  const host = makeHost();
  const d = host.request().verified!.base;
  t.same([d.activationInterval, d.renewalInterval], [120, 10080]);
  const custom = makeHost({ settings: { activationIntervalMinutes: 15, renewalIntervalMinutes: 43200 } });
  for (const version of [4, 5, 6] as const) {
    const c = custom.request({ version, clientMachineId: cmid(version) }).verified!.base;
    t.same([c.activationInterval, c.renewalInterval], [15, 43200]);
  }
});

t.test('C40: v6 responses verify when the client time is in another 4-hour slot', async (t) => {
  // the host clock sits just after a 4-hour boundary, so earlier client times fall in the previous slot
  const host = makeHost({ now: Date.UTC(2026, 10, 24, 8, 1) });
  let n = 0;
  for (let offset = -(3 * HOUR + 59 * MINUTE); offset <= 3 * HOUR + 59 * MINUTE; offset += 37 * MINUTE) {
    const x = host.request({ version: 6, requestTime: filetimeFromMs(host.now + offset), clientMachineId: cmid(++n) });
    t.equal(x.result.hresult, 0);
    t.ok(x.verified, `offset ${offset / MINUTE} min verifies`);
  }
});

t.test("renewals keep a client's place; VMs count like physical machines", async (t) => {
  const host = makeHost();
  for (let n = 1; n <= 3; n++) host.request({ clientMachineId: cmid(n), vmInfo: n === 2 ? 1 : 0 });
  host.now += 20 * DAY;
  const renewal = host.request({ clientMachineId: cmid(1), licenseStatus: 1, bindingExpiration: 180 * 1440 - 20 * 1440 });
  t.equal(renewal.verified!.base.currentCount, 3);
  t.equal(renewal.result.outcome.licenseStatusName, 'licensed');
  host.now += 15 * DAY; // 35 days after the first requests: 2 and 3 dropped, 1 renewed 15 days ago
  t.equal(host.request({ clientMachineId: cmid(4), vmInfo: 1 }).verified!.base.currentCount, 2);
  const vm = host.request({ clientMachineId: cmid(5), vmInfo: 1 });
  t.equal(vm.result.outcome.vm, true);
  t.equal(vm.verified!.base.currentCount, 3);
});

t.test('PreviousClientMachineID replaces the old CMID in the count', async (t) => {
  const host = makeHost();
  host.request({ clientMachineId: cmid(1) });
  host.request({ clientMachineId: cmid(2) });
  const reimaged = host.request({ clientMachineId: cmid(3), previousClientMachineId: cmid(1) });
  t.equal(reimaged.verified!.base.currentCount, 2);
  t.equal(reimaged.result.outcome.previousClientMachineId, cmid(1));
  t.equal(host.request({ clientMachineId: cmid(4) }).verified!.base.currentCount, 3);
});

t.test('the host clock jumping back and forward', async (t) => {
  const host = makeHost();
  host.request({ clientMachineId: cmid(1) });
  host.request({ clientMachineId: cmid(2) });
  host.now -= 10 * DAY; // NTP fixes a clock that ran ahead
  t.equal(host.request({ clientMachineId: cmid(1) }).verified!.base.currentCount, 2, 'no double count');
  t.equal(host.request({ clientMachineId: cmid(3) }).verified!.base.currentCount, 3, 'nobody dropped');
  // forward again: every client ages from the latest host time it was seen at
  host.now = T0 + 15 * DAY;
  t.equal(host.request({ clientMachineId: cmid(4) }).verified!.base.currentCount, 4);
  host.now = T0 + 21 * DAY; // client 3 was last seen at T0 - 10 days: 31 days ago
  t.equal(host.request({ clientMachineId: cmid(5) }).verified!.base.currentCount, 4);
  host.now = T0 + 31 * DAY; // clients 1 and 2: their last-seen stayed T0, not T0 - 10 days
  t.equal(host.request({ clientMachineId: cmid(6) }).verified!.base.currentCount, 3);
  t.equal(host.store.machine(WINDOWS_APP, cmid(1))?.lastCountedMs, T0);
});

t.test('the outcome record is complete', async (t) => {
  const host = makeHost();
  const x = host.request({
    version: 5,
    groupName: 'Windows Server 2022',
    clientMachineId: cmid(1),
    activationId: 'ef6cfc9f-8c5d-44ac-9aad-de6a2ea0ae03',
    licenseStatus: 5,
    vmInfo: 1,
  });
  const o = x.result.outcome;
  t.equal(o.result, 'below-threshold');
  t.equal(o.hresult, 0);
  t.equal(o.clientAddress, '192.0.2.10');
  t.equal(o.protocolVersion, 5);
  t.equal(o.clientMachineId, cmid(1));
  t.equal(o.workstationName, 'client01.contoso.test');
  t.equal(o.applicationId, WINDOWS_APP);
  t.equal(o.applicationName, 'Windows');
  t.equal(o.kmsCountedId, group('Windows Server 2022').id);
  t.equal(o.productGroupName, 'Windows Server 2022');
  t.equal(o.skuName, catalog.describeSku('ef6cfc9f-8c5d-44ac-9aad-de6a2ea0ae03', group('Windows Server 2022').id));
  t.equal(o.requiredClientCount, 5);
  t.equal(o.requestTimeMs, host.now);
  t.equal(o.vm, true);
  t.equal(o.licenseStatus, 5);
  t.equal(o.licenseStatusName, 'notification');
  t.equal(o.bindingExpirationMinutes, 43200);
  t.equal(o.currentCount, 1);
  t.equal(o.epid, x.verified!.base.epid);
  t.match(o.explanation, /\b4 more machines\b/, 'says how many more machines are needed');
  for (let n = 2; n <= 5; n++) host.request({ groupName: 'Windows Server 2022', clientMachineId: cmid(n) });
  const fifth = host.request({ groupName: 'Windows Server 2022', clientMachineId: cmid(5) }).result.outcome;
  t.equal(fifth.result, 'activated');
  t.equal(fifth.explanation, undefined);
  t.same([0, 1, 2, 3, 4, 5, 6, 7].map(licenseStatusName).slice(0, 3), ['unlicensed', 'licensed', 'initial grace (OOB)']);
  t.match(licenseStatusName(7), '7');

  const refused = host.request({ kmsCountedId: UNKNOWN_GUID, activationId: SPARE_V4_GUID }).result.outcome;
  t.equal(refused.result, 'refused');
  t.equal(refused.hresult, NOT_SERVED);
  t.equal(refused.currentCount, undefined);
  t.equal(refused.epid, undefined);
  t.match(refused.productGroupName, UNKNOWN_GUID);
  t.match(refused.skuName, SPARE_V4_GUID, 'an unknown product is named by its Activation ID (the group has its own field)');
});

t.test('a host-key group that cannot form an ePID is a configuration fault, and nothing is counted', async (t) => {
  const host = makeHost({ policy: { hostKeyGroups: ['Windows Server 2019 (Azure Only)'] } });
  t.throws(() => host.request({ groupName: 'Windows Server 2019' }), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.equal(counts(host), 0);
  const pinned = makeHost({
    policy: { hostKeyGroups: ['Windows Server 2019 (Azure Only)'] },
    identity: { epids: { 'Windows Server 2019 (Azure Only)': '03612-00206-999-000001-03-1033-20348.0000-2402021' } },
  });
  t.equal(pinned.request({ groupName: 'Windows Server 2019' }).verified?.base.epid, '03612-00206-999-000001-03-1033-20348.0000-2402021');
});
