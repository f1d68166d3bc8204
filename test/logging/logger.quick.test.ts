// Log lines are JSON with the event 12290 fields, secrets never appear, and the level applies.
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, logActivation, logShutdown, logStartup, REDACTED } from '../../src/logging/logger';
import { isJournalStream, syslogPriority } from '../../src/logging/journal';
import { licenseStatusName } from '../../src/protocol/kms/license-status';
import { validateConfigText } from '../../src/config/load';
import type { ActivationOutcome } from '../../src/host/outcome';
import type { LogLevel } from '../../src/logging/logger';
import { SERVED_OUTCOME } from './served-outcome';

function capture(level: LogLevel = 'info') {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: createLogger({ level, destination }), lines, raw };
}

// Its own product names and time, so that the line is seen to carry what the outcome says.
const SERVED: ActivationOutcome = {
  ...SERVED_OUTCOME,
  kmsCountedId: 'aaaaaaaa-0000-0000-0000-000000000001',
  productGroupName: 'Windows 10/11 Volume',
  skuName: 'Windows 11 Enterprise',
  requestTimeMs: Date.parse('2024-03-01T10:00:00.000Z'),
  vm: false,
  licenseStatusName: undefined,
};

t.test('a served request is one info line with the 12290 fields', async (t) => {
  const { log, lines } = capture();
  logActivation(log, SERVED);
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 'info',
    msg: '12290 activation',
    event: 'kms-request-served',
    eventId: 12290,
    result: 'activated',
    errorCode: '0x00000000',
    clientAddress: '192.0.2.17',
    protocolVersion: '6.0',
    clientMachineId: SERVED.clientMachineId,
    clientFqdn: 'ws01.branch.example.org',
    clientTimestamp: '2024-03-01T10:00:00.000Z',
    vm: false,
    licenseState: 2,
    licenseStateName: 'initial grace (OOB)',
    timeToStateExpirationMinutes: 43200,
    minimumCountNeeded: 25,
    currentCount: 26,
    activationId: SERVED.activationId,
    sku: 'Windows 11 Enterprise',
    productGroup: 'Windows 10/11 Volume',
    application: 'Windows',
    epid: SERVED.epid,
  });
  t.equal(typeof lines[0]!.time, 'string');
  t.equal(lines[0]!.pid, process.pid);
});

t.test('a refusal is a warn line with the HRESULT as text and the explanation', async (t) => {
  const { log, lines } = capture();
  logActivation(log, {
    result: 'refused',
    hresult: 0xc004f042,
    code: 'KMS_ERR_KMS_RETAIL_GROUP',
    clientAddress: '2001:db8::17',
    protocolVersion: 5,
    clientMachineId: SERVED.clientMachineId,
    workstationName: 'ws02',
    explanation: 'The client has a retail product',
  });
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 'warn',
    msg: '12290 refused',
    event: 'kms-request-refused',
    eventId: 12290,
    result: 'refused',
    errorCode: '0xC004F042',
    code: 'KMS_ERR_KMS_RETAIL_GROUP',
    clientAddress: '2001:db8::17',
    protocolVersion: '5.0',
    clientFqdn: 'ws02',
    explanation: 'The client has a retail product',
  });
  t.notOk('currentCount' in lines[0]!, 'no count for a refusal');
});

t.test('a request refused before its version was known has no version field', async (t) => {
  const { log, lines } = capture();
  logActivation(log, { result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '192.0.2.1' });
  t.equal(lines[0]!.errorCode, '0x8007000D');
  t.notOk('protocolVersion' in lines[0]!);
});

t.test('licence state names are the words slmgr /dlv uses, shared with the CLI', async (t) => {
  t.equal(licenseStatusName(0), 'unlicensed');
  t.equal(licenseStatusName(1), 'licensed');
  t.equal(licenseStatusName(6), 'extended grace');
  t.equal(licenseStatusName(9), 'unknown (9)');
});

t.test('every line has a string event; a Windows event id moves to eventId', async (t) => {
  const { log, lines } = capture('debug');
  log.info({ event: 12294, domain: 'example.org' }, 'published');
  log.warn({ event: 12293, code: 'KMS_ERR_DNS_UPDATE_REFUSED' }, 'failed');
  log.info({ event: 12999 }, 'unknown windows event');
  log.warn({ code: 'KMS_ERR_DNS_LISTEN' }, 'no event given');
  log.info('plain');
  log.info({ event: 'startup' }, 'named');
  t.match(lines[0], { event: 'dns-published', eventId: 12294 });
  t.match(lines[1], { event: 'dns-publish-failed', eventId: 12293 });
  t.match(lines[2], { event: 'windows-event-12999', eventId: 12999 });
  t.match(lines[3], { event: 'dns-listen' });
  t.match(lines[4], { event: 'message' });
  t.match(lines[5], { event: 'startup' });
  for (const l of lines) t.equal(typeof l.event, 'string');
  t.notOk('eventId' in lines[3]!, 'no eventId where no Windows event applies');
});

t.test('under journald each line starts with its syslog priority', async (t) => {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const log = createLogger({ level: 'debug', destination, syslogPrefix: true });
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error('e');
  log.fatal('f');
  logActivation(log, { result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '192.0.2.1' });
  t.same(
    raw.map((l) => /^<(\d)>\{/.exec(l)?.[1]),
    ['7', '6', '4', '3', '2', '4'],
  );
  t.same(JSON.parse(raw[2]!.slice(3)).msg, 'w', 'the rest of the line is the JSON object');
});

t.test('the journal is detected by the device and inode systemd names, not by the variable alone', async (t) => {
  const dir = t.testdir({ f: 'x' });
  const fd = fs.openSync(path.join(dir, 'f'), 'r');
  t.teardown(() => fs.closeSync(fd));
  const st = fs.fstatSync(fd);
  t.ok(isJournalStream(fd, { JOURNAL_STREAM: `${st.dev}:${st.ino}` }));
  t.notOk(isJournalStream(fd, { JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }), 'another stream');
  t.notOk(isJournalStream(fd, {}), 'not under systemd');
  t.notOk(isJournalStream(fd, { JOURNAL_STREAM: 'garbage' }));
  t.equal(syslogPriority(40), 4);
  t.equal(syslogPriority(50), 3);
});

t.test('start-up logs the effective configuration with the TSIG secret redacted', async (t) => {
  const secret = 'c2VjcmV0c2VjcmV0c2VjcmV0';
  const config = validateConfigText(
    'dns:\n  registration:\n    enabled: true\n    server: 192.0.2.53\n    domains: [{domain: b.example.org}]\n' +
      `    tsig: {keyName: kms., secretBase64: ${secret}}\n`,
    'c.yaml',
  );
  const { log, lines, raw } = capture();
  logStartup(log, config, { version: '0.1.0', configFile: '/etc/kms-appliance/config.yaml', listening: ['0.0.0.0:1688'] });
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 'info',
    event: 'startup',
    version: '0.1.0',
    configFile: '/etc/kms-appliance/config.yaml',
    listening: ['0.0.0.0:1688'],
  });
  const logged = lines[0]!.config as typeof config;
  t.equal(logged.dns.registration.tsig.secretBase64, REDACTED);
  t.equal(logged.dns.registration.tsig.keyName, 'kms.');
  t.equal(logged.kms.renewalIntervalMinutes, 10080);
  t.notMatch(raw[0]!, secret);
  t.equal(config.dns.registration.tsig.secretBase64, secret, 'the running configuration keeps its secret');
});

t.test('start-up without a file says so', async (t) => {
  const { log, lines } = capture();
  logStartup(log, validateConfigText('', 'x'), { version: '0.1.0' });
  t.equal(lines[0]!.configFile, '(embedded defaults)');
});

t.test('secrets logged anywhere else are redacted by the logger itself', async (t) => {
  const { log, raw, lines } = capture();
  log.info({ tsig: { keyName: 'k', secretBase64: 'dG9wc2VjcmV0', secret: Buffer.from('x') } }, 'registration');
  log.info({ registration: { tsig: { secretBase64: 'dG9wc2VjcmV0' } } }, 'nested');
  t.notMatch(raw.join('\n'), 'dG9wc2VjcmV0');
  t.match(lines[0], { tsig: { keyName: 'k', secretBase64: REDACTED, secret: REDACTED } });
});

t.test('shutdown line', async (t) => {
  const { log, lines } = capture();
  logShutdown(log, { reason: 'SIGTERM', uptimeSeconds: 12 });
  t.match(lines[0], { level: 'info', event: 'shutdown', reason: 'SIGTERM', uptimeSeconds: 12, msg: 'kms-appliance stopped' });
});

t.test('the configured level filters', async (t) => {
  const { log, lines } = capture('warn');
  logActivation(log, SERVED);
  logActivation(log, { result: 'refused', hresult: 0xc004f06c, clientAddress: '192.0.2.9' });
  log.debug('hidden');
  t.equal(lines.length, 1);
  t.equal(lines[0]!.msg, '12290 refused');
});

t.test('client-chosen text stays escaped in the log: no raw control, bidi or newline', async (t) => {
  const { log, raw, lines } = capture();
  const name = 'evil\u202egpj.exe\x1b[2J\nfake {"level":"info"}\u0085';
  logActivation(log, { ...SERVED, workstationName: name });
  t.equal(raw.length, 1, 'one line, whatever the name holds');
  t.notMatch(raw[0]!, /[\x00-\x1f\x7f-\x9f\u202e]/);
  t.match(raw[0]!, '\\u202e');
  t.equal(lines[0]!.clientFqdn, name, 'the JSON value is the exact name');
});
