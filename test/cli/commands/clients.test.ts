import t from 'tap';
import { command, parseNotSeenSince } from '../../../src/cli/commands/clients';
import { cmid } from '../../store/observations';
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
  t.match(lines[0], /^WORKSTATION\s+ADDRESS\s+PRODUCT\s+GROUP\s+LAST SEEN\s+COUNTED\s+LAST RESULT\s+CMID$/);
  t.equal(lines.length, 1 + 32 + 1);
  t.equal(lines.at(-1), '32 machines');
  const refused = lines.find((l) => l.includes(cmid(50)));
  t.match(refused, /^skewed, "clock"\s+10\.0\.0\.50\s+Windows 10\/11 Education\s+.*\s+no\s+0xC004F06C\s+/);
});

t.test('json: filtered by group name, full records', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out } = await run(['--group', 'server 2022', '--format', 'json'], dir);
  t.equal(code, 0);
  const rows = JSON.parse(out) as Record<string, unknown>[];
  t.same(rows.map((r) => r['cmid']), [cmid(21), cmid(22), cmid(23)]);
  t.match(rows[0], {
    groupName: 'Windows Server 2022', skuName: 'Windows Server 2022 Standard', applicationName: 'Windows',
    active: true, requiredCount: 5, protocolVersion: 6, lastResult: '0x00000000', licenseStatus: 2,
  });
  t.ok(!Number.isNaN(Date.parse(rows[0]!['lastSeen'] as string)));
  const none = await run(['--product', 'no such product', '--format', 'json'], dir);
  t.same(JSON.parse(none.out), []);
});

t.test('csv: RFC 4180 quoting, CRLF, filters by product and application', async (t) => {
  const dir = preparedDataDir(t);
  const { code, out } = await run(['--format', 'csv', '--application', 'windows', '--product', 'education'], dir);
  t.equal(code, 0);
  const lines = out.split('\r\n');
  t.equal(lines.at(-1), '', 'every record ends with CRLF');
  t.equal(lines[0], 'workstation,address,cmid,application,applicationId,group,groupId,product,activationId,firstSeen,lastSeen,lastCounted,counted,licenseStatus,vm,protocolVersion,requiredClientCount,requests,lastResult');
  t.equal(lines.length - 2, 20 + 2 + 1);
  const refused = lines.find((l) => l.includes(cmid(50)));
  t.ok(refused?.startsWith('"skewed, ""clock""",10.0.0.50,'), refused ?? 'no line for the refused machine');
  t.match(refused, /,,no,initial grace \(OOB\),no,6,25,1,0xC004F06C$/);
  const office = await run(['--format', 'csv', '-a', 'office'], dir);
  t.equal(office.out.split('\r\n').length - 2, 6);
});

t.test('--not-seen-since takes days or a date', async (t) => {
  const dir = preparedDataDir(t);
  const silent = await run(['--not-seen-since', '30', '--format', 'json'], dir);
  t.same((JSON.parse(silent.out) as { cmid: string }[]).map((r) => r.cmid), [cmid(90), cmid(91)]);
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
  for (const args of [['--format', 'xml'], ['--not-seen-since', 'last week'], ['--group'], ['--group', ' '], ['extra']]) {
    const { code, out, err } = await run(args, dir);
    t.equal(code, 2, args.join(' '));
    t.equal(out, '');
    t.equal(err.trim().split('\n').length, 1);
  }
  const c = captureIo();
  t.equal(await command.run(['-h'], c.io), 0);
  t.equal(c.stdout(), command.help);
});
