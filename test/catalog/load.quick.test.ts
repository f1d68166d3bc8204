import t from 'tap';
import { join } from 'node:path';
import { findPackageRoot, loadCatalog, shippedCatalogPath } from '../../src/catalog/load';
import { KmsError } from '../../src/errors';
import { ROOT } from '../paths';

function codeAndMessage(fn: () => unknown): [string, string] {
  try {
    fn();
  } catch (err) {
    return [(err as KmsError).code, (err as Error).message];
  }
  return ['', ''];
}

t.test('the shipped catalogue is found from the package root', async (t) => {
  t.equal(findPackageRoot(), ROOT);
  t.equal(shippedCatalogPath(), join(ROOT, 'data', 'kms-catalog.json'));
  const c = loadCatalog();
  t.equal(c.applications.length, 3);
  t.equal(c.source, shippedCatalogPath());
  t.equal(loadCatalog('').applications.length, 3, "'' means the shipped file");
});

t.test('an explicit file is used, and errors name it', async (t) => {
  const dir = t.testdir({
    'good.json': JSON.stringify({ applications: [], hostKeyGroups: [], hostBuilds: [] }),
    'syntax.json': '{ "applications": [',
    'shape.json': JSON.stringify({ applications: [{ id: 'x' }], hostKeyGroups: [], hostBuilds: [] }),
  });
  t.equal(loadCatalog(join(dir, 'good.json')).applications.length, 0);

  const [c1, m1] = codeAndMessage(() => loadCatalog(join(dir, 'missing.json')));
  t.equal(c1, 'KMS_ERR_CONFIG_NOT_FOUND');
  t.match(m1, 'missing.json');
  const [c2, m2] = codeAndMessage(() => loadCatalog(join(dir, 'syntax.json')));
  t.equal(c2, 'KMS_ERR_CONFIG_SYNTAX');
  t.match(m2, 'syntax.json');
  const [c3, m3] = codeAndMessage(() => loadCatalog(join(dir, 'shape.json')));
  t.equal(c3, 'KMS_ERR_CONFIG_INVALID');
  t.match(m3, 'shape.json');
  t.match(m3, 'applications[0]');
  const [c4] = codeAndMessage(() => loadCatalog(dir));
  t.equal(c4, 'KMS_ERR_CONFIG_UNREADABLE', 'a directory is unreadable as a file');
});
