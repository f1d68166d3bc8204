// The shape every `kms-appliance <command>` module exports. main.ts dispatches on `name`
// (a space in the name, like "dns check", is a sub-command).

export interface CommandIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: NodeJS.ProcessEnv;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full --help text: usage line, options, examples. */
  readonly help: string;
  /** Returns the exit code: 0 ok, 1 failure, 2 usage or configuration error. */
  run(argv: readonly string[], io: CommandIo): Promise<number>;
}

export const EXIT = Object.freeze({ OK: 0, FAILURE: 1, USAGE: 2 } as const);

/** One line on stderr for a usage mistake, naming the command's --help; returns exit code 2. */
export function usageError(io: CommandIo, command: string, problem: string): number {
  // parseArgs explains some mistakes over several lines; the first says what is wrong.
  const first = problem.split('\n')[0]!.trim();
  io.stderr.write(`kms-appliance ${command}: ${first} (see kms-appliance ${command} --help)\n`);
  return EXIT.USAGE;
}
