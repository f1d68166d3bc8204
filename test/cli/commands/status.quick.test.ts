import t from 'tap';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { command } from '../../../src/cli/commands/status';
import { SqliteStore } from '../../../src/store/sqlite-store';
import { DATABASE_FILE_NAME } from '../../../src/store/data-dir';
import { cmid, obs, WINDOW } from '../../store/observations';
import { captureIo, preparedDataDir, writeConfig } from './inventory-fixture';
import { WINDOWS_APP } from '../../ids';

const OFFICE_NAME = 'Office 2013 / 2016 / 2019 / LTSC 2021 / LTSC 2024';

t.test('explains the count in words, names the database and lists duplicate CMIDs', async (t) => {
  const dir = preparedDataDir(t);
  const c = captureIo();
  t.equal(await command.run(['--data-dir', dir], c.io), 0);
  const out = c.stdout();
  const lines = out.split('\n');
  t.ok(lines[0]?.startsWith(`Database: ${path.join(dir, DATABASE_FILE_NAME)} (32 machines known, 34 events`), lines[0] ?? '');
  t.ok(
    lines.includes(
      'Windows: 23 machines in the last 30 days; clients need 25: 2 more machines must contact this host before Windows clients activate.',
    ),
  );
  t.ok(lines.includes(`${OFFICE_NAME}: 6 machines in the last 30 days; clients need 5: ${OFFICE_NAME} clients activate.`));
  t.match(out, /Windows 10\/11 2015 \(Volume\)\s+20 machines\s+need 25\s+not activating \(needs 2 more\)/);
  t.match(out, /Windows Server 2022\s+3 machines\s+need 5\s+activating/);
  t.ok(lines.includes(`  ${cmid(1)} (Windows): names clone-b, pc-1.branch.example; switched 2 times`));
  t.equal(c.stderr(), '');
});

t.test('--json carries the same numbers', async (t) => {
  const dir = preparedDataDir(t);
  const c = captureIo();
  t.equal(await command.run(['--json', '--data-dir', dir], c.io), 0);
  const status = JSON.parse(c.stdout()) as {
    database: { file: string; clients: number };
    applications: {
      applicationName: string;
      activeMachines: number;
      threshold: number;
      missing: number;
      activates: boolean;
      summary: string;
      lastActivation: string;
    }[];
    duplicates: { sharedCmids: { cmid: string }[] };
  };
  t.equal(status.database.file, path.join(dir, DATABASE_FILE_NAME));
  t.equal(status.database.clients, 32);
  t.match(status.applications[0], { applicationName: 'Windows', activeMachines: 23, threshold: 25, missing: 2, activates: false });
  t.ok(!Number.isNaN(Date.parse(status.applications[0]!.lastActivation)));
  t.match(status.applications[1], { applicationName: OFFICE_NAME, activeMachines: 6, activates: true });
  t.same(
    status.duplicates.sharedCmids.map((d) => d.cmid),
    [cmid(1)],
  );
});

t.test('finds the database through $STATE_DIRECTORY like the server', async (t) => {
  const dir = preparedDataDir(t);
  const c = captureIo({ STATE_DIRECTORY: `${dir}:/var/lib/other` });
  t.equal(await command.run([], c.io), 0);
  t.match(c.stdout(), `Database: ${path.join(dir, DATABASE_FILE_NAME)}`);
});

t.test('usage errors exit 2 with one line; --help exits 0', async (t) => {
  const bad = captureIo();
  t.equal(await command.run(['--bogus'], bad.io), 2);
  t.equal(bad.stderr().trim().split('\n').length, 1);
  t.equal(bad.stdout(), '');
  const help = captureIo();
  t.equal(await command.run(['--help'], help.io), 0);
  t.equal(help.stdout(), command.help);
  t.match(command.help, /--data-dir DIR/);
});

t.test('a missing or damaged database exits 1 naming the file; nothing is written', async (t) => {
  const dir = preparedDataDir(t);
  const empty = path.join(dir, 'nothing-here');
  fs.mkdirSync(empty);
  const missing = captureIo();
  t.equal(await command.run(['--data-dir', empty], missing.io), 1);
  t.match(missing.stderr(), path.join(empty, DATABASE_FILE_NAME));
  t.match(missing.stderr(), 'KMS_ERR_STORE_OPEN');
  t.same(fs.readdirSync(empty), []);

  const file = path.join(empty, DATABASE_FILE_NAME);
  fs.writeFileSync(file, crypto.randomBytes(4096));
  const before = fs.readFileSync(file);
  const corrupt = captureIo();
  t.equal(await command.run(['--data-dir', empty], corrupt.io), 1);
  t.match(corrupt.stderr(), 'KMS_ERR_STORE_CORRUPT');
  t.same(fs.readFileSync(file), before);
});

t.test('a broken configuration file exits 2', async (t) => {
  const dir = preparedDataDir(t);
  const config = writeConfig(t, 'entitlements: [ { product: x, licenses: -3 } ]\n');
  const c = captureIo();
  t.equal(await command.run(['--config', config, '--data-dir', dir], c.io), 2);
  t.match(c.stderr(), 'config.yaml:1');
});

t.test('shows the host identity the clients see: HwId and the ePID per host-key group', async (t) => {
  const dir = preparedDataDir(t);

  const store = SqliteStore.open(dir, {});
  store.setSetting('host.hwid', 'c76fe28b0efa494e');
  store.setSetting('host.epid.84e331f6-4279-48c4-ab10-b75139181351', '03612-04918-007-939703-03-1033-20348.0000-0682026');
  store.close();
  const c = captureIo();
  t.equal(await command.run(['--data-dir', dir], c.io), 0);
  t.match(c.stdout(), /Host identity: HwId C76FE28B0EFA494E/);
  t.match(c.stdout(), /\n {2}Windows Server 2025\s+03612-04918-007-939703-03-1033-20348\.0000-0682026\n/, 'named after its host-key group');
  const j = captureIo();
  t.equal(await command.run(['--json', '--data-dir', dir], j.io), 0);
  const status = JSON.parse(j.stdout()) as { hostIdentity: { hwid: string; epids: { hostKeyGroup: string; epid: string }[] } };
  t.equal(status.hostIdentity.hwid, 'c76fe28b0efa494e');
  t.same(status.hostIdentity.epids, [
    {
      hostKeyGroupId: '84e331f6-4279-48c4-ab10-b75139181351',
      hostKeyGroup: 'Windows Server 2025',
      epid: '03612-04918-007-939703-03-1033-20348.0000-0682026',
    },
  ]);
});

t.test('refusals of the last week are summarised by reason with what to change', async (t) => {
  const dir = preparedDataDir(t);
  const store = SqliteStore.open(dir, {});
  const now = Date.now();
  // Older than the week: not reported.
  store.recordRefusal(
    { applicationId: WINDOWS_APP, clientMachineId: cmid(900), workstationName: 'old' },
    0xc004f042,
    'KMS_ERR_KMS_RETAIL_GROUP',
    now - 8 * 86_400_000,
  );
  for (let i = 0; i < 3; i++) {
    store.recordRefusal(
      { applicationId: WINDOWS_APP, clientMachineId: cmid(901 + i), workstationName: `home-${i}`, clientAddress: '10.0.0.9' },
      0xc004f042,
      'KMS_ERR_KMS_RETAIL_GROUP',
      now - 1000 + i,
    );
  }
  store.close();
  const c = captureIo();
  t.equal(await command.run(['--data-dir', dir], c.io), 0);
  const out = c.stdout();
  t.match(out, /Refused in the last 7 days: 4 requests/, 'the three retail refusals and the prepared clock-skew one');
  t.match(out, /0xC004F042 ×3 \(KMS_ERR_KMS_RETAIL_GROUP\), last .* from home-2 at 10\.0\.0\.9/);
  t.match(out, /install the product's GVLK/, 'says what to change');
  t.match(out, /0xC004F06C ×1 \(KMS_ERR_KMS_TIME_SKEW\)/);
  t.notMatch(out, /from old/, 'older refusals are left out');
});

t.test('client-chosen names are printed inert: no escape sequence, bidi override or fake line', async (t) => {
  const dir = preparedDataDir(t);
  const store = SqliteStore.open(dir, {});
  const now = Date.now();
  store.recordActivation(obs(60, { workstationName: '\x1b]0;owned\x07\x1b[2J' }), now - 2000, WINDOW);
  store.recordActivation(obs(60, { workstationName: 'b\u202eexe.txt\nFAKE: line' }), now - 1000, WINDOW);
  store.recordRefusal(obs(61, { workstationName: '\x1b[31mred' }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now - 10);
  store.close();
  const c = captureIo();
  t.equal(await command.run(['--data-dir', dir], c.io), 0);
  const out = c.stdout();
  t.notMatch(out, /[\x00-\x09\x0b-\x1f\x7f\u202e]/, 'nothing a terminal acts on');
  t.match(out, '\\x1b]0;owned\\x07');
  t.match(out, 'b\\u202eexe.txt\\nfake: line');
  t.notOk(
    out.split('\n').some((l) => /^fake/i.test(l)),
    'no made-up line',
  );
  t.match(out, 'from \\x1b[31mred');
});

t.test('--format csv: one row per product group, named like the JSON fields', async (t) => {
  const dir = preparedDataDir(t);
  const csv = captureIo();
  t.equal(await command.run(['--data-dir', dir, '--format', 'csv'], csv.io), 0);
  const lines = csv.stdout().split('\r\n');
  const header = lines[0]!.split(',');
  t.same(header, [
    'applicationId',
    'applicationName',
    'groupId',
    'groupName',
    'activeMachines',
    'requiredCount',
    'activates',
    'lastActivation',
  ]);
  const json = captureIo();
  t.equal(await command.run(['--data-dir', dir, '--json'], json.io), 0);
  const status = JSON.parse(json.stdout()) as { applications: Record<string, unknown>[] & { groups: Record<string, unknown>[] }[] };
  const app = status.applications[0]! as Record<string, unknown> & { groups: Record<string, unknown>[] };
  for (const f of header) t.ok(f in app.groups[0]! || f in app, `${f} is a JSON field too`);
  t.equal(
    lines.length - 2,
    status.applications.reduce((n, a) => n + (a as unknown as { groups: unknown[] }).groups.length, 0),
  );
});

t.test('an image cloned to many machines under one name is one line: eight CMIDs and how many more', async (t) => {
  const dir = preparedDataDir(t);
  const store = SqliteStore.open(dir, {});
  const now = Date.now();
  for (let i = 0; i < 40; i++) store.recordActivation(obs(300 + i, { workstationName: 'golden-image' }), now - 1000 + i, WINDOW);
  store.close();
  const c = captureIo();
  t.equal(await command.run(['--data-dir', dir], c.io), 0);
  const line = c
    .stdout()
    .split('\n')
    .find((l) => l.startsWith('  golden-image'));
  const listed = [...(line ?? '').matchAll(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g)];
  t.match(line, /^ {2}golden-image \(Windows\): 40 CMIDs: .* and 32 more$/);
  t.equal(listed.length, 8, 'eight listed');
  const json = captureIo();
  t.equal(await command.run(['--data-dir', dir, '--format', 'json'], json.io), 0);
  t.match(json.stdout(), cmid(339), 'the JSON lists them all');
});
