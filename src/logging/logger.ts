// Structured logs: pino JSON lines on stdout, which journald stores (`journalctl -u
// kms-appliance -o cat | jq`). One line per KMS request with the fields of a Windows host's event
// 12290 (docs/PROTOCOL.md §7.1), start-up and shutdown lines with the effective configuration, and
// secrets (TSIG) never written. Every line carries a string `event` name, and the numeric
// `eventId` of the Windows event it mirrors where there is one; under systemd each line starts
// with the syslog priority journald reads (`<4>` for a warning), so `journalctl -p warning` works.
import pino, { type DestinationStream, type Logger } from 'pino';
import { formatHresult } from '../errors';
import type { AppConfig } from '../config/defaults';
import type { ActivationOutcome } from '../host/outcome';
import { licenseStatusName } from '../protocol/kms/license-status';
import { EVENT_NAMES, eventNameFor } from './events';
import { withSyslogPrefix } from './journal';
import { escapeJsonText } from './json-escape';

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
  return pino(
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
    withSyslogPrefix(
      (options.destination ?? pino.destination({ dest: 1, sync: true })) as DestinationStream,
      options.syslogPrefix === true,
    ),
  );
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
 * One line per request, fields named after event 12290 ("Error code, Minimum count needed,
 * Client FQDN, Client Machine ID, Client timestamp, VM, License state, Time to state expiration,
 * Activation ID") and event 12289's "Current count", plus what Windows does not log: the client
 * address, protocol version, product names and, for refusals, the registered code and what to do.
 */
const EVENT_SERVED = 'kms-request-served';
const EVENT_REFUSED = 'kms-request-refused';

export function logActivation(log: Logger, outcome: ActivationOutcome): void {
  const o = outcome;
  const fields = {
    event: o.result === 'refused' ? EVENT_REFUSED : EVENT_SERVED,
    eventId: 12290,
    result: o.result,
    errorCode: formatHresult(o.hresult),
    code: o.code,
    clientAddress: o.clientAddress,
    protocolVersion: o.protocolVersion === undefined ? undefined : `${o.protocolVersion}.0`,
    clientMachineId: o.clientMachineId,
    previousClientMachineId: o.previousClientMachineId,
    clientFqdn: o.workstationName,
    clientTimestamp: o.requestTime,
    vm: o.vm,
    licenseState: o.licenseStatus,
    licenseStateName: o.licenseStatusName ?? (o.licenseStatus === undefined ? undefined : licenseStatusName(o.licenseStatus)),
    timeToStateExpirationMinutes: o.bindingExpirationMinutes,
    minimumCountNeeded: o.requiredClientCount,
    currentCount: o.currentCount,
    activationId: o.activationId,
    sku: o.skuName,
    kmsCountedId: o.kmsCountedId,
    productGroup: o.productGroupName,
    applicationId: o.applicationId,
    application: o.applicationName,
    epid: o.epid,
    explanation: o.explanation,
  };
  if (o.result === 'refused') log.warn(fields, '12290 refused');
  else log.info(fields, '12290 activation');
}

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
