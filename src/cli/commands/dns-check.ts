// `kms-appliance dns check`: resolves the KMS host like a Windows client of a domain, probes it
// with a real activation call and says, in the admin's words and with the client's error code,
// what a client there would experience.
import fs from 'node:fs';
import os from 'node:os';
import { EXIT, UsageProblem, defineCommand, type CommandIo } from '../command';
import { formatCsv, type Column } from '../tabular';
import { inert, toJson } from '../terminal';
import { formatHresult, HRESULT } from '../../errors';
import { checkDiscovery, createSystemResolver, type Attempt, type DiscoveryReport, type ProbeResult } from '../../dns/dns-check';
import { parseServerAddress } from '../../dns/dns-transport';
import { probeKmsHost } from '../../client/probe';

const HELP = `Usage: kms-appliance dns check [--domain D] [--server IP[:PORT]] [--port P] [--all]
                               [--timeout SECONDS] [--format table|json|csv]

Find the KMS host the way a Windows client in domain D does: ask DNS for the SRV record
_vlmcs._tcp.D, take the records lowest priority first (weighted random choice among equal
priorities, RFC 2782), resolve each target's addresses, and stop at the first host that
activates. Each host is probed with one real activation request (it counts as one machine
named kms-appliance-dns-check on that host). Failures are explained with the code a Windows
client would show (0x8007232B, 0x8007251D, 0x800706BA, 0xC004F074, ...).

Options:
  -d, --domain D        The clients' DNS domain (default: this machine's domain, from its host
                        name or the search/domain line of /etc/resolv.conf).
  -s, --server IP[:P]   Ask this DNS server (IPv6 as [addr]:port) instead of the system resolver,
                        e.g. the site's DNS server or the appliance's own responder.
  -p, --port P          The port the KMS host listens on: a record naming another port is
                        pointed out as the likely mistake.
      --all             Probe every record, not only until one works.
      --timeout S       Seconds for each DNS query and each probe (default 5); no further
                        record is tried once the check has run 12 times this long.
  -f, --format F        table (default: the report in words), json (the whole report) or csv (one
                        row per SRV record tried); --json = --format json.
  -h, --help            Show this help.

Exit codes: 0 a client would activate, 1 it would not, 2 usage error.

Examples:
  kms-appliance dns check --domain corp.example
  kms-appliance dns check --domain corp.example --server 192.0.2.53
  kms-appliance dns check --domain branch.example --server 127.0.0.1:5353 --port 1688
`;

/** CSV: one row per record tried, named as the fields of the JSON report's attempts. */
const ATTEMPT_COLUMNS: readonly Column<Attempt>[] = [
  { header: 'priority', value: (a) => a.record.priority },
  { header: 'weight', value: (a) => a.record.weight },
  { header: 'port', value: (a) => a.record.port },
  { header: 'target', value: (a) => a.record.target },
  { header: 'ok', value: (a) => a.ok },
  { header: 'hresult', value: (a) => (a.hresult === undefined ? null : formatHresult(a.hresult)) },
  { header: 'code', value: (a) => a.code ?? null },
  { header: 'explain', value: (a) => a.explain },
];

/** The machine's DNS domain, as a Windows client would use its primary DNS suffix. */
export function defaultDomain(hostName = os.hostname(), resolvConf = '/etc/resolv.conf'): string | undefined {
  const dot = hostName.indexOf('.');
  if (dot > 0 && dot < hostName.length - 1) return hostName.slice(dot + 1);
  try {
    const text = fs.readFileSync(resolvConf, 'utf8');
    const m = /^\s*(?:domain|search)\s+(\S+)/m.exec(text);
    return m?.[1];
  } catch {
    return undefined;
  }
}

const MAX_LISTED_RECORDS = 20;
/** The whole check's time, in --timeout units: a minute by default. */
const CHECK_BUDGET_TIMEOUTS = 12;

function printReport(io: CommandIo, r: DiscoveryReport): void {
  // Names and text from DNS answers are chosen by whoever runs that DNS server: printed inert.
  const w = (s: string): void => void io.stdout.write(inert(s) + '\n');
  w(`Discovery check for ${r.domain}, asking ${r.resolver}`);
  if (r.records.length > 0) {
    w(`SRV ${r.srvName}: ${r.records.length} record${r.records.length === 1 ? '' : 's'}`);
    // A zone may list thousands (wrong or hostile): the terminal gets a screenful, JSON gets all.
    for (const rec of r.records.slice(0, MAX_LISTED_RECORDS))
      w(`  priority ${rec.priority}  weight ${rec.weight}  port ${rec.port}  ${rec.target === '' ? '.' : rec.target}`);
    if (r.records.length > MAX_LISTED_RECORDS)
      w(`  ... and ${r.records.length - MAX_LISTED_RECORDS} more (--format json lists every record)`);
    w('Tried in the order a Windows client would:');
    r.attempts.forEach((a, i) => {
      const code = a.ok ? 'OK' : a.hresult !== undefined ? formatHresult(a.hresult) : (a.code ?? 'failed');
      w(`  ${i + 1}. ${a.record.target === '' ? '.' : a.record.target}:${a.record.port}  ${code}`);
      w(`     ${a.explain}`);
    });
  }
  for (const warning of r.warnings) w(`Warning: ${warning}`);
  if (r.ok) w(`Result: OK — ${r.explain}`);
  else w(`Result: FAILED ${r.hresult !== undefined ? formatHresult(r.hresult) : ''} (${r.code}) — ${r.explain}`);
}

export const command = defineCommand({
  name: 'dns check',
  summary: 'find the KMS host like a Windows client (DNS SRV) and probe it with an activation',
  help: HELP,
  options: {
    domain: { type: 'string', short: 'd' },
    server: { type: 'string', short: 's' },
    port: { type: 'string', short: 'p' },
    all: { type: 'boolean' },
    timeout: { type: 'string' },
  },
  formats: true,
  async run({ values: v, format, io }) {
    const domain = (v.domain ?? defaultDomain() ?? '').trim().replace(/\.$/, '');
    if (!domain) {
      throw new UsageProblem(
        'this machine has no DNS domain suffix to search ' +
          `(a Windows client would show ${formatHresult(HRESULT.DNS_BAD_NAME)}); give --domain`,
      );
    }
    if (domain.length > 253 || !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/.test(domain)) {
      throw new UsageProblem(`--domain "${inert(domain.slice(0, 80))}" is not a DNS domain name`);
    }
    let server;
    if (v.server !== undefined) {
      server = parseServerAddress(v.server);
      if (!server) throw new UsageProblem(`--server "${inert(v.server)}" is not IP or IP:PORT (IPv6 as [addr]:port)`);
    }
    let expectedPort: number | undefined;
    if (v.port !== undefined) {
      expectedPort = Number(v.port);
      if (!/^\d{1,5}$/.test(v.port) || expectedPort < 1 || expectedPort > 65535)
        throw new UsageProblem(`--port "${inert(v.port)}" is not a port number`);
    }
    const timeoutSeconds = v.timeout === undefined ? 5 : Number(v.timeout);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 300)
      throw new UsageProblem(`--timeout "${inert(v.timeout ?? '')}" is not a number of seconds (1-300)`);
    const timeoutMs = Math.round(timeoutSeconds * 1000);

    const report = await checkDiscovery(
      { domain, ...(expectedPort === undefined ? {} : { expectedPort }), all: v.all === true, budgetMs: CHECK_BUDGET_TIMEOUTS * timeoutMs },
      {
        resolver: createSystemResolver({ ...(server ? { server } : {}), timeoutMs }),
        probe: (host, port): Promise<ProbeResult> => probeKmsHost(host, port, timeoutMs),
      },
    );
    if (format === 'json') io.stdout.write(toJson(report, 2) + '\n');
    else if (format === 'csv') io.stdout.write(formatCsv(report.attempts, ATTEMPT_COLUMNS));
    else printReport(io, report);
    return report.ok ? EXIT.OK : EXIT.FAILURE;
  },
});
