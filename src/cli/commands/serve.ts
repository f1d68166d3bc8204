// `kms-appliance serve`: run the appliance until SIGTERM/SIGINT (graceful: answered calls are
// flushed, then exit 0). SIGHUP re-reads the configuration file: a valid file is applied without
// dropping connections or counts; an invalid one is logged and the running configuration stays.
import { EXIT, defineCommand, type CommandIo } from '../command';
import { loadConfig } from '../../config/load';
import { ConfigError, KmsError } from '../../errors';
import { createLogger, logShutdown, logStartup } from '../../logging/logger';
import { isJournalStream, journalLine } from '../../logging/journal';
import { serveLogOutput } from '../../logging/serve-output';
import { sayOnStderr } from '../../logging/stream-destination';
import { applyOverrides, startAppliance, type Appliance } from '../appliance';
import { formatListenAddress } from '../../config/listen-address';
import { VERSION } from '../../version';

const HELP = `Usage: kms-appliance serve [--config FILE] [--listen ADDR:PORT]... [--dns-listen ADDR:PORT]...
                           [--admin-listen ADDR:PORT]... [--data-dir DIR]

Run the KMS host (and, as configured, the DNS responder, DNS registration, mDNS and the admin page).
Without --config the embedded defaults apply: KMS on port 1688 on every IPv4 and IPv6 address.

Options:
  -c, --config FILE          Configuration file (YAML). See: kms-appliance config defaults
  -l, --listen ADDR:PORT     KMS listen address, repeatable; replaces kms.listen. IPv6 in brackets:
                             --listen [::1]:1688. Port 0 picks a free port (logged at start).
      --dns-listen ADDR:PORT DNS responder address, repeatable; replaces dns.listen.
      --admin-listen ADDR:PORT
                             Admin page address, repeatable; replaces admin.listen. Beyond
                             loopback it needs admin.tls.enabled and a password.
  -d, --data-dir DIR         Where the database lives; replaces store.dataDir.
  -h, --help                 Show this help.

Signals: SIGTERM/SIGINT stop gracefully (exit 0); SIGHUP reloads the configuration file.
Exit codes: 0 stopped cleanly, 1 failure (e.g. port in use, database unusable), 2 usage or
configuration error.
`;

export const command = defineCommand({
  name: 'serve',
  summary: 'run the KMS host',
  help: HELP,
  options: {
    config: { type: 'string', short: 'c' },
    listen: { type: 'string', short: 'l', multiple: true },
    'dns-listen': { type: 'string', multiple: true },
    'admin-listen': { type: 'string', multiple: true },
    'data-dir': { type: 'string', short: 'd' },
  },
  async run({ values, io }) {
    const overrides = {
      listen: values.listen ?? [],
      dnsListen: values['dns-listen'] ?? [],
      adminListen: values['admin-listen'] ?? [],
      dataDir: values['data-dir'] ?? '',
    };
    let config;
    try {
      config = applyOverrides(loadConfig(values.config), overrides);
    } catch (err) {
      return reportStartError(err, io);
    }
    // Buffered, asynchronous stdout: one write(2) per few kilobytes instead of one per request
    // line, gathered into batches first (logging/line-batch.ts). A timer flushes a quiet host's
    // lines within a quarter second; shutdown flushes the rest.
    // A reader that stops reading costs at most a bounded queue: later lines are dropped and
    // counted, and one line says so when it reads again; a failed write (EPIPE, ENOSPC) ends the
    // log, not the appliance (logging/serve-output.ts).
    const output = serveLogOutput(1, {
      onResumed: (dropped) =>
        log.warn(
          { event: 'log-lines-dropped', dropped: dropped.lines, since: new Date(dropped.sinceMs).toISOString() },
          'log lines dropped while stdout was not read',
        ),
      onClosed: (err) =>
        sayOnStderr(
          `kms-appliance serve: stdout ${err.code === 'EPIPE' ? 'closed' : 'failed'} (${err.code ?? err.message}); ` +
            'serving on without a log',
          journalPriority(3),
        ),
    });
    const destination = output.destination;
    const flushTimer = setInterval(() => destination.flush(), 250);
    flushTimer.unref();
    const flushLog = (): Promise<number> => output.close(SHUTDOWN_FLUSH_MS);
    const journalPriority = (p: number): number | undefined => (isJournalStream(2, io.env) ? p : undefined);
    // Under systemd each line carries its syslog priority, so journalctl -p warning works.
    const log = createLogger({ level: config.log.level, destination, syslogPrefix: isJournalStream(1, io.env) });
    let appliance: Appliance;
    try {
      appliance = await startAppliance(config, { log, env: io.env });
    } catch (err) {
      if (err instanceof KmsError) log.fatal({ code: err.code, ...err.details }, err.message);
      await flushLog();
      return reportStartError(err, io);
    }
    logStartup(log, appliance.config, {
      version: VERSION,
      ...(values.config ? { configFile: values.config } : {}),
      database: appliance.databaseFile,
      kms: appliance.kmsAddresses.map(formatListenAddress),
    });

    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        void appliance.stop().then(() => {
          logShutdown(log, { reason: signal });
          process.off('SIGHUP', reload);
          clearInterval(flushTimer);
          void flushLog().then((lost) => {
            if (lost > 0) sayOnStderr(`kms-appliance serve: ${lost} bytes of log not taken by stdout's reader at exit`, journalPriority(4));
            resolve(EXIT.OK);
          });
        });
      };
      const reload = (): void => {
        if (!values.config) {
          log.warn({ event: 'reload' }, 'SIGHUP: running on embedded defaults (no --config), nothing to reload');
          return;
        }
        try {
          const next = applyOverrides(loadConfig(values.config), overrides);
          const report = appliance.reload(next);
          log.info(
            { event: 'reload', configFile: values.config, applied: report.applied, needsRestart: report.needsRestart },
            report.needsRestart.length > 0
              ? `configuration reloaded; changes to ${report.needsRestart.join(', ')} take effect after a restart`
              : 'configuration reloaded',
          );
        } catch (err) {
          // Whatever the new file does (too big, an alias bomb, a FIFO), the running server stays.
          const lines = err instanceof ConfigError ? err.errors : [(err as Error).message];
          log.error(
            { event: 'reload', configFile: values.config, code: err instanceof KmsError ? err.code : undefined, errors: lines },
            'SIGHUP: new configuration rejected; the running configuration stays',
          );
        }
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', reload);
    });
  },
});

/** How long a stopping appliance waits for stdout's reader to take the last lines. */
const SHUTDOWN_FLUSH_MS = 2000;

/**
 * One line (or one per config error) on stderr, never a stack trace for an expected problem.
 * Under systemd the lines are errors for journald (priority 3), like the log's fatal line.
 */
function reportStartError(err: unknown, io: CommandIo): number {
  if (!(err instanceof KmsError)) throw err;
  const journal = isJournalStream(2, io.env);
  const say = (line: string): void => void io.stderr.write(`${journal ? journalLine(3, line) : line}\n`);
  const lines = err instanceof ConfigError ? err.errors : [err.message];
  for (const line of lines) say(`kms-appliance serve: ${line}`);
  if (!(err instanceof ConfigError)) say(`  (${err.code}) ${err.spec.explain}`);
  // Exit 2 for configuration: the unit's RestartPreventExitStatus=2 does not loop on a bad file.
  return err instanceof ConfigError || err.code.startsWith('KMS_ERR_CONFIG') ? EXIT.USAGE : EXIT.FAILURE;
}
