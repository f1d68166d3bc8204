import t from 'tap';
import { command, parseNotSeenSince } from '../../../src/cli/commands/clients';
import { cmid } from '../../store/observations';
import { SqliteStore } from '../../../src/store/sqlite-store';
import { cmid as cmidOf, obs, WINDOW } from '../../store/observations';
import { captureIo, preparedDataDir } from './inventory-fixture';

const DAY = 86_400_000;

async function run(args: string[], dir: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await command.run([...args, '--data-dir', dir], c.io);
  return { code, out: c.stdout(), err: c.stderr() };
}

t.test('table: one line per machine, a header and a total', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out, err } = await run([], dir);
  t.equal(code, 0);
  t.equal(err, '');
  const lines = out.trimEnd().split('\n');
  t.match(lines[0], /^WORKSTATION\s+ADDRESS\s+PRODUCT\s+LAST SEEN \(UTC\)\s+ACTIVE\s+RESULT\s+CMID$/);
  for (const l of lines) t.ok(l.length <= 120, `fits 120 columns: ${l.length}`);
  t.equal(lines.length, 1 + 32 + 1);
  t.equal(lines.at(-1), '32 machines');
  const refused = lines.find((l) => l.includes(cmid(50)));
  t.match(refused, /^skewed, "clock"\s+10\.0\.0\.50\s+Windows 10\/11 E\S*(?: \S+)?\s+.*\s+no\s+0xC004F06C\s+/);
});

t.test('json: filtered by group name, full records', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out } = await run(['--group', 'server 2022', '--format', 'json'], dir);
  t.equal(code, 0);
  const rows = JSON.parse(out) as Record<string, unknown>[];
  t.same(
    rows.map((r) => r['cmid']),
    [cmid(21), cmid(22), cmid(23)],
  );
  t.match(rows[0], {
    groupName: 'Windows Server 2022',
    skuName: 'Windows Server 2022 Standard',
    applicationName: 'Windows',
    active: true,
    requiredCount: 5,
    protocolVersion: 6,
    lastResult: '0x00000000',
    licenseStatus: 2,
  });
  t.ok(!Number.isNaN(Date.parse(rows[0]!['lastSeen'] as string)));
  const none = await run(['--product', 'Windows 10/11 Pro Workstation', '--format', 'json'], dir);
  t.same(JSON.parse(none.out), [], 'a product nobody uses lists no machine');
});

t.test('csv: RFC 4180 quoting, CRLF, filters by product and application', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out } = await run(['--format', 'csv', '--application', 'windows', '--product', 'Windows 10/11 Education'], dir);
  t.equal(code, 0);
  const lines = out.split('\r\n');
  t.equal(lines.at(-1), '', 'every record ends with CRLF');
  const header = lines[0]!.split(',');
  t.same(header, [
    'workstation',
    'address',
    'cmid',
    'applicationName',
    'applicationId',
    'groupName',
    'groupId',
    'skuName',
    'skuId',
    'firstSeen',
    'lastSeen',
    'lastCounted',
    'active',
    'licenseStatus',
    'licenseStatusName',
    'vm',
    'protocolVersion',
    'requiredCount',
    'requests',
    'lastResult',
  ]);
  const json = JSON.parse((await run(['--json', '--product', 'Windows 10/11 Education'], dir)).out) as Record<string, unknown>[];
  t.same(Object.keys(json[0]!), header, 'JSON and CSV share field names (--json is --format json)');
  t.equal(lines.length - 2, 20 + 2 + 1);
  const refused = lines.find((l) => l.includes(cmid(50)));
  t.ok(refused?.startsWith('"skewed, ""clock""",10.0.0.50,'), refused ?? 'no line for the refused machine');
  t.match(refused, /,,no,2,initial grace \(OOB\),no,6,25,1,0xC004F06C$/);
  const office = await run(['--format', 'csv', '-a', 'office 2013'], dir);
  t.equal(office.out.split('\r\n').length - 2, 6);
});

t.test('--not-seen-since takes days or a date', async (t) => {
  const dir = preparedDataDir(t);
  const silent = await run(['--not-seen-since', '30', '--format', 'json'], dir);
  t.same(
    (JSON.parse(silent.out) as { cmid: string }[]).map((r) => r.cmid),
    [cmid(90), cmid(91)],
  );
  const tomorrow = new Date(Date.now() + DAY).toISOString().slice(0, 10);
  const all = await run(['-n', tomorrow, '--format', 'json'], dir);
  t.equal((JSON.parse(all.out) as unknown[]).length, 32);
  const now = Date.UTC(2026, 0, 31, 12);
  t.equal(parseNotSeenSince('7', now), now - 7 * DAY);
  t.equal(parseNotSeenSince('2026-01-31', now), Date.UTC(2026, 0, 31));
  t.equal(parseNotSeenSince('2026-01-31T06:00:00Z', now), Date.UTC(2026, 0, 31, 6));
  t.equal(parseNotSeenSince('yesterday', now), undefined);
  t.equal(parseNotSeenSince('2026-13-45', now), undefined);
});

t.test('usage errors exit 2 with one line on stderr', async (t) => {
  const dir = preparedDataDir(t);
  for (const args of [
    ['--format', 'xml'],
    ['--not-seen-since', 'last week'],
    ['--group'],
    ['--group', ' '],
    ['extra'],
    ['--grop', 'x'],
    ['--group', 'Windows 99'],
    ['--product', 'Enterprise'],
    ['--json', '--format', 'csv'],
  ]) {
    const { code, out, err } = await run(args, dir);
    t.equal(code, 2, args.join(' '));
    t.equal(out, '');
    t.equal(err.trim().split('\n').length, 1);
  }
  const c = captureIo();
  t.equal(await command.run(['-h'], c.io), 0);
  t.equal(c.stdout(), command.help);
});

t.test('names resolve as typed; unknown or ambiguous ones are exit 2 with candidates', async (t) => {
  const dir = preparedDataDir(t);
  const w11 = await run(['--group', 'Windows 11', '--json'], dir);
  t.equal(w11.code, 0);
  t.equal((JSON.parse(w11.out) as unknown[]).length, 23, '"Windows 11" is the Windows 10/11 volume group');
  const typo = await run(['--group', 'Windos Server 2022'], dir);
  t.equal(typo.code, 2);
  t.match(typo.err, /did you mean "Windows Server 2022"/);
  const amb = await run(['--product', 'Enterprise'], dir);
  t.match(amb.err, /"Enterprise" matches \d+ names: "Windows/);
  const flag = await run(['--grop', 'x'], dir);
  t.match(flag.err, /unknown option --grop \(did you mean --group\?\)/);
});

t.test('client-chosen names are inert: escaped on the terminal, no formulas in CSV, no extra lines', async (t) => {
  const dir = preparedDataDir(t);
  const store = SqliteStore.open(dir, {});
  const now = Date.now();
  const hostile = ['\x1b]0;pwned\x07\x1b[2J', 'evil\u202egpj.exe', 'two\nlines fake-row', "=cmd|' /C calc'!A0", '+1+1', '@SUM(A1)', '-2+3'];
  hostile.forEach((name, i) => {
    store.recordActivation(obs(200 + i, { workstationName: name }), now - 1000, WINDOW);
  });
  store.recordActivation(obs(300, { kmsCountedId: '0badc0de-0000-4000-8000-000000000000' }), now - 1000, WINDOW);
  store.close();
  const table = await run([], dir);
  t.notMatch(table.out, /[\x00-\x08\x0b-\x1f\x7f\u202e]/, 'no control or bidi character reaches the terminal');
  t.match(table.out, '\\x1b]0;', 'ESC shown as \\x1b (long cells are shortened with …)');
  t.match(table.out, 'evil\\u202e');
  t.match(table.out, 'two\\nlines');
  t.equal(table.out.split('\n').filter((l) => l.startsWith('lines fake-row')).length, 0, 'a newline adds no row');
  for (const l of table.out.trimEnd().split('\n')) t.ok(l.length <= 120, `fits 120 columns (${l.length})`);
  t.match((await run(['--json'], dir)).out, /"groupName":"unknown KMS group 0badc0de/);
  t.match(table.out, /\nSome products are not in the catalogue: update the product catalogue/, 'the advice is below the table');
  const csv = await run(['--format', 'csv'], dir);
  const cells = csv.out.split('\r\n').map((l) => l.split(',')[0]);
  for (const bad of ['=cmd', '+1+1', '@SUM', '-2+3'])
    t.notOk(
      cells.some((c) => c?.startsWith(bad) || c?.startsWith(`"${bad}`)),
      `${bad} is not a live formula`,
    );
  t.ok(cells.includes(`'=cmd|' /C calc'!A0`), 'prefixed with a quote');
  t.ok(cells.includes(`'-2+3`) && cells.includes(`'@SUM(A1)`), 'every formula start is neutralised');
  t.notMatch(csv.out, /[\x1b\u202e]/);
  const json = await run(['--json'], dir);
  t.notMatch(json.out, /[\x1b\u202e]/, 'JSON escapes them too');
  const names = (JSON.parse(json.out) as { workstation: string }[]).map((r) => r.workstation);
  t.ok(names.includes('evil\u202egpj.exe'), 'and JSON still carries the exact name');
  t.ok(cmidOf(200));
});
