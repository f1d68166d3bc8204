// `kms-appliance config check FILE` and `kms-appliance config defaults`: validate a configuration
// file the way `serve` would read it, or print the complete commented example.
import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command } from '../command';
import { loadConfig } from '../../config/load';
import { configExample } from '../../config/example';
import { KmsError } from '../../errors';
import { checkConfiguredCertificate } from '../../admin/tls-certificate';

const HELP = `Usage: kms-appliance config check FILE
       kms-appliance config defaults

Check a configuration file, or print a commented example with every default.

  check FILE   Validate FILE as \`serve --config FILE\` would read it. Prints "FILE: OK", or
               one line per problem: "FILE:LINE: field: what is allowed" (all at once).
  defaults     Print a complete configuration file: every field with its meaning, unit,
               range and default. Loading it gives exactly the built-in defaults.

Options:
  -h, --help   Show this help.

Exit codes: 0 valid, 2 invalid file or wrong command line.

Examples:
  kms-appliance config check /etc/kms-appliance/config.yaml
  kms-appliance config defaults > /etc/kms-appliance/config.yaml
`;


export const command: Command = {
  name: 'config',
  summary: 'check a configuration file, or print every default as a commented example',
  help: HELP,
  async run(argv, io) {
    let positionals: string[];
    let help: boolean | undefined;
    try {
      const parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: { help: { type: 'boolean', short: 'h' } } });
      positionals = parsed.positionals;
      help = parsed.values.help;
    } catch (err) {
      return usageError(io, 'config', (err as Error).message);
    }
    if (help) {
      io.stdout.write(HELP);
      return EXIT.OK;
    }
    const [sub, ...rest] = positionals;
    switch (sub) {
      case 'check': {
        if (rest.length !== 1) return usageError(io, 'config', 'config check needs exactly one FILE');
        const file = rest[0]!;
        let loaded;
        try {
          loaded = loadConfig(file);
        } catch (err) {
          if (!(err instanceof KmsError)) throw err;
          const lines = (err.details.errors as string[] | undefined) ?? [err.message];
          for (const line of lines) io.stderr.write(line + '\n');
          return EXIT.USAGE;
        }
        // The admin certificate is checked with node-forge as serve would: key match, chain, expiry.
        const cert = checkConfiguredCertificate(loaded.admin.tls);
        for (const w of cert.warnings) io.stderr.write(`${file}: warning: ${w}\n`);
        if (cert.errors.length > 0) {
          for (const e of cert.errors) io.stderr.write(`${file}: ${e}\n`);
          return EXIT.USAGE;
        }
        io.stdout.write(`${file}: OK\n`);
        return EXIT.OK;
      }
      case 'defaults':
        if (rest.length !== 0) return usageError(io, 'config', 'config defaults takes no arguments');
        io.stdout.write(configExample());
        return EXIT.OK;
      case undefined:
        return usageError(io, 'config', 'missing sub-command: check or defaults');
      default:
        return usageError(io, 'config', `unknown sub-command "${sub}": use check or defaults`);
    }
  },
};
