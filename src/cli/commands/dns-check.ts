// `kms-appliance dns check`: resolves the KMS host like a Windows client of a domain, probes it
// with a real activation call and says, in the admin's words and with the client's error code,
// what a client there would experience.
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command, type CommandIo } from '../command';
import { formatHresult, HRESULT } from '../../errors';
import { checkDiscovery, createSystemResolver, type DiscoveryReport, type ProbeResult } from '../../dns/dns-check';
import { parseServerAddress } from '../../dns/dns-transport';
import { probeKmsHost } from '../../client/probe';

const HELP = `Usage: kms-appliance dns check [--domain D] [--server IP[:PORT]] [--port P] [--all]
                               [--timeout SECONDS] [--json]

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
      --timeout S       Seconds for each DNS query and each probe (default 5).
      --json            Print the report as JSON.
  -h, --help            Show this help.

Exit codes: 0 a client would activate, 1 it would not, 2 usage error.

Examples:
  kms-appliance dns check --domain corp.example
  kms-appliance dns check --domain corp.example --server 192.0.2.53
  kms-appliance dns check --domain branch.example --server 127.0.0.1:5353 --port 1688
`;

type Values = { domain?: string; server?: string; port?: string; all?: boolean; timeout?: string; json?: boolean; help?: boolean };

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


function printReport(io: CommandIo, r: DiscoveryReport): void {
  const w = (s: string): void => void io.stdout.write(s + '\n');
  w(`Discovery check for ${r.domain}, asking ${r.resolver}`);
  if (r.records.length > 0) {
    w(`SRV ${r.srvName}: ${r.records.length} record(s)`);
    for (const rec of r.records) w(`  priority ${rec.priority}  weight ${rec.weight}  port ${rec.port}  ${rec.target}`);
    w('Tried in the order a Windows client would:');
    r.attempts.forEach((a, i) => {
      const code = a.ok ? 'OK' : a.hresult !== undefined ? formatHresult(a.hresult) : a.code ?? 'failed';
      w(`  ${i + 1}. ${a.record.target}:${a.record.port}  ${code}`);
      w(`     ${a.explain}`);
    });
  }
  for (const warning of r.warnings) w(`Warning: ${warning}`);
  if (r.ok) w(`Result: OK — ${r.explain}`);
  else w(`Result: FAILED ${r.hresult !== undefined ? formatHresult(r.hresult) : ''} (${r.code}) — ${r.explain}`);
}

export const command: Command = {
  name: 'dns check',
  summary: 'find the KMS host like a Windows client (DNS SRV) and probe it with an activation',
  help: HELP,
  async run(argv, io) {
    let v: Values;
    try {
      v = parseArgs({
        args: [...argv],
        strict: true,
        options: {
          domain: { type: 'string', short: 'd' },
          server: { type: 'string', short: 's' },
          port: { type: 'string', short: 'p' },
          all: { type: 'boolean' },
          timeout: { type: 'string' },
          json: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
      }).values;
    } catch (err) {
      return usageError(io, 'dns check', (err as Error).message);
    }
    if (v.help) {
      io.stdout.write(HELP);
      return EXIT.OK;
    }
    const domain = (v.domain ?? defaultDomain() ?? '').trim().replace(/\.$/, '');
    if (!domain) {
      return usageError(io, 'dns check', `this machine has no DNS domain suffix to search (a Windows client would show ${formatHresult(HRESULT.DNS_BAD_NAME)}); give --domain`);
    }
    let server;
    if (v.server !== undefined) {
      server = parseServerAddress(v.server);
      if (!server) return usageError(io, 'dns check', `--server "${v.server}" is not IP or IP:PORT (IPv6 as [addr]:port)`);
    }
    let expectedPort: number | undefined;
    if (v.port !== undefined) {
      expectedPort = Number(v.port);
      if (!/^\d{1,5}$/.test(v.port) || expectedPort < 1 || expectedPort > 65535) return usageError(io, 'dns check', `--port "${v.port}" is not a port number`);
    }
    const timeoutSeconds = v.timeout === undefined ? 5 : Number(v.timeout);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 300) return usageError(io, 'dns check', `--timeout "${v.timeout}" is not a number of seconds (1-300)`);
    const timeoutMs = Math.round(timeoutSeconds * 1000);

    const report = await checkDiscovery(
      { domain, ...(expectedPort === undefined ? {} : { expectedPort }), all: v.all === true },
      {
        resolver: createSystemResolver({ ...(server ? { server } : {}), timeoutMs }),
        probe: (host, port): Promise<ProbeResult> => probeKmsHost(host, port, timeoutMs),
      },
    );
    if (v.json) io.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else printReport(io, report);
    return report.ok ? EXIT.OK : EXIT.FAILURE;
  },
};
