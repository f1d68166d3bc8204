// `kms-appliance client-config --host H [--port P] [--out DIR]`: writes the files that point
// Windows and Office clients at this host by hand, for sites whose DNS cannot publish the
// _vlmcs._tcp record (the generator is src/client-config/client-config.ts).
import path from 'node:path';
import { EXIT, UsageProblem, defineCommand } from '../command';
import { inert } from '../terminal';
import { writeFilesSafely } from '../safe-write';
import { checkClientHost, checkClientPort, clientHostWarning, generateClientConfig } from '../../client-config/client-config';

/** The port Windows clients use when none is given (PROTOCOL.md §8.1). */
const KMS_DEFAULT_PORT = 1688;
const DEFAULT_OUT = 'kms-client-config';

const HELP = `Usage: kms-appliance client-config --host H [--port P] [--out DIR]

Write ready-to-run files that point Windows and Office clients at this KMS host, for sites whose
DNS cannot carry the _vlmcs._tcp SRV record (an ISP resolver, a small router):

  kms-client-set.cmd    slmgr /skms H:P and /ato; ospp.vbs /sethst /setprt /act for Office 2010
                        and Office 2013+ on Windows 7 (both Program Files folders)
  kms-client-set.ps1    the same in PowerShell
  kms-client-set.reg    KeyManagementServiceName / KeyManagementServicePort for Windows and Office
  kms-client-undo.*     back to DNS discovery (slmgr /ckms, ospp.vbs /remhst, values deleted)

Run them on the client as Administrator. The .cmd runs from an elevated Command Prompt; Windows
runs no downloaded .ps1 by default, so start it with
  powershell -ExecutionPolicy Bypass -File .\\kms-client-set.ps1
The files are written fresh: an existing file is replaced, a symbolic link is refused.

Options:
  --host H     host name or IP address the clients connect to (required; IPv6 as is)
  --port P     KMS port (default ${KMS_DEFAULT_PORT})
  --out DIR    directory to write into, created when missing (default ./${DEFAULT_OUT})
  -h, --help   show this help

Exit codes: 0 written, 1 the files could not be written, 2 wrong command line.

Example:
  kms-appliance client-config --host kms.branch.example.org --out /srv/share/kms
`;

export const command = defineCommand({
  name: 'client-config',
  summary: 'write .cmd/.ps1/.reg files that point clients at this host by hand',
  help: HELP,
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    out: { type: 'string' },
  },
  run({ values, io }) {
    if (values.host === undefined) throw new UsageProblem('--host is required');
    const hostProblem = checkClientHost(values.host);
    if (hostProblem) throw new UsageProblem(`--host: ${inert(hostProblem)}`);
    let port = KMS_DEFAULT_PORT;
    if (values.port !== undefined) {
      port = /^\d{1,5}$/.test(values.port) ? Number(values.port) : NaN;
      const portProblem = Number.isNaN(port) ? `"${inert(values.port)}" is not a port number` : checkClientPort(port);
      if (portProblem) throw new UsageProblem(`--port: ${portProblem}`);
    }
    const dir = values.out ?? DEFAULT_OUT;
    const files = generateClientConfig({ host: values.host, port });
    try {
      writeFilesSafely(dir, files);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      io.stderr.write(`kms-appliance client-config: cannot write to ${inert(dir)}: ${inert(e.message ?? e.code ?? String(err))}\n`);
      return EXIT.FAILURE;
    }
    // Written all the same (a lab may want it), but a careless --host is said before the files are copied out.
    const warning = clientHostWarning(values.host);
    if (warning) io.stderr.write(`kms-appliance client-config: warning: ${inert(warning)}\n`);
    for (const f of files) io.stdout.write(`${inert(path.join(dir, f.name))}: ${f.purpose}\n`);
    io.stdout.write(
      `On the client, as Administrator: kms-client-set.cmd, or powershell -ExecutionPolicy Bypass -File .\\kms-client-set.ps1\n`,
    );
    return EXIT.OK;
  },
});
