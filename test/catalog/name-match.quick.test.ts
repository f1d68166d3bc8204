// Names resolve the way administrators type them; ambiguous ones list candidates, unknown ones
// get suggestions.
import t from 'tap';
import { loadCatalog } from '../../src/catalog/load';
import { explainUnresolved, resolveName, type NameKind } from '../../src/catalog/name-match';
import { WINDOWS_APP } from '../ids';

const catalog = loadCatalog();
const found = (typed: string, kinds: NameKind[]): string | undefined => {
  const r = resolveName(catalog, typed, kinds);
  return 'found' in r ? r.found.name : undefined;
};

t.test('names as people type them', async (t) => {
  for (const [typed, kinds, want] of [
    ['Windows 11 Enterprise', ['sku', 'group'], 'Windows 10/11 Enterprise'],
    ['Win 11 Ent', ['sku', 'group'], 'Windows 10/11 Enterprise'],
    ['windows 10/11 enterprise', ['sku'], 'Windows 10/11 Enterprise'],
    ['Office 2021', ['sku', 'group'], 'Office 2021'],
    ['Server 2025 Standard', ['sku', 'group'], 'Windows Server 2025 Standard'],
    ['Windows 11', ['group'], 'Windows 10/11 2015 (Volume)'],
    ['Office LTSC Professional Plus 2021', ['sku'], 'Office LTSC Professional Plus 2021'],
    ['Win 11 Pro', ['sku'], 'Windows 10/11 Pro'],
    ['Windows', ['application'], 'Windows'],
    [WINDOWS_APP, ['application'], 'Windows'],
  ] as [string, NameKind[], string][]) {
    t.equal(found(typed, kinds), want, typed);
  }
});

t.test('ambiguous names list the candidates; unknown ones suggest', async (t) => {
  const amb = resolveName(catalog, 'Office', ['application']);
  t.ok('ambiguous' in amb && amb.ambiguous.length === 2, 'two Office applications');
  t.match(explainUnresolved('Office', amb, 'application'), /"Office" matches 2 names: "Office 14 \(2010\)", "Office 2013/);
  const ent = resolveName(catalog, 'Enterprise', ['sku']);
  t.ok('ambiguous' in ent, 'Enterprise alone is many products');
  const typo = resolveName(catalog, 'Windws 11 Entrprise', ['sku']);
  t.ok('suggestions' in typo);
  t.match(explainUnresolved('Windws 11 Entrprise', typo, 'product'), /did you mean "Windows 10\/11 Enterprise"/);
  t.match(explainUnresolved('zzz', resolveName(catalog, 'zzz', ['sku']), 'product'), /no product named like "zzz" in the catalogue/);
  t.notOk('found' in resolveName(catalog, 'Windows 99', ['group']), 'a number must match exactly');
});
