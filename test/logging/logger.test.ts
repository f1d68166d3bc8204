// Log lines are JSON with the event 12290 fields, secrets never appear, and the level applies.
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, logActivation, logShutdown, logStartup, licenseStateName, REDACTED } from '../../src/logging/logger';
import { validateConfigText } from '../../src/config/load';
import type { ActivationOutcome } from '../../src/host/outcome';
import type { LogLevel } from '../../src/logging/logger';

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

const SERVED: ActivationOutcome = {
  result: 'activated',
  hresult: 0,
  clientAddress: '192.0.2.17',
  protocolVersion: 6,
  clientMachineId: 'a4b1a2b3-0c0d-4e5f-8a9b-0c1d2e3f4a5b',
  previousClientMachineId: '00000000-0000-0000-0000-000000000000',
  workstationName: 'ws01.branch.example.org',
  applicationId: '55c92734-d682-4d71-983e-d6ec3f16059f',
  applicationName: 'Windows',
  kmsCountedId: 'aaaaaaaa-0000-0000-0000-000000000001',
  productGroupName: 'Windows 10/11 Volume',
  activationId: '73111121-5638-40f6-bc11-f1d7b0d64300',
  skuName: 'Windows 11 Enterprise',
  requiredClientCount: 25,
  requestTime: '2024-03-01T10:00:00.000Z',
  vm: false,
  licenseStatus: 2,
  bindingExpirationMinutes: 43200,
  currentCount: 26,
  epid: '03612-00206-556-123727-03-1033-20348.0000-2972021',
};

t.test('a served request is one info line with the 12290 fields', async (t) => {
  const { log, lines } = capture();
  logActivation(log, SERVED);
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 'info',
    msg: '12290 activation',
    event: 12290,
    result: 'activated',
    errorCode: '0x00000000',
    clientAddress: '192.0.2.17',
    protocolVersion: '6.0',
    clientMachineId: SERVED.clientMachineId,
    clientFqdn: 'ws01.branch.example.org',
    clientTimestamp: '2024-03-01T10:00:00.000Z',
    vm: false,
    licenseState: 2,
    licenseStateName: 'Initial grace period',
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
    event: 12290,
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

t.test('licence state names', async (t) => {
  t.equal(licenseStateName(0), 'Unlicensed');
  t.equal(licenseStateName(1), 'Licensed');
  t.equal(licenseStateName(6), 'Extended grace period');
  t.equal(licenseStateName(9), 'Unknown (9)');
});

t.test('start-up logs the effective configuration with the TSIG secret redacted', async (t) => {
  const secret = 'c2VjcmV0c2VjcmV0c2VjcmV0';
  const config = validateConfigText(
    `dns:\n  registration:\n    enabled: true\n    server: 192.0.2.53\n    domains: [{domain: b.example.org}]\n    tsig: {keyName: kms., secretBase64: ${secret}}\n`,
    'c.yaml',
  );
  const { log, lines, raw } = capture();
  logStartup(log, config, { version: '0.1.0', configFile: '/etc/kms-appliance/config.yaml', listening: ['0.0.0.0:1688'] });
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 'info', event: 'startup', version: '0.1.0', configFile: '/etc/kms-appliance/config.yaml', listening: ['0.0.0.0:1688'] });
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
