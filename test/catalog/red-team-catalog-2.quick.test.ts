// Red-team round 2 on the catalogue: a hand-edited catalogue whose product names a KMS version
// newer than this appliance knows (PROTOCOL.md §4.1 lists 4.0, 5.0 and 6.0).
import t from 'tap';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCatalog, clientProtocol } from '../../src/catalog/catalog';
import { main } from '../../src/cli/main';
import { captureIo } from '../cli/commands/io';
import { ROOT } from '../paths';
import { WIN10_VOLUME_GROUP } from '../ids';

const TEXT = readFileSync(join(ROOT, 'data', 'kms-catalog.json'), 'utf8');

/** The shipped catalogue with the Windows 10/11 volume group's clients said to speak `version`. */
function withProtocol(version: string): { raw: Record<string, any>; groupName: string } {
  const raw = JSON.parse(TEXT) as Record<string, any>;
  for (const app of raw.applications) {
    for (const g of app.kmsGroups) {
      if (g.id === WIN10_VOLUME_GROUP) {
        g.protocol = version;
        return { raw, groupName: g.name };
      }
    }
  }
  throw new Error('the Windows 10/11 volume group is not in the shipped catalogue');
}

t.test('a product whose clients speak an unknown KMS version is named in a warning, never read as 6.0', async (t) => {
  t.same(buildCatalog(JSON.parse(TEXT)).warnings, [], 'the shipped catalogue has no such product');
  for (const version of ['7.0', '6.1', '3.0', '0.0']) {
    const { raw, groupName } = withProtocol(version);
    const c = buildCatalog(raw, 'edited.json');
    t.equal(c.warnings.length, 1, version);
    t.match(c.warnings[0], groupName, `${version}: the warning names the product`);
    t.match(c.warnings[0], `"${version}"`, `${version}: and the version it says`);
    t.match(c.warnings[0], '4.0, 5.0, 6.0', `${version}: and the versions known`);
    t.equal(clientProtocol(c.kmsGroupById(WIN10_VOLUME_GROUP)!), undefined, `${version} is no known version`);
  }
  for (const [version, major] of [
    ['4.0', 4],
    ['5.0', 5],
    ['6.0', 6],
  ] as const) {
    const c = buildCatalog(withProtocol(version).raw);
    t.same(c.warnings, []);
    t.equal(clientProtocol(c.kmsGroupById(WIN10_VOLUME_GROUP)!), major);
  }
});

t.test('activate refuses to guess a version for such a product, and speaks the one asked for', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-catalog-7-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'catalog.json');
  writeFileSync(file, JSON.stringify(withProtocol('7.0').raw));
  // A loopback listener that counts connections and closes them: activate must not connect at all
  // when it refuses, and does connect when --protocol names a version.
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    s.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = String((server.address() as { port: number }).port);
  const args = ['activate', '--host', '127.0.0.1', '--port', port, '--product', 'Windows 10/11 Enterprise', '--catalog', file];

  const refused = captureIo();
  t.equal(await main(args, refused), 2, 'a usage problem');
  t.match(refused.err(), 'KMS 7.0', 'says the version the catalogue gives');
  t.match(refused.err(), '4.0, 5.0, 6.0', 'and the versions it speaks');
  t.match(refused.err(), '--protocol', 'and what to do');
  t.equal(connections, 0, 'nothing was sent');

  const explicit = captureIo();
  t.equal(await main([...args, '--protocol', '6', '--timeout', '2'], explicit), 1, 'the listener hangs up: a client failure');
  t.equal(connections, 1, 'with --protocol the request is sent');
});
