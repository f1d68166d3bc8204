import t from 'tap';
import { command } from '../../../src/cli/commands/report';
import { captureIo, preparedDataDir, writeConfig } from './inventory-fixture';

const ENTITLEMENTS = `entitlements:
  - product: Windows 10/11 2015 (Volume)
    licenses: 15
  - product: Office 2019
    licenses: 10
  - product: Visio 2099
    licenses: 3
`;

async function run(args: string[], dir: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await command.run([...args, '--data-dir', dir], c.io);
  return { code, out: c.stdout(), err: c.stderr() };
}

t.test('table: active machines against licences, over-use flagged', async (t) => {
  const dir = preparedDataDir(t);
  const config = writeConfig(t, ENTITLEMENTS);
  const { code, out, err } = await run(['--config', config], dir);
  t.equal(code, 0);
  t.equal(err.trim().split('\n').length, 1, 'one warning line');
  t.match(
    err,
    /entitlements\[2\]\.product: "Visio 2099" names no application, product group or product of the catalogue/,
    'a name the catalogue lacks is pointed out',
  );
  const lines = out.split('\n');
  t.match(
    lines.find((l) => l.startsWith('Windows 10/11 2015 (Volume)')),
    /\s+group\s+20\s+15\s+YES \(\+5\)\s+Windows 10\/11 2015 \(Volume\)$/,
  );
  t.match(
    lines.find((l) => l.startsWith('Office 2019')),
    /\s+group\s+6\s+10\s+no\s+Office 2019$/,
  );
  t.match(
    lines.find((l) => l.startsWith('Visio 2099')),
    /\s+unmatched\s+0\s+3\s+no\s*$/,
  );
  t.match(
    lines.find((l) => l.startsWith('Windows Server 2022')),
    /\s+group\s+3\s+none\s+no entitlement\s+Windows Server 2022$/,
  );
  t.ok(lines.includes('Over-used: Windows 10/11 2015 (Volume) (20 machines, 15 licences).'));
});

t.test('json and csv carry the same rows', async (t) => {
  const dir = preparedDataDir(t);
  const config = writeConfig(t, ENTITLEMENTS);
  const json = await run(['--config', config, '--format', 'json'], dir);
  t.equal(json.code, 0);
  const report = JSON.parse(json.out) as {
    rows: { product: string; activeMachines: number; licenses: number | null; overUse: boolean; excess: number }[];
  };
  t.same(
    report.rows.map((r) => [r.product, r.activeMachines, r.licenses, r.overUse, r.excess]),
    [
      ['Windows 10/11 2015 (Volume)', 20, 15, true, 5],
      ['Office 2019', 6, 10, false, 0],
      ['Visio 2099', 0, 3, false, 0],
      ['Windows Server 2022', 3, null, false, 0],
    ],
  );
  const csv = await run(['--config', config, '-f', 'csv'], dir);
  t.same(csv.out.split('\r\n'), [
    'product,scope,activeMachines,licenses,overUse,excess,groups',
    'Windows 10/11 2015 (Volume),group,20,15,yes,5,Windows 10/11 2015 (Volume)',
    'Office 2019,group,6,10,no,0,Office 2019',
    'Visio 2099,unmatched,0,3,no,0,',
    'Windows Server 2022,group,3,,no,0,Windows Server 2022',
    '',
  ]);
});

t.test('without entitlements every group in use is listed, and the report says nothing was compared', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out } = await run([], dir);
  t.equal(code, 0);
  t.equal(out.match(/no entitlement/g)?.length, 3);
  t.match(out, 'No entitlements are configured, so nothing is compared with licences');
  t.notMatch(out, 'No product is used beyond its licences', 'no false reassurance');
  const json = JSON.parse((await run(['--json'], dir)).out) as { entitlementsConfigured: number };
  t.equal(json.entitlementsConfigured, 0);
});

t.test('an entitlement typed loosely gets the catalogue name to use', async (t) => {
  const dir = preparedDataDir(t);
  const config = writeConfig(t, 'entitlements:\n  - product: Win 11 Ent\n    licenses: 5\n  - product: Ofice 2019\n    licenses: 5\n');
  const { err } = await run(['--config', config], dir);
  t.match(err, /entitlements\[0\]\.product: "Win 11 Ent" names no .*did you mean "Windows 10\/11 Enterprise"\?/);
  t.match(err, /entitlements\[1\]\.product: "Ofice 2019" .*did you mean "Office 2019"/);
});

t.test('usage and configuration errors exit 2', async (t) => {
  const dir = preparedDataDir(t);
  const bad = await run(['--format', 'pdf'], dir);
  t.equal(bad.code, 2);
  t.equal(bad.err.trim().split('\n').length, 1);
  const missing = await run(['--config', '/nonexistent/kms.yaml'], dir);
  t.equal(missing.code, 2);
  t.match(missing.err, '/nonexistent/kms.yaml');
  const c = captureIo();
  t.equal(await command.run(['--help'], c.io), 0);
  t.equal(c.stdout(), command.help);
});

t.test('an entitlement within another (a group of an application, a product of a group) is reported as counted twice', async (t) => {
  const dir = preparedDataDir(t);
  // 20 Windows 10/11 Education clients, 3 Windows Server 2022, 6 Office 2019 (the fixture).
  const config = writeConfig(
    t,
    'entitlements:\n' +
      '  - product: Windows\n    licenses: 30\n' +
      '  - product: Windows Server 2022\n    licenses: 5\n' +
      '  - product: Windows 10/11 Education\n    licenses: 20\n' +
      '  - product: windows 10/11 2015 (volume)\n    licenses: 25\n' +
      '  - product: Office 2019\n    licenses: 10\n',
  );
  const table = await run(['--config', config], dir);
  t.equal(table.code, 0);
  t.equal(table.err, '', 'no problem: overlapping entries are allowed');
  const twice = table.out.split('\n').filter((l) => l.startsWith('Counted twice: '));
  t.same(
    twice.map((l) =>
      l.match(/entitlements\[(\d)\] \("[^"]+"\) lies within entitlements\[(\d)\] \("[^"]+"\): its (\d+) machines/)?.slice(1),
    ),
    [
      ['1', '0', '3'], // Server 2022 within Windows
      ['2', '0', '20'], // Education within Windows
      ['2', '3', '20'], // Education within its group
      ['3', '0', '20'], // the group within Windows
    ],
  );
  t.notMatch(table.out, /entitlements\[4\]/, 'Office 2019 overlaps nothing');
  const json = JSON.parse((await run(['--config', config, '--format', 'json'], dir)).out) as {
    overlaps: { wider: number; narrower: number; machines: number; note: string }[];
  };
  t.same(
    json.overlaps.map((o) => [o.narrower, o.wider, o.machines]),
    [
      [1, 0, 3],
      [2, 0, 20],
      [2, 3, 20],
      [3, 0, 20],
    ],
  );
  const csv = await run(['--config', config, '--format', 'csv'], dir);
  t.equal(csv.err.split('\n').filter((l) => l.includes('note: entitlements[')).length, 4, 'CSV keeps its rows; the notes go to stderr');

  const apart = writeConfig(
    t,
    'entitlements:\n  - product: Windows Server 2022\n    licenses: 5\n  - product: Office 2019\n    licenses: 10\n',
  );
  t.notMatch((await run(['--config', apart], dir)).out, /Counted twice/, 'disjoint entries: no note');
});
