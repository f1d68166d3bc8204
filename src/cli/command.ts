// The shape every `kms-appliance <command>` module exports, and defineCommand, which gives every
// command the same options parsing, --help, "did you mean", --format/--json and exit codes.
// main.ts dispatches on `name` (a space in the name, like "dns check", is a sub-command).
import { parseArgs } from 'node:util';
import { ConfigError, KmsError, StoreError } from '../errors';
import { didYouMean } from './suggest';
import { readFailure } from '../store/write-failure';

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
function usageError(io: CommandIo, command: string, problem: string): number {
  // parseArgs explains some mistakes over several lines; the first says what is wrong.
  const first = problem.split('\n')[0]!.trim();
  io.stderr.write(`kms-appliance ${command}: ${first} (see kms-appliance ${command} --help)\n`);
  return EXIT.USAGE;
}

/** Thrown to end a command with an exit code after its message was written. */
export class CommandExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/** Thrown for a wrong argument: one line, exit 2. */
export class UsageProblem extends Error {}

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
}

type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean'
  ? S['multiple'] extends true
    ? boolean[]
    : boolean
  : S['multiple'] extends true
    ? string[]
    : string;

type OptionValues<O extends Record<string, OptionSpec>> = { -readonly [K in keyof O]?: ValueOf<O[K]> };

type OutputFormat = 'table' | 'json' | 'csv';
const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'json', 'csv'];

interface CommandContext<O extends Record<string, OptionSpec>> {
  readonly values: OptionValues<O>;
  readonly positionals: readonly string[];
  /** --format, with --json as its alias; 'table' when neither is given. */
  readonly format: OutputFormat;
  readonly io: CommandIo;
}

export interface CommandSpec<O extends Record<string, OptionSpec>> {
  readonly name: string;
  readonly summary: string;
  readonly help: string;
  readonly options: O;
  /** Words after the options (`config check FILE`); refused unless set. */
  readonly positionals?: boolean;
  /** Accept --format table|json|csv and its alias --json. */
  readonly formats?: boolean;
  run(ctx: CommandContext<O>): Promise<number> | number;
}

const FORMAT_OPTIONS = { format: { type: 'string', short: 'f' }, json: { type: 'boolean' } } as const;
const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * Builds a Command: parses argv strictly, answers --help, and turns the expected failures into
 * one line and an exit code — a wrong argument (UsageProblem, KMS_ERR_CLI_USAGE) exits 2 with a
 * pointer to --help, a configuration problem (ConfigError) exits 2 with one line per problem, an
 * unusable database (StoreError) exits 1. Anything else is a bug and keeps its stack trace.
 */
export function defineCommand<O extends Record<string, OptionSpec>>(spec: CommandSpec<O>): Command {
  const options = { ...spec.options, ...(spec.formats ? FORMAT_OPTIONS : {}), ...HELP_OPTION };
  return {
    name: spec.name,
    summary: spec.summary,
    help: spec.help,
    async run(argv, io) {
      let parsed: { values: Record<string, unknown>; positionals: string[] };
      try {
        parsed = parseArgs({ args: [...argv], strict: true, allowPositionals: spec.positionals === true, options });
      } catch (err) {
        return usageError(io, spec.name, explainParseError((err as Error).message, Object.keys(options)));
      }
      if (parsed.values['help']) {
        io.stdout.write(spec.help);
        return EXIT.OK;
      }
      try {
        const format = spec.formats ? chooseFormat(parsed.values['format'] as string | undefined, parsed.values['json'] === true) : 'table';
        return await spec.run({ values: parsed.values as OptionValues<O>, positionals: parsed.positionals, format, io });
      } catch (err) {
        return failure(err, spec.name, io);
      }
    },
  };
}

function chooseFormat(format: string | undefined, json: boolean): OutputFormat {
  if (format !== undefined && !OUTPUT_FORMATS.includes(format as OutputFormat)) {
    throw new UsageProblem(`--format must be table, json or csv, not "${format}"${didYouMean(format, OUTPUT_FORMATS)}`);
  }
  if (json && format !== undefined && format !== 'json') throw new UsageProblem(`--json and --format ${format} contradict each other`);
  return json ? 'json' : ((format as OutputFormat | undefined) ?? 'table');
}

/** parseArgs' message, in one line, with the closest option for an unknown one. */
function explainParseError(message: string, optionNames: readonly string[]): string {
  const first = message.split('\n')[0]!.trim();
  const unknown = /^Unknown option '(-{1,2})([^']*)'/.exec(first);
  if (unknown) {
    const typed = unknown[2]!.split('=')[0]!;
    return `unknown option ${unknown[1]}${typed}${didYouMean(typed, optionNames, (o) => `--${o}`)}`;
  }
  const positional = /^Unexpected argument '([^']*)'/.exec(first);
  if (positional) return `unexpected argument "${positional[1]}" (values need their option, e.g. --host NAME; quote names with spaces)`;
  return first;
}

/** Maps the expected failures to one line and an exit code; rethrows bugs. */
function failure(err: unknown, command: string, io: CommandIo): number {
  if (err instanceof CommandExit) return err.exitCode;
  if (err instanceof UsageProblem) return usageError(io, command, err.message);
  if (err instanceof ConfigError) {
    for (const line of err.errors) io.stderr.write(`kms-appliance ${command}: ${line}\n`);
    return EXIT.USAGE;
  }
  if (err instanceof KmsError && err.code === 'KMS_ERR_CLI_USAGE') return usageError(io, command, err.message);
  const store = err instanceof StoreError ? err : readFailure(err);
  if (store !== undefined) {
    io.stderr.write(`kms-appliance ${command}: ${store.message} [${store.code}]\n`);
    return EXIT.FAILURE;
  }
  throw err;
}
