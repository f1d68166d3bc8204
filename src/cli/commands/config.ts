// `kms-appliance config check FILE` and `kms-appliance config defaults`: validate a configuration
// file the way `serve` would read it, or print the complete commented example.
import { EXIT, UsageProblem, defineCommand } from '../command';
import { loadConfig } from '../../config/load';
import { configExample } from '../../config/example';
import { loadCatalog } from '../../catalog/load';
import { entitlementProblems } from '../entitlements';
import { INSTALLED_CONFIG, checkReadable, locate } from '../locations';
import { inert } from '../terminal';
import { didYouMean } from '../suggest';
import { ConfigError } from '../../errors';
import { checkConfiguredCertificate } from '../../admin/tls-certificate';

const HELP = `Usage: kms-appliance config check [FILE]
       kms-appliance config defaults

Check a configuration file, or print a commented example with every default.

  check FILE   Validate FILE as \`serve --config FILE\` would read it, and that every
               entitlement names a product of the catalogue. Prints "FILE: OK", or one line
               per problem: "FILE:LINE: field: what is allowed" (all at once). Without FILE:
               the installed ${INSTALLED_CONFIG}.
  defaults     Print a complete configuration file: every field with its meaning, unit,
               range and default. Loading it gives exactly the built-in defaults.

Options:
  -h, --help   Show this help.

Exit codes: 0 valid, 2 invalid file or wrong command line.

Examples:
  kms-appliance config check /etc/kms-appliance/config.yaml
  kms-appliance config defaults > /etc/kms-appliance/config.yaml
`;

export const command = defineCommand({
  name: 'config',
  summary: 'check a configuration file, or print every default as a commented example',
  help: HELP,
  options: {},
  positionals: true,
  run({ positionals, io }) {
    const [sub, ...rest] = positionals;
    switch (sub) {
      case 'check': {
        if (rest.length > 1) throw new UsageProblem('config check takes one FILE');
        const file = rest[0] ?? locate({ env: io.env }).configFile;
        if (file === undefined) throw new UsageProblem(`config check needs a FILE (no ${INSTALLED_CONFIG} on this machine)`);
        const unreadable = checkReadable(file);
        if (unreadable) {
          io.stderr.write(`kms-appliance config: ${unreadable}\n`);
          return EXIT.FAILURE;
        }
        let config;
        try {
          config = loadConfig(file);
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          // The lines name the file and line already: printed as they are, for editors to jump to.
          for (const line of err.errors) io.stderr.write(line + '\n');
          return EXIT.USAGE;
        }
        // The admin certificate is checked with node-forge as serve would: key match, chain, expiry.
        const cert = checkConfiguredCertificate(config.admin.tls);
        for (const w of cert.warnings) io.stderr.write(`${inert(file)}: warning: ${w}\n`);
        const catalog = loadCatalog(config.catalog.file === '' ? undefined : config.catalog.file);
        for (const w of catalog.warnings) io.stderr.write(`${inert(catalog.source)}: warning: ${inert(w)}\n`);
        const problems = [...cert.errors, ...entitlementProblems(catalog, config.entitlements)];
        if (problems.length > 0) {
          for (const p of problems) io.stderr.write(`${inert(file)}: ${p}\n`);
          return EXIT.USAGE;
        }
        io.stdout.write(`${inert(file)}: OK\n`);
        return EXIT.OK;
      }
      case 'defaults':
        if (rest.length !== 0) throw new UsageProblem('config defaults takes no arguments');
        io.stdout.write(configExample());
        return EXIT.OK;
      case undefined:
        throw new UsageProblem('missing sub-command: check or defaults');
      default:
        throw new UsageProblem(`unknown sub-command "${inert(sub)}": use check or defaults${didYouMean(sub, ['check', 'defaults'])}`);
    }
  },
});
