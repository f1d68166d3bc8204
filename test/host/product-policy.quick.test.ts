import t from 'tap';
import { loadCatalog } from '../../src/catalog/load';
import { KmsError } from '../../src/errors';
import { buildProductPolicy, isDefaultHostKeyGroup } from '../../src/host/product-policy';
import { OFFICE_2010_APP, OFFICE_2013_APP, UNKNOWN_GUID, WINDOWS_APP } from '../ids';

const catalog = loadCatalog();
const DEFAULTS = { hostKeyGroups: [], allowRetail: false, allowPreview: false };
const policy = buildProductPolicy(catalog, DEFAULTS);

function groupByName(name: string) {
  for (const app of catalog.applications) {
    const g = app.kmsGroups.find((x) => x.name === name);
    if (g) return { id: g.id, app: app.id };
  }
  throw new Error(`no group ${name}`);
}

function served(name: string) {
  const g = groupByName(name);
  const d = policy.decide(g.app, g.id);
  if (!d.ok) throw new Error(`${name} refused: ${d.code}`);
  return d.hostKeyGroup;
}

t.test('default set: every non-retail, non-preview group is served for its own application', async (t) => {
  let count = 0;
  for (const app of catalog.applications) {
    for (const g of app.kmsGroups) {
      const d = policy.decide(app.id, g.id);
      if (g.isRetail) t.same(d, { ok: false, code: 'KMS_ERR_KMS_RETAIL_GROUP', group: catalog.kmsGroupById(g.id) }, g.name);
      else if (g.isPreview) t.same(d, { ok: false, code: 'KMS_ERR_KMS_PREVIEW_GROUP', group: catalog.kmsGroupById(g.id) }, g.name);
      else {
        t.equal(d.ok, true, `${g.name} served`);
        if (d.ok) {
          count++;
          t.equal(d.group.id, g.id);
          t.ok(d.hostKeyGroup.activatesKmsGroups.includes(g.id), `${g.name}: the chosen host key activates it`);
          t.ok(isDefaultHostKeyGroup(d.hostKeyGroup), `${g.name}: answered from a default host-key group`);
        }
      }
      // the same group under each other application
      for (const other of catalog.applications) {
        if (other.id !== app.id) t.equal(policy.decide(other.id, g.id).ok, false);
      }
    }
  }
  t.equal(policy.served.length, count);
  t.ok(count >= 30);
});

t.test('§7.4 examples of the chosen host-key group', async (t) => {
  const win10 = served('Windows 10/11 2015 (Volume)');
  t.equal(win10.name, 'Windows 10 2019');
  t.equal(win10.groupId, 206);
  t.equal(served('Windows 7').name, 'Windows 10 2019');
  t.equal(served('Windows Vista').groupId, 172);
  t.equal(served('Windows Vista').name, 'Windows 7');
  t.equal(served('Windows Server 2008 R2 B (Standard and Enterprise)').groupId, 168);
  t.equal(served('Windows Server 2022').groupId, 4573);
  t.equal(served('Windows Server 2025').groupId, 4918);
  t.equal(served('Office 2024').name, 'Office LTSC 2024');
  t.equal(served('Office 2024').groupId, 206);
  t.equal(served('Office 2010').groupId, 96);
  t.equal(served('Windows 10 2024 (Volume)').name, 'Windows Server 2025');
});

t.test('refusal codes', async (t) => {
  t.same(policy.decide(WINDOWS_APP, UNKNOWN_GUID), { ok: false, code: 'KMS_ERR_KMS_UNKNOWN_GROUP' });
  const office = groupByName('Office 2016');
  const wrong = policy.decide(WINDOWS_APP, office.id);
  t.equal(wrong.ok ? '' : wrong.code, 'KMS_ERR_KMS_WRONG_APPLICATION');
  t.equal(policy.decide(OFFICE_2010_APP, office.id).ok, false);
  t.equal(policy.decide(OFFICE_2013_APP.toUpperCase(), office.id.toUpperCase()).ok, true, 'GUID case does not matter');
  const retail = groupByName('Windows 10/11 (Retail)');
  const r = policy.decide(WINDOWS_APP, retail.id);
  t.equal(r.ok ? '' : r.code, 'KMS_ERR_KMS_RETAIL_GROUP');
  const preview = groupByName('Office 2013 (Pre-release)');
  const p = policy.decide(OFFICE_2013_APP, preview.id);
  t.equal(p.ok ? '' : p.code, 'KMS_ERR_KMS_PREVIEW_GROUP');
  // the wrong application wins over retail: it is checked first (§7.1 step 6)
  const wr = policy.decide(OFFICE_2013_APP, retail.id);
  t.equal(wr.ok ? '' : wr.code, 'KMS_ERR_KMS_WRONG_APPLICATION');
});

t.test('allowRetail / allowPreview', async (t) => {
  const open = buildProductPolicy(catalog, { hostKeyGroups: [], allowRetail: true, allowPreview: true });
  const retail = groupByName('Windows 10/11 (Retail)');
  const r = open.decide(WINDOWS_APP, retail.id);
  t.equal(r.ok && r.hostKeyGroup.name, 'Windows 10 2019');
  // no default host key activates the preview groups
  const preview = groupByName('Windows Server Next (Preview)');
  const p = open.decide(WINDOWS_APP, preview.id);
  t.equal(p.ok ? '' : p.code, 'KMS_ERR_KMS_NO_HOST_KEY_GROUP');
  const named = buildProductPolicy(catalog, { hostKeyGroups: ['Windows 10 and 8.1 Pre-Release'], allowRetail: false, allowPreview: true });
  const wp = named.decide(WINDOWS_APP, groupByName('Windows Preview').id);
  t.equal(wp.ok && wp.hostKeyGroup.name, 'Windows 10 and 8.1 Pre-Release', 'a named preview host key serves preview groups');
});

t.test('narrowing to one host-key group', async (t) => {
  const only2025 = buildProductPolicy(catalog, { hostKeyGroups: ['Windows Server 2025'], allowRetail: false, allowPreview: false });
  t.same(
    only2025.configuredHostKeyGroups.map((h) => h.name),
    ['Windows Server 2025'],
  );
  t.equal(only2025.decide(WINDOWS_APP, groupByName('Windows Server 2025').id).ok, true);
  const d = only2025.decide(WINDOWS_APP, groupByName('Windows 10/11 2015 (Volume)').id);
  t.equal(d.ok ? '' : d.code, 'KMS_ERR_KMS_NO_HOST_KEY_GROUP', 'a Server 2025-only host refuses Windows 11');
  t.equal(only2025.decide(OFFICE_2013_APP, groupByName('Office 2024').id).ok, false);
  t.same(
    only2025.hostKeyGroupsInUse.map((h) => h.name),
    ['Windows Server 2025'],
  );

  // by id, and two groups: Windows 10 2016 then answers Windows 10/11 volume
  const two = buildProductPolicy(catalog, {
    hostKeyGroups: ['30a42c86-b7a0-4a34-8c90-ff177cb2acb7', 'office ltsc 2021'],
    allowRetail: false,
    allowPreview: false,
  });
  const w = two.decide(WINDOWS_APP, groupByName('Windows 10/11 2015 (Volume)').id);
  t.equal(w.ok && w.hostKeyGroup.name, 'Windows 10 2016');
  t.equal(two.decide(OFFICE_2013_APP, groupByName('Office 2021').id).ok, true);
  t.equal(two.decide(OFFICE_2013_APP, groupByName('Office 2019').id).ok, false);
});

t.test('host-key groups in use are those chosen for some served group', async (t) => {
  const names = policy.hostKeyGroupsInUse.map((h) => h.name);
  t.ok(names.includes('Windows 10 2019'));
  t.notOk(names.includes('Windows 10 2015 VL'), 'always outranked by Windows 10 2019');
  t.notOk(names.some((n) => /Lab/.test(n)));
  t.ok(policy.configuredHostKeyGroups.every(isDefaultHostKeyGroup));
  t.notOk(
    policy.configuredHostKeyGroups.some((h) => h.name === 'Windows Server 2019 (Azure Only)'),
    'no key id range',
  );
});

t.test('unknown configured host-key groups are a ConfigError naming them', async (t) => {
  try {
    buildProductPolicy(catalog, {
      hostKeyGroups: ['Windows Server 2022', 'Windows Server 2031', 'Office 2099'],
      allowRetail: false,
      allowPreview: false,
    });
    t.fail('should throw');
  } catch (err) {
    t.equal((err as KmsError).code, 'KMS_ERR_CONFIG_INVALID');
    t.same((err as KmsError).details.unknown, ['Windows Server 2031', 'Office 2099']);
    t.match((err as Error).message, 'Windows Server 2031');
  }
});
