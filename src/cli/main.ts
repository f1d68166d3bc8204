#!/usr/bin/env node
// kms-appliance <command>: dispatches to the command modules. Expected problems end as one line on
// stderr with exit code 1 (failure) or 2 (usage/configuration); only bugs print a stack trace.
import { EXIT, type Command, type CommandIo } from './command';
import { didYouMean } from './suggest';
import { inert } from './terminal';
import { VERSION } from '../version';
import { isJournalStream, journalLine } from '../logging/journal';

// Every command's module, loaded on first use: `serve` (in main) runs for years with its own module
// alone, without the other commands' imports (TLS, DNS and PostgreSQL client code: README "Memory").
function allCommands(): readonly Command[] {
  return (require('./commands') as typeof import('./commands')).COMMANDS;
}

function overview(): string {
  const commands = allCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return (
    `Usage: kms-appliance <command> [options]   (kms-appliance <command> --help for details)\n\n` +
    `An honest KMS host for Windows and Office volume activation.\n\nCommands:\n` +
    commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n') +
    `\n\nExit codes: 0 ok, 1 failure, 2 usage or configuration error.\n`
  );
}

/** Finds the command for argv: a two-word name ("dns check") wins over a one-word one. */
export function findCommand(argv: readonly string[]): { command: Command; rest: readonly string[] } | undefined {
  const commands = allCommands();
  const two = argv.slice(0, 2).join(' ');
  const byTwo = commands.find((c) => c.name === two);
  if (byTwo) return { command: byTwo, rest: argv.slice(2) };
  const byOne = commands.find((c) => c.name === argv[0]);
  return byOne ? { command: byOne, rest: argv.slice(1) } : undefined;
}

export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    io.stdout.write(overview());
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === '--version' || first === '-V') {
    io.stdout.write(`kms-appliance ${VERSION}\n`);
    return EXIT.OK;
  }
  if (first === 'serve') {
    const { command } = require('./commands/serve') as typeof import('./commands/serve');
    return command.run(argv.slice(1), io);
  }
  const found = findCommand(argv);
  if (!found) {
    // "dns" alone, or "dns --help": the group of two-word commands it starts.
    const group = allCommands().filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0) {
      const help = argv[1] === '--help' || argv[1] === '-h';
      (help ? io.stdout : io.stderr).write(
        `kms-appliance ${first}: sub-commands: ${group.map((c) => c.name.slice(first.length + 1)).join(', ')} ` +
          `(kms-appliance ${group[0]!.name} --help)\n`,
      );
      return help ? EXIT.OK : EXIT.USAGE;
    }
    const names = allCommands().flatMap((c) => [c.name, c.name.split(' ')[0]!]);
    io.stderr.write(`kms-appliance: unknown command "${inert(first)}"${didYouMean(first, names)} (kms-appliance --help lists them)\n`);
    return EXIT.USAGE;
  }
  return found.command.run(found.rest, io);
}

if (require.main === module) {
  // `kms-appliance clients | head` closes the pipe early: that ends the output, it is no error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const text = `kms-appliance: internal error: ${(err as Error)?.stack ?? String(err)}`;
      // Under systemd every line of the trace is critical for journald, not info.
      const journal = isJournalStream(2, process.env);
      process.stderr.write(
        `${text
          .split('\n')
          .map((l) => (journal ? journalLine(2, l) : l))
          .join('\n')}\n`,
      );
      process.exitCode = EXIT.FAILURE;
    },
  );
}
