// Structured logs: pino JSON lines on stdout, which journald stores (`journalctl -u
// kms-appliance -o cat | jq`). One line per KMS request with the fields of a Windows host's event
// 12290 (docs/PROTOCOL.md §7.1), start-up and shutdown lines with the effective configuration, and
// secrets (TSIG) never written. Every line carries a string `event` name, and the numeric
// `eventId` of the Windows event it mirrors where there is one; under systemd each line starts
// with the syslog priority journald reads (`<4>` for a warning), so `journalctl -p warning` works.
import pino, { type DestinationStream, type Logger } from 'pino';
import type { AppConfig } from '../config/defaults';
import type { ActivationOutcome } from '../host/outcome';
import { activationFields, activationFieldsBound, MSG_REFUSED, MSG_SERVED, writeActivationFields } from './activation-line';
import { EVENT_NAMES, eventNameFor } from './events';
import { withSyslogPrefix } from './journal';
import { escapeJsonText } from './json-escape';
import { canReserve } from './line-batch';
import { JsonBytes } from '../json-bytes';
import { writeIsoTime } from '../host/iso-time';
import { UndecodableLines } from './undecodable-lines';

export type { Logger };
export type LogLevel = AppConfig['log']['level'] | 'silent';

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Where lines go; default stdout, written synchronously so nothing is lost at exit. */
  readonly destination?: DestinationStream | NodeJS.WritableStream;
  /** Start each line with its syslog priority (`<3>`…`<7>`): set when stdout is journald's stream. */
  readonly syslogPrefix?: boolean;
}

export const REDACTED = '[redacted]';

/** Every place a secret can appear in a log object: the configuration and TSIG key objects. */
const REDACT_PATHS = [
  'config.dns.registration.tsig.secretBase64',
  'dns.registration.tsig.secretBase64',
  'registration.tsig.secretBase64',
  'tsig.secretBase64',
  'tsig.secret',
  'secretBase64',
  'secret',
];

export function createLogger(options: LoggerOptions): Logger {
  const stream = withSyslogPrefix(
    (options.destination ?? pino.destination({ dest: 1, sync: true })) as DestinationStream,
    options.syslogPrefix === true,
  );
  const log = pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // "level":"info" rather than 30: read by people in journalctl as often as by tools.
      formatters: { level: (label) => ({ level: label }), log: nameEvent },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      // Workstation names are chosen by clients: a bidi override or C1 control stays an escape.
      hooks: { streamWrite: escapeJsonText },
    },
    stream,
  );
  const metadata = (stream as { [pino.symbols.needsMetadataGsym]?: boolean })[pino.symbols.needsMetadataGsym] === true;
  activationSinks.set(log, { stream, metadata, pid: `,"pid":${process.pid}` });
  return log;
}

/**
 * `event` is always a string, so a typed log store sees one type: a number given as `event` (a
 * Windows event id) moves to `eventId` and gets its name; a line without one is named after its
 * error code, or "message".
 */
function nameEvent(fields: Record<string, unknown>): Record<string, unknown> {
  const event = fields['event'];
  if (typeof event === 'string') return fields;
  if (typeof event === 'number') return { ...fields, eventId: event, event: EVENT_NAMES.get(event) ?? `windows-event-${event}` };
  return { ...fields, event: eventNameFor(fields['code']) };
}

/**
 * One line per request (fields: activation-line.ts): a served request at info, a refusal at warn.
 * A message refused before it decoded (no machine id: not a KMS request at all) is the exception:
 * a flood of those is throttled (undecodable-lines.ts), with `suppressedSimilar` on the next line.
 * A logger made by createLogger gets the line written by the dedicated serializer into its own
 * destination, the same bytes pino would write; any other logger (a child, a test's) gets it from
 * pino.
 */
export function logActivation(log: Logger, outcome: ActivationOutcome): void {
  const refused = outcome.result === 'refused';
  const level = refused ? LEVEL_WARN : LEVEL_INFO;
  if (log.levelVal > level) return;
  let suppressed = 0;
  if (refused && outcome.clientMachineId === undefined) {
    let lines = undecodable.get(log);
    if (lines === undefined) {
      lines = new UndecodableLines();
      undecodable.set(log, lines);
    }
    suppressed = lines.admit(outcome.clientAddress, Date.now());
    if (suppressed < 0) return;
  }
  const sink = activationSinks.get(log);
  if (sink === undefined) {
    const fields = suppressed > 0 ? { ...activationFields(outcome), suppressedSimilar: suppressed } : activationFields(outcome);
    if (refused) log.warn(fields, MSG_REFUSED);
    else log.info(fields, MSG_SERVED);
    return;
  }
  const stream = sink.stream;
  // As pino does for a stream that asks: the syslog prefix wrapper reads the line's level here.
  if (sink.metadata) (stream as unknown as { lastLevel: number }).lastLevel = level;
  // Written into the batch's buffer where the destination has one (serve's); otherwise into a
  // buffer of its own, handed over as a string.
  const bound = ENVELOPE_BOUND + activationFieldsBound(outcome);
  const reserving = canReserve(stream) ? stream : undefined;
  const reserved = reserving?.reserve(bound);
  const w = reserved ?? new JsonBytes(Buffer.allocUnsafe(bound), 0);
  const start = w.at;
  w.raw(refused ? '{"level":"warn","time":"' : '{"level":"info","time":"');
  writeIsoTime(w, Date.now());
  w.raw('"');
  w.raw(sink.pid);
  writeActivationFields(w, outcome);
  if (suppressed > 0) {
    w.raw(',"suppressedSimilar":');
    w.number(suppressed);
  }
  w.raw(refused ? MSG_REFUSED_END : MSG_SERVED_END);
  if (reserved !== undefined) reserving!.commit(w);
  else stream.write(w.buf.toString('utf8', start, w.at));
}

const MSG_SERVED_END = `,"msg":"${MSG_SERVED}"}\n`;
const MSG_REFUSED_END = `,"msg":"${MSG_REFUSED}"}\n`;
/** The envelope around the fields: level, time, pid, suppressedSimilar, msg, with room to spare. */
const ENVELOPE_BOUND = 256;

const LEVEL_INFO = 30;
const LEVEL_WARN = 40;

/** Where createLogger's loggers write, for logActivation's own line. */
interface ActivationSink {
  readonly stream: DestinationStream;
  readonly metadata: boolean;
  /** pino's `base` as it writes it: `,"pid":N`. */
  readonly pid: string;
}

const activationSinks = new WeakMap<Logger, ActivationSink>();
/** Per logger, which lines of undecodable messages are written. */
const undecodable = new WeakMap<Logger, UndecodableLines>();

export interface StartupFacts {
  readonly version: string;
  /** The file the configuration came from; absent = embedded defaults. */
  readonly configFile?: string;
  readonly [fact: string]: unknown;
}

/** The configuration as it may be logged: secrets replaced, everything else as effective. */
function redactConfig(config: AppConfig): unknown {
  const copy = structuredClone(config) as unknown as { dns: { registration: { tsig: { secretBase64: string } } } };
  const tsig = copy.dns.registration.tsig;
  if (tsig.secretBase64 !== '') tsig.secretBase64 = REDACTED;
  return copy;
}

export function logStartup(log: Logger, config: AppConfig, facts: StartupFacts): void {
  log.info(
    { event: 'startup', ...facts, configFile: facts.configFile ?? '(embedded defaults)', config: redactConfig(config) },
    'kms-appliance started',
  );
}

export interface ShutdownFacts {
  /** The signal or the reason, e.g. "SIGTERM". */
  readonly reason: string;
  readonly [fact: string]: unknown;
}

export function logShutdown(log: Logger, facts: ShutdownFacts): void {
  log.info({ event: 'shutdown', ...facts }, 'kms-appliance stopped');
}
