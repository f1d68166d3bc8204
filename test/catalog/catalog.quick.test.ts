import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCatalog, CATALOG_UPDATE_HINT, isUnknownName } from '../../src/catalog/catalog';
import { KmsError } from '../../src/errors';
import { ROOT } from '../paths';
import {
  NEW_KMS_GROUP,
  NIL_GUID,
  OFFICE_2010_APP,
  OFFICE_2013_APP,
  SPARE_GUID,
  UNKNOWN_GUID,
  WIN10_ENTERPRISE_SKU,
  WIN10_VOLUME_GROUP,
  WINDOWS_APP,
} from '../ids';

const RAW = JSON.parse(readFileSync(join(ROOT, 'data', 'kms-catalog.json'), 'utf8')) as Record<string, unknown>;
const catalog = buildCatalog(RAW, 'kms-catalog.json');

function clone(): Record<string, any> {
  return JSON.parse(JSON.stringify(RAW));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof KmsError ? err.code : 'not a KmsError';
  }
  return undefined;
}

t.test('applications and KMS groups by id', async (t) => {
  t.equal(catalog.applicationById(WINDOWS_APP)?.name, 'Windows');
  t.equal(catalog.applicationById(OFFICE_2010_APP)?.name, 'Office 14 (2010)');
  t.ok(catalog.applicationById(OFFICE_2013_APP));
  // upper case, as an admin might paste it
  t.equal(catalog.applicationById(WINDOWS_APP.toUpperCase())?.id, WINDOWS_APP);
  t.equal(catalog.applicationById(NIL_GUID), undefined);

  const g = catalog.kmsGroupById(WIN10_VOLUME_GROUP);
  t.equal(g?.name, 'Windows 10/11 2015 (Volume)');
  t.equal(g?.nCountPolicy, 25);
  t.equal(g?.application.id, WINDOWS_APP);
  t.equal(catalog.kmsGroupById('e85af946-2e25-47b7-83e1-bebcebeac611')?.application.id, OFFICE_2010_APP);
});

t.test('SKUs by activation id, with their group', async (t) => {
  const sku = catalog.skuById(WIN10_ENTERPRISE_SKU);
  t.ok(sku, 'Windows 10 Enterprise is in the catalogue');
  t.match(sku?.name, /Enterprise/);
  t.equal(sku?.group.id, WIN10_VOLUME_GROUP);
  t.equal(sku?.group.application.id, WINDOWS_APP);
  t.equal(catalog.skuById(SPARE_GUID), undefined);
});

t.test('host-key groups by id and by name; host builds', async (t) => {
  t.equal(catalog.hostKeyGroups.length, (RAW.hostKeyGroups as unknown[]).length);
  const byName = catalog.findHostKeyGroup('windows server 2022');
  t.equal(byName?.groupId, 4573);
  t.equal(catalog.findHostKeyGroup('{661F7658-7035-4B4C-9F35-010682943EC2}'), byName, 'braced upper-case id');
  t.equal(catalog.hostKeyGroupById('661f7658-7035-4b4c-9f35-010682943ec2'), byName);
  t.equal(catalog.findHostKeyGroup('Windows Server 2031'), undefined);
  t.equal(catalog.hostBuild(20348)?.platformId, 3612);
  t.equal(catalog.hostBuild(9200)?.platformId, 5426);
  t.equal(catalog.hostBuild(7601)?.platformId, 55041);
  t.equal(catalog.hostBuild(12345), undefined);
  t.same(catalog.warnings, []);
});

t.test('describeSku never says just "Unknown"', async (t) => {
  t.equal(catalog.describeSku(WIN10_ENTERPRISE_SKU, WIN10_VOLUME_GROUP), catalog.skuById(WIN10_ENTERPRISE_SKU)!.name);
  const newEdition = catalog.describeSku(SPARE_GUID, WIN10_VOLUME_GROUP);
  t.match(newEdition, 'Windows 10/11 2015 (Volume)', 'an unknown SKU of a known group is named after the group');
  t.match(newEdition, SPARE_GUID);
  const unknownGroup = catalog.describeSku(SPARE_GUID, UNKNOWN_GUID);
  t.match(unknownGroup, SPARE_GUID, 'an unknown product is named by its Activation ID');
  t.ok(isUnknownName(unknownGroup) && isUnknownName(newEdition), 'both read as unknown, so the CLI adds the advice once');
  t.equal(catalog.describeKmsGroup(UNKNOWN_GUID), `unknown KMS group ${UNKNOWN_GUID}`);
  t.ok(unknownGroup.length <= 70, 'short enough for a table cell and a log field; the advice is CATALOG_UPDATE_HINT');
  t.equal(catalog.describeKmsGroup(WIN10_VOLUME_GROUP), 'Windows 10/11 2015 (Volume)');
  t.equal(catalog.describeApplication(UNKNOWN_GUID), `unknown application ${UNKNOWN_GUID}`);
  t.match(CATALOG_UPDATE_HINT, /catalogue/);
});

t.test('the catalogue is frozen', async (t) => {
  t.throws(() => {
    (catalog.hostKeyGroups[0] as { name: string }).name = 'x';
  });
});

t.test('bad shapes are ConfigError KMS_ERR_CONFIG_INVALID naming the entry', async (t) => {
  t.equal(
    codeOf(() => buildCatalog(null)),
    'KMS_ERR_CONFIG_INVALID',
  );
  t.equal(
    codeOf(() => buildCatalog([])),
    'KMS_ERR_CONFIG_INVALID',
  );
  t.equal(
    codeOf(() => buildCatalog({ ...clone(), applications: undefined })),
    'KMS_ERR_CONFIG_INVALID',
  );

  const badGroup = clone();
  badGroup.applications[0].kmsGroups[2].nCountPolicy = '5';
  try {
    buildCatalog(badGroup, 'updated.json');
    t.fail('should throw');
  } catch (err) {
    t.equal((err as KmsError).code, 'KMS_ERR_CONFIG_INVALID');
    const errors = (err as KmsError).details.errors as string[];
    t.equal(errors.length, 1);
    t.match(errors[0], 'applications[0].kmsGroups[2]');
    t.match(errors[0], badGroup.applications[0].kmsGroups[2].name);
    t.match(errors[0], 'nCountPolicy');
    t.match((err as KmsError).message, 'updated.json');
  }

  const badGuid = clone();
  badGuid.hostKeyGroups[5].activatesKmsGroups.push('not-a-guid');
  badGuid.hostBuilds[1].platformId = null;
  try {
    buildCatalog(badGuid);
    t.fail('should throw');
  } catch (err) {
    const errors = (err as KmsError).details.errors as string[];
    t.equal(errors.length, 2, 'every problem is reported');
    t.match(errors.join('\n'), 'hostKeyGroups[5]');
    t.match(errors.join('\n'), 'hostBuilds[1]');
  }

  const badRange = clone();
  badRange.hostKeyGroups[0].minKeyId = badRange.hostKeyGroups[0].maxKeyId + 1;
  t.equal(
    codeOf(() => buildCatalog(badRange)),
    'KMS_ERR_CONFIG_INVALID',
  );

  const dup = clone();
  dup.applications[2].kmsGroups.push(dup.applications[0].kmsGroups[0]);
  t.equal(
    codeOf(() => buildCatalog(dup)),
    'KMS_ERR_CONFIG_INVALID',
    'a KMS group in two applications',
  );
});

t.test('a newer file from the same generator with extra fields and products still loads', async (t) => {
  const next = clone();
  next.futureField = { anything: true };
  next.applications[0].kmsGroups.push({
    id: NEW_KMS_GROUP,
    name: 'Windows Server 2028',
    names: {},
    nCountPolicy: 5,
    protocol: '6.0',
    isRetail: false,
    isPreview: false,
    sources: ['python-db'],
    hostEpidSlot: null,
    activatedByHostKeyGroups: [],
    skus: [],
    newKey: 1,
  });
  const c = buildCatalog(next);
  t.equal(c.kmsGroupById(NEW_KMS_GROUP)?.name, 'Windows Server 2028');
});

t.test('dangling host-key references are warnings, not errors', async (t) => {
  const raw = clone();
  raw.hostKeyGroups[0].activatesKmsGroups.push(NEW_KMS_GROUP);
  const c = buildCatalog(raw);
  t.equal(c.warnings.length, 1);
  t.match(c.warnings[0], NEW_KMS_GROUP);
});
