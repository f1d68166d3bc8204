// `kms-appliance client-config --host H [--port P] [--out DIR]`: writes the files that point
// Windows and Office clients at this host by hand, for sites whose DNS cannot publish the
// _vlmcs._tcp record (the generator is src/client-config/client-config.ts).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command } from '../command';
import { checkClientHost, checkClientPort, generateClientConfig } from '../../client-config/client-config';

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

Run them on the client as Administrator.

Options:
  --host H     host name or IP address the clients connect to (required; IPv6 as is)
  --port P     KMS port (default ${KMS_DEFAULT_PORT})
  --out DIR    directory to write into, created when missing (default ./${DEFAULT_OUT})
  -h, --help   show this help

Exit codes: 0 written, 1 the files could not be written, 2 wrong command line.

Example:
  kms-appliance client-config --host kms.branch.example.org --out /srv/share/kms
`;


export const command: Command = {
  name: 'client-config',
  summary: 'write .cmd/.ps1/.reg files that point clients at this host by hand',
  help: HELP,
  async run(argv, io) {
    let values: { host?: string; port?: string; out?: string; help?: boolean };
    try {
      values = parseArgs({
        args: [...argv],
        strict: true,
        allowPositionals: false,
        options: {
          host: { type: 'string' },
          port: { type: 'string' },
          out: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
      }).values;
    } catch (err) {
      return usageError(io, 'client-config', (err as Error).message);
    }
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.OK;
    }
    if (values.host === undefined) return usageError(io, 'client-config', '--host is required');
    const hostProblem = checkClientHost(values.host);
    if (hostProblem) return usageError(io, 'client-config', `--host: ${hostProblem}`);
    let port = KMS_DEFAULT_PORT;
    if (values.port !== undefined) {
      port = /^\d{1,5}$/.test(values.port) ? Number(values.port) : NaN;
      const portProblem = Number.isNaN(port) ? `"${values.port}" is not a port number` : checkClientPort(port);
      if (portProblem) return usageError(io, 'client-config', `--port: ${portProblem}`);
    }
    const dir = values.out ?? DEFAULT_OUT;
    const files = generateClientConfig({ host: values.host, port });
    try {
      fs.mkdirSync(dir, { recursive: true });
      for (const f of files) fs.writeFileSync(path.join(dir, f.name), f.content);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      io.stderr.write(`kms-appliance client-config: cannot write to ${dir}: ${e.code ?? e.message}\n`);
      return EXIT.FAILURE;
    }
    for (const f of files) io.stdout.write(`${path.join(dir, f.name)}: ${f.purpose}\n`);
    return EXIT.OK;
  },
};
