// The manual client configuration files (PROTOCOL.md §8.2), checked byte by byte.
import t from 'tap';
import { checkClientHost, checkClientPort, clientHostWarning, generateClientConfig } from '../../src/client-config/client-config';

function files(host: string, port: number): Map<string, Buffer> {
  return new Map(generateClientConfig({ host, port }).map((f) => [f.name, f.content]));
}

function decodeReg(buf: Buffer): string {
  return buf.subarray(2).toString('utf16le');
}

const SPP = 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\SoftwareProtectionPlatform';
const OSPP = 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\OfficeSoftwareProtectionPlatform';

t.test('six files: set and undo, as .cmd, .ps1 and .reg', async (t) => {
  t.same([...files('kms.branch.example.org', 1688).keys()].sort(), [
    'kms-client-set.cmd',
    'kms-client-set.ps1',
    'kms-client-set.reg',
    'kms-client-undo.cmd',
    'kms-client-undo.ps1',
    'kms-client-undo.reg',
  ]);
});

t.test('.reg: UTF-16LE with BOM, CRLF, header, both keys, REG_SZ values', async (t) => {
  const reg = files('kms.branch.example.org', 1688).get('kms-client-set.reg')!;
  t.same([...reg.subarray(0, 6)], [0xff, 0xfe, 0x57, 0x00, 0x69, 0x00], 'BOM FF FE, then "Wi" in UTF-16LE');
  t.equal(reg.length % 2, 0);
  const text = decodeReg(reg);
  t.equal(Buffer.from(text, 'utf16le').toString('utf16le'), text, 'round-trips as UTF-16LE');
  t.ok(text.startsWith('Windows Registry Editor Version 5.00\r\n\r\n'));
  t.notMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'every line ends in CRLF, no bare CR or LF');
  t.ok(text.endsWith('\r\n'));
  const values = '"KeyManagementServiceName"="kms.branch.example.org"\r\n"KeyManagementServicePort"="1688"\r\n';
  t.ok(text.includes(`[${SPP}]\r\n${values}`), 'Windows (SPP) key with both values');
  t.ok(text.includes(`[${OSPP}]\r\n${values}`), 'Office (OSPP) key with both values');
  t.notMatch(text, /dword:/, 'the port is a string, not a DWORD');
  t.equal(text.split('\r\n').filter((l) => l.startsWith('[')).length, 2, 'exactly two keys');
  t.ok(
    text
      .split('\r\n')
      .filter((l) => l.startsWith('"'))
      .every((l) => /^"KeyManagementService(Name|Port)"="[^"]+"$/.test(l)),
  );
});

t.test('undo .reg deletes exactly the two values under both keys', async (t) => {
  const reg = files('kms.branch.example.org', 1688).get('kms-client-undo.reg')!;
  t.same([...reg.subarray(0, 2)], [0xff, 0xfe]);
  const text = decodeReg(reg);
  t.ok(text.startsWith('Windows Registry Editor Version 5.00\r\n'));
  const del = '"KeyManagementServiceName"=-\r\n"KeyManagementServicePort"=-\r\n';
  t.ok(text.includes(`[${SPP}]\r\n${del}`));
  t.ok(text.includes(`[${OSPP}]\r\n${del}`));
  t.notOk(text.includes(`[-HKEY`), 'never deletes a whole key');
});

t.test('.cmd: ASCII, CRLF, slmgr /skms host:port and /ato, ospp for Office in both Program Files', async (t) => {
  const cmd = files('kms.branch.example.org', 11688).get('kms-client-set.cmd')!;
  t.ok(
    [...cmd].every((b) => b < 0x80),
    'ASCII only',
  );
  const text = cmd.toString('ascii');
  t.notMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'CRLF line ends only');
  const lines = text.split('\r\n');
  t.equal(lines[0], '@echo off');
  t.ok(lines.includes('cscript //nologo "%SLMGR%" /skms kms.branch.example.org:11688'));
  t.ok(lines.includes('cscript //nologo "%SLMGR%" /ato'));
  t.ok(lines.includes('set "SLMGR=%SystemRoot%\\System32\\slmgr.vbs"'));
  t.ok(lines.includes('cscript //nologo "%~1\\ospp.vbs" /sethst:kms.branch.example.org'));
  t.ok(lines.includes('cscript //nologo "%~1\\ospp.vbs" /setprt:11688'));
  t.ok(lines.includes('cscript //nologo "%~1\\ospp.vbs" /act'));
  t.ok(lines.includes('for %%V in (Office14 Office15 Office16) do ('), 'Office 2010, 2013, 2016+');
  t.ok(lines.includes('  call :office "%ProgramFiles%\\Microsoft Office\\%%V"'));
  t.ok(lines.includes('set "PF86=%ProgramFiles(x86)%"'));
  t.ok(lines.includes('  if defined PF86 call :office "%PF86%\\Microsoft Office\\%%V"'));
  t.ok(
    lines.indexOf('cscript //nologo "%SLMGR%" /skms kms.branch.example.org:11688') < lines.indexOf('cscript //nologo "%SLMGR%" /ato'),
    '/skms before /ato',
  );
  t.ok(lines.indexOf(':office') < lines.indexOf('cscript //nologo "%~1\\ospp.vbs" /sethst:kms.branch.example.org'));
  t.notOk(text.includes('/ckms'));
});

t.test('undo .cmd: slmgr /ckms and ospp /remhst, no activation', async (t) => {
  const text = files('kms.branch.example.org', 1688).get('kms-client-undo.cmd')!.toString('ascii');
  t.notMatch(text.replace(/\r\n/g, ''), /[\r\n]/);
  const lines = text.split('\r\n');
  t.ok(lines.includes('cscript //nologo "%SLMGR%" /ckms'));
  t.ok(lines.includes('cscript //nologo "%~1\\ospp.vbs" /remhst'));
  t.notOk(/\/ato|\/act|\/skms|\/sethst/.test(text));
});

t.test('.ps1: same steps, CRLF, needs elevation', async (t) => {
  const f = files('192.0.2.10', 1688);
  const set = f.get('kms-client-set.ps1')!.toString('ascii');
  t.notMatch(set.replace(/\r\n/g, ''), /[\r\n]/);
  const lines = set.split('\r\n');
  t.equal(lines[0], '#Requires -RunAsAdministrator');
  t.ok(lines.includes("Invoke-LicensingScript $slmgr @('/skms', '192.0.2.10:1688')"));
  t.ok(lines.includes("Invoke-LicensingScript $slmgr @('/ato')"));
  t.ok(lines.includes("      Invoke-LicensingScript $ospp @('/sethst:192.0.2.10')"));
  t.ok(lines.includes("      Invoke-LicensingScript $ospp @('/setprt:1688')"));
  t.ok(lines.includes("      Invoke-LicensingScript $ospp @('/act')"));
  t.ok(lines.includes('$roots = @($env:ProgramFiles, ${env:ProgramFiles(x86)}) | Where-Object { $_ } | Select-Object -Unique'));
  t.ok(lines.includes("  foreach ($version in 'Office14', 'Office15', 'Office16') {"));
  const undo = f.get('kms-client-undo.ps1')!.toString('ascii').split('\r\n');
  t.ok(undo.includes("Invoke-LicensingScript $slmgr @('/ckms')"));
  t.ok(undo.includes("      Invoke-LicensingScript $ospp @('/remhst')"));
  t.notOk(undo.some((l) => /\/ato|\/act'|\/skms/.test(l)));
});

t.test('IPv6: brackets for slmgr /skms, the bare address for OSPP and the registry', async (t) => {
  for (const given of ['2001:db8::10', '[2001:db8::10]']) {
    const f = files(given, 1688);
    const cmd = f.get('kms-client-set.cmd')!.toString('ascii').split('\r\n');
    t.ok(cmd.includes('cscript //nologo "%SLMGR%" /skms [2001:db8::10]:1688'), given);
    t.ok(cmd.includes('cscript //nologo "%~1\\ospp.vbs" /sethst:2001:db8::10'), given);
    t.ok(f.get('kms-client-set.ps1')!.toString('ascii').includes("@('/skms', '[2001:db8::10]:1688')"));
    t.ok(decodeReg(f.get('kms-client-set.reg')!).includes('"KeyManagementServiceName"="2001:db8::10"\r\n'));
  }
});

t.test('host and port checks', async (t) => {
  for (const ok of ['kms', 'kms.example.org', 'kms.example.org.', 'KMS-01.branch.example.org', '192.0.2.1', '::1', '[fd00::1]']) {
    t.equal(checkClientHost(ok), undefined, ok);
  }
  for (const bad of [
    '',
    'kms example',
    '-kms.example.org',
    'kms_.example.org',
    'a..b',
    '1.2.3',
    '192.0.2.300',
    '[kms.example.org]',
    'kms"&calc',
    'x'.repeat(64) + '.org',
  ]) {
    t.type(checkClientHost(bad), 'string', JSON.stringify(bad));
  }
  t.equal(checkClientPort(1), undefined);
  t.equal(checkClientPort(65535), undefined);
  for (const bad of [0, 65536, 1.5, NaN]) t.type(checkClientPort(bad), 'string', String(bad));
});

t.test('invalid input is refused with a usage code, never written into a script', async (t) => {
  t.throws(() => generateClientConfig({ host: 'kms & del C:\\', port: 1688 }), { name: 'KmsError', code: 'KMS_ERR_CLI_USAGE' });
  t.throws(() => generateClientConfig({ host: 'kms', port: 0 }), { name: 'KmsError', code: 'KMS_ERR_CLI_USAGE' });
});

t.test('an IPv6 zone id is refused with what to use instead; a link-local address is written with a warning', async (t) => {
  // The zone names an interface of one machine (here the appliance's eth0; on Windows a number
  // that differs per client): no client can use it as its KMS host.
  for (const zoned of [
    'fe80::1%12',
    'fe80::1%eth0',
    '[fe80::1%eth0]',
    'fd00::1%2',
    `fe80::1%${'a'.repeat(16)}`,
    'fe80::1%PATH%',
    'fe80::1%',
  ]) {
    const problem = checkClientHost(zoned);
    t.type(problem, 'string', zoned);
    t.throws(() => generateClientConfig({ host: zoned, port: 1688 }), { code: 'KMS_ERR_CLI_USAGE' }, zoned);
  }
  t.match(checkClientHost('fe80::1%eth0'), /zone id \(%eth0\).*host name, an IPv4 address or a global/);
  t.equal(checkClientHost('fe80::1'), undefined, 'without a zone it is an address');
  t.match(clientHostWarning('fe80::1'), /link-local/);
  t.match(clientHostWarning('[FE80::abcd]'), /link-local/);
  t.equal(clientHostWarning('2001:db8::1'), undefined);
  t.equal(clientHostWarning('fd00::1'), undefined, 'unique-local reaches across links');
});
