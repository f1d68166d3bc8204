import t from 'tap';
import { randomBytes } from 'node:crypto';
import { loadCatalog } from '../../src/catalog/load';
import { EPID_SHAPE, earliestEpidDateMs, epidDateMs, formatEpid, generateEpid, parseEpid, randomIntInclusive } from '../../src/host/epid';
import { isDefaultHostKeyGroup } from '../../src/host/product-policy';

const catalog = loadCatalog();
const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);

t.test('the §7.4 example parses and formats back', async (t) => {
  const example = '03612-00206-556-123727-03-1033-17763.0000-2972018';
  const p = parseEpid(example);
  t.same(p, { platformId: 3612, groupId: 206, keyId: 556123727, lcid: 1033, build: 17763, dayOfYear: 297, year: 2018 });
  t.equal(formatEpid(p!), example);
  t.equal(example.length, 49);
  t.equal(new Date(epidDateMs(p!)).toISOString(), '2018-10-24T00:00:00.000Z');
});

t.test('parseEpid rejects what §7.4 forbids', async (t) => {
  for (const bad of [
    '03612-00206-556-123727-02-1033-17763.0000-2972018', // channel 02
    '3612-00206-556-123727-03-1033-17763.0000-2972018', // platform not padded
    '03612-00206-556-123727-03-103-17763.0000-2972018', // 3-digit LCID
    '03612-00206-556-123727-03-1033-17763.0001-2972018', // revision
    '03612-00206-556-123727-03-1033-17763.0000-3662018', // day 366 in 2018
    '03612-00206-556-123727-03-1033-17763.0000-0002018', // day 0
    '03612-00206-556-123727-03-1033-17763.0000-3672020', // day 367
    '03612-00206-556-123727-03-1033-17763.0000-2972018 ', // trailing space
  ]) {
    t.equal(parseEpid(bad), undefined, bad);
  }
  t.ok(parseEpid('03612-00206-556-123727-03-1033-17763.0000-3662020'), 'day 366 in a leap year');
});

t.test('randomIntInclusive reaches both ends and never leaves the range', async (t) => {
  const fixed = (v: number) => () => {
    const b = Buffer.alloc(6);
    b.writeUIntBE(v, 0, 6);
    return b;
  };
  t.equal(randomIntInclusive(551000000, 570999999, fixed(0)), 551000000);
  const span = 570999999 - 551000000 + 1;
  t.equal(randomIntInclusive(551000000, 570999999, fixed(span - 1)), 570999999, 'maxKeyId itself is possible');
  t.equal(randomIntInclusive(5, 5, fixed(12345)), 5);
  // a source stuck above the rejection limit still terminates
  t.equal(typeof randomIntInclusive(0, 999999999, () => Buffer.alloc(6, 0xff)), 'number');
  for (let i = 0; i < 200; i++) {
    const v = randomIntInclusive(3, 9, randomBytes);
    if (v < 3 || v > 9) t.fail(`out of range: ${v}`);
  }
  t.throws(() => randomIntInclusive(5, 4, randomBytes));
});

t.test('generated ePIDs for every default host-key group and ePID build are in range', async (t) => {
  const builds = catalog.hostBuilds.filter((b) => b.useForEpid);
  const groups = catalog.hostKeyGroups.filter(isDefaultHostKeyGroup);
  let checked = 0;
  for (const hostBuild of builds) {
    for (const g of groups) {
      const group = { ...g, groupId: g.groupId!, minKeyId: g.minKeyId!, maxKeyId: g.maxKeyId! };
      const epid = generateEpid({ hostBuild, group, lcid: 1031, nowMs: NOW, randomBytes });
      const p = parseEpid(epid);
      if (!p || !EPID_SHAPE.test(epid)) {
        t.fail(`bad shape ${epid}`);
        continue;
      }
      const earliest = earliestEpidDateMs(hostBuild, g)!;
      const ok =
        p.platformId === hostBuild.platformId &&
        p.build === hostBuild.build &&
        p.lcid === 1031 &&
        p.groupId === g.groupId &&
        p.keyId >= g.minKeyId! &&
        p.keyId <= g.maxKeyId! &&
        epidDateMs(p) >= earliest &&
        epidDateMs(p) <= NOW;
      if (!ok) t.fail(`${epid} for ${g.name} / ${hostBuild.build}`);
      else checked++;
    }
  }
  t.equal(checked, builds.length * groups.length);
  t.ok(checked > 100);
});

t.test('the ePID date is bounded by the build, the group and today', async (t) => {
  const hostBuild = catalog.hostBuild(26100)!;
  const g = catalog.findHostKeyGroup('Windows Server 2012')!; // no releaseDate: the build's date alone
  const group = { ...g, groupId: g.groupId!, minKeyId: g.minKeyId!, maxKeyId: g.maxKeyId! };
  t.equal(earliestEpidDateMs(hostBuild, g), Date.parse('2024-11-01'));
  const zeros = () => Buffer.alloc(6);
  t.match(generateEpid({ hostBuild, group, lcid: 1033, nowMs: NOW, randomBytes: zeros }), /-3062024$/, 'earliest day: 2024-11-01');
  const g22 = catalog.findHostKeyGroup('Windows Server 2022')!;
  const group22 = { ...g22, groupId: g22.groupId!, minKeyId: g22.minKeyId!, maxKeyId: g22.maxKeyId! };
  t.match(
    generateEpid({ hostBuild: catalog.hostBuild(9600)!, group: group22, lcid: 1033, nowMs: NOW, randomBytes: zeros }),
    /-2302021$/,
    'group release 2021-08-18 is later than build 9600',
  );
  // a host clock before the release date gives today, never a future date
  const early = Date.UTC(2024, 0, 10);
  t.match(generateEpid({ hostBuild, group, lcid: 1033, nowMs: early, randomBytes: zeros }), /-0102024$/);
});
