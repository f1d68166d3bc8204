// Ready-to-run files that point Windows and Office clients at this KMS host by hand, for sites
// whose DNS nobody can change (PROTOCOL.md §8.1, §8.2): a .cmd, a PowerShell script and a .reg,
// each with its undo file. Pure: returns names and bytes; the caller writes them.
import net from 'node:net';
import { KmsError } from '../errors';

export interface ClientConfigOptions {
  /** Host name or IP address clients connect to (IPv6 with or without brackets). */
  readonly host: string;
  readonly port: number;
}

export interface ClientConfigFile {
  readonly name: string;
  /** One line for the admin: what the file does. */
  readonly purpose: string;
  readonly content: Buffer;
}

/** Where Windows (SPP) and Office 2010 / Office 2013+ on Windows 7 (OSPP) keep the KMS host (§8.2). */
const REGISTRY_KEYS = Object.freeze({
  spp: 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\SoftwareProtectionPlatform',
  ospp: 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\OfficeSoftwareProtectionPlatform',
} as const);

/** Office 2010, 2013 and 2016+ install folders holding ospp.vbs. */
const OFFICE_FOLDERS = ['Office14', 'Office15', 'Office16'] as const;

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** Addresses no client can reach a host at: unspecified, broadcast, multicast. */
const NO_HOST_ADDRESS = new net.BlockList();
NO_HOST_ADDRESS.addAddress('0.0.0.0');
NO_HOST_ADDRESS.addAddress('255.255.255.255');
NO_HOST_ADDRESS.addSubnet('224.0.0.0', 4);
NO_HOST_ADDRESS.addAddress('::', 'ipv6');
NO_HOST_ADDRESS.addSubnet('ff00::', 8, 'ipv6');

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8);
LOOPBACK.addAddress('::1', 'ipv6');

/** IPv6 link-local (RFC 4291 §2.5.6): reachable only on one link, and by a client only through its own zone id. */
const LINK_LOCAL = new net.BlockList();
LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6');

/** The host as a message shows it: a line, whatever was given. */
function clip(host: string): string {
  return host.length > 80 ? `${host.slice(0, 80)}…` : host;
}

/** Why `host` cannot be written into the files, or undefined when it can. */
export function checkClientHost(host: string): string | undefined {
  const bare = stripBrackets(host);
  const zone = bare.indexOf('%');
  if (zone >= 0 && net.isIPv6(bare)) {
    // No address at all (multicast, unspecified) is the first thing to say, with or without a zone.
    const nowhere = unreachable(host, bare.slice(0, zone));
    if (nowhere !== undefined) return nowhere;
    // A zone (scope) id names an interface of one machine ("eth0" here, an interface number on
    // each Windows client, different from one client to the next): written into every client's
    // KeyManagementServiceName or slmgr /skms it names the appliance's interface, which no client has.
    return (
      `"${clip(host)}": an IPv6 zone id (%${clip(bare.slice(zone + 1))}) names a network interface of one machine, ` +
      'and each client numbers its own; give the host name, an IPv4 address or a global (or unique-local) IPv6 address instead'
    );
  }
  if (net.isIP(bare) !== 0) return unreachable(host, bare);
  if (bare !== host) return `"${clip(host)}" is not an IPv6 address`;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return `"${clip(host)}" is not a host name (1 … 253 characters)`;
  if (!name.split('.').every((l) => LABEL.test(l))) return `"${clip(host)}" is not a host name or IP address`;
  // A name ending in a number is no name: Windows reads "0x7f000001", "10.1" or "kms.0x0a" the way
  // inet_addr does, as a (wrong) IPv4 address in decimal, octal or hex parts, and no top-level
  // domain is numeric (RFC 3696 §2). Refused rather than written into files that point elsewhere.
  if (/^[0-9.]+$/.test(name)) return `"${host}" is not a valid IPv4 address`;
  if (/(^|\.)(0x[0-9a-f]*|[0-9]+)$/i.test(name)) {
    return `"${host}" ends in a number, which no host name does (Windows would take it for an IPv4 address)`;
  }
  return undefined;
}

function unreachable(host: string, address: string): string | undefined {
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
  return NO_HOST_ADDRESS.check(address, family)
    ? `"${host}" is an unspecified, broadcast or multicast address: no client reaches a KMS host there`
    : undefined;
}

/** Something to tell the admin about a host the files may name, or undefined. */
export function clientHostWarning(host: string): string | undefined {
  const bare = stripBrackets(host).replace(/%.*$/, '');
  const loopback = net.isIP(bare) !== 0 ? LOOPBACK.check(bare, net.isIPv6(bare) ? 'ipv6' : 'ipv4') : /^localhost\.?$/i.test(host);
  if (loopback) return `${host} is a loopback address: each client would look for the KMS host on itself`;
  if (net.isIPv6(bare) && LINK_LOCAL.check(bare, 'ipv6')) {
    return (
      `${host} is a link-local address: only clients on the appliance's own link reach it, and only those that pick ` +
      'the right interface for it; the host name or a global IPv6 address works for every client'
    );
  }
  return undefined;
}

export function checkClientPort(port: number): string | undefined {
  return Number.isInteger(port) && port >= 1 && port <= 65535 ? undefined : `port ${port} is not 1 … 65535`;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

const crlf = (lines: readonly string[]): string => lines.map((l) => l + '\r\n').join('');
const ascii = (text: string): Buffer => Buffer.from(text, 'ascii');
/** regedit's own export format: UTF-16LE with a byte-order mark (§8.2). */
const utf16leBom = (text: string): Buffer => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);

export function generateClientConfig(options: ClientConfigOptions): ClientConfigFile[] {
  const problem = checkClientHost(options.host) ?? checkClientPort(options.port);
  if (problem) throw new KmsError('KMS_ERR_CLI_USAGE', problem, { host: options.host, port: options.port });
  const host = stripBrackets(options.host);
  const port = String(options.port);
  // slmgr /skms takes host:port, with an IPv6 literal in brackets (§8.2); OSPP and the registry
  // take the name alone, the port separately.
  const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  const v = { host, port, target };
  // In a batch file "%" starts a variable or parameter (%1). checkClientHost lets none through (zone
  // ids are refused); doubled all the same, so a later change to it cannot turn one into a variable.
  const cmd = { host: host.replace(/%/g, '%%'), port, target: target.replace(/%/g, '%%') };
  return [
    {
      name: 'kms-client-set.cmd',
      purpose: 'sets the KMS host for Windows and Office and activates (run as Administrator)',
      content: ascii(setCmd(cmd)),
    },
    { name: 'kms-client-set.ps1', purpose: 'the same in PowerShell', content: ascii(setPs1(v)) },
    { name: 'kms-client-set.reg', purpose: 'the registry values alone (then run slmgr /ato)', content: utf16leBom(setReg(v)) },
    { name: 'kms-client-undo.cmd', purpose: 'back to DNS discovery for Windows and Office', content: ascii(undoCmd(cmd)) },
    { name: 'kms-client-undo.ps1', purpose: 'the same in PowerShell', content: ascii(undoPs1(v)) },
    { name: 'kms-client-undo.reg', purpose: 'deletes the registry values', content: utf16leBom(undoReg(v)) },
  ];
}

interface Values {
  readonly host: string;
  readonly port: string;
  readonly target: string;
}

function cmdPrologue(what: string, undo: string): string[] {
  return [
    '@echo off',
    `rem ${what}`,
    'rem For sites whose DNS cannot publish _vlmcs._tcp. Generated by kms-appliance client-config;',
    `rem ${undo}`,
    'setlocal',
    // "net session" fails without elevation: slmgr and ospp would fail later with less clear words.
    'net session >nul 2>&1',
    'if errorlevel 1 (',
    '  echo Run this script as Administrator.',
    '  exit /b 1',
    ')',
    'set "FAILED=0"',
    'set "SLMGR=%SystemRoot%\\System32\\slmgr.vbs"',
  ];
}

/** Calls :office for every Office install folder under both Program Files locations. */
const cmdOfficeLoop = [
  'rem Office 2010 (Office14), and Office 2013 and later (Office15, Office16) on Windows 7, keep',
  'rem their own KMS settings (OSPP); on Windows 8 and later ospp.vbs still activates Office.',
  'set "PF86=%ProgramFiles(x86)%"',
  `for %%V in (${OFFICE_FOLDERS.join(' ')}) do (`,
  '  call :office "%ProgramFiles%\\Microsoft Office\\%%V"',
  '  if defined PF86 call :office "%PF86%\\Microsoft Office\\%%V"',
  ')',
  'if "%FAILED%"=="1" (',
  '  echo Some steps failed; see the messages above.',
  '  exit /b 1',
  ')',
  'echo Done.',
  'exit /b 0',
  '',
  ':office',
  'if not exist "%~1\\ospp.vbs" goto :eof',
  'echo Office in %~1',
];

const cmdCheck = 'if errorlevel 1 set "FAILED=1"';

function setCmd(v: Values): string {
  return crlf([
    ...cmdPrologue(
      `Points this Windows client and its Office at the KMS host ${v.target}, then activates.`,
      'undo with kms-client-undo.cmd.',
    ),
    `echo Windows: KMS host ${v.target}`,
    `cscript //nologo "%SLMGR%" /skms ${v.target}`,
    cmdCheck,
    'cscript //nologo "%SLMGR%" /ato',
    cmdCheck,
    ...cmdOfficeLoop,
    `cscript //nologo "%~1\\ospp.vbs" /sethst:${v.host}`,
    cmdCheck,
    `cscript //nologo "%~1\\ospp.vbs" /setprt:${v.port}`,
    cmdCheck,
    'cscript //nologo "%~1\\ospp.vbs" /act',
    cmdCheck,
    'goto :eof',
  ]);
}

function undoCmd(v: Values): string {
  return crlf([
    ...cmdPrologue(
      `Removes the KMS host ${v.target} set by kms-client-set.cmd: back to DNS discovery.`,
      'nothing is activated or deactivated.',
    ),
    'echo Windows: back to DNS discovery',
    'cscript //nologo "%SLMGR%" /ckms',
    cmdCheck,
    ...cmdOfficeLoop,
    'cscript //nologo "%~1\\ospp.vbs" /remhst',
    cmdCheck,
    'goto :eof',
  ]);
}

function ps1Prologue(what: string): string[] {
  return [
    '#Requires -RunAsAdministrator',
    `# ${what}`,
    '# For sites whose DNS cannot publish _vlmcs._tcp. Generated by kms-appliance client-config.',
    '$failed = $false',
    "$slmgr = Join-Path $env:SystemRoot 'System32\\slmgr.vbs'",
    'function Invoke-LicensingScript([string]$Path, [string[]]$Arguments) {',
    '  & cscript.exe //nologo $Path @Arguments',
    '  if ($LASTEXITCODE -ne 0) { $script:failed = $true }',
    '}',
  ];
}

/** Runs $body for every ospp.vbs of Office 2010/2013/2016+ under both Program Files locations. */
function ps1OfficeLoop(body: readonly string[]): string[] {
  return [
    '$roots = @($env:ProgramFiles, ${env:ProgramFiles(x86)}) | Where-Object { $_ } | Select-Object -Unique',
    'foreach ($root in $roots) {',
    `  foreach ($version in ${OFFICE_FOLDERS.map((f) => `'${f}'`).join(', ')}) {`,
    '    $ospp = Join-Path $root "Microsoft Office\\$version\\ospp.vbs"',
    '    if (Test-Path -LiteralPath $ospp) {',
    '      Write-Host "Office: $ospp"',
    ...body.map((l) => '      ' + l),
    '    }',
    '  }',
    '}',
    "if ($failed) { Write-Warning 'Some steps failed; see the messages above.'; exit 1 }",
    "Write-Host 'Done.'",
  ];
}

function setPs1(v: Values): string {
  return crlf([
    ...ps1Prologue(`Points this Windows client and its Office at the KMS host ${v.target}, then activates; undo with kms-client-undo.ps1.`),
    `Write-Host 'Windows: KMS host ${v.target}'`,
    `Invoke-LicensingScript $slmgr @('/skms', '${v.target}')`,
    "Invoke-LicensingScript $slmgr @('/ato')",
    ...ps1OfficeLoop([
      `Invoke-LicensingScript $ospp @('/sethst:${v.host}')`,
      `Invoke-LicensingScript $ospp @('/setprt:${v.port}')`,
      "Invoke-LicensingScript $ospp @('/act')",
    ]),
  ]);
}

function undoPs1(v: Values): string {
  return crlf([
    ...ps1Prologue(`Removes the KMS host ${v.target} set by kms-client-set.ps1: back to DNS discovery.`),
    "Write-Host 'Windows: back to DNS discovery'",
    "Invoke-LicensingScript $slmgr @('/ckms')",
    ...ps1OfficeLoop(["Invoke-LicensingScript $ospp @('/remhst')"]),
  ]);
}

function regFile(comment: readonly string[], values: readonly string[]): string {
  return crlf([
    'Windows Registry Editor Version 5.00',
    '',
    ...comment.map((c) => `; ${c}`),
    '',
    `[${REGISTRY_KEYS.spp}]`,
    ...values,
    '',
    `[${REGISTRY_KEYS.ospp}]`,
    ...values,
    '',
  ]);
}

function setReg(v: Values): string {
  // Both values are REG_SZ, the port a decimal string (§8.2), hence quoted, not dword:.
  return regFile(
    [
      `Points Windows and Office at the KMS host ${v.target}. Import as Administrator, then run`,
      'slmgr /ato (and ospp.vbs /act for Office), or use kms-client-set.cmd instead.',
    ],
    [`"KeyManagementServiceName"="${v.host}"`, `"KeyManagementServicePort"="${v.port}"`],
  );
}

function undoReg(v: Values): string {
  return regFile(
    [`Removes the KMS host ${v.target}: Windows and Office go back to DNS discovery.`],
    ['"KeyManagementServiceName"=-', '"KeyManagementServicePort"=-'],
  );
}
