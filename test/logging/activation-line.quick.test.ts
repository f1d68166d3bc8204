// The request line written by the dedicated serializer is the line pino writes for the same
// outcome: same fields, same order, same escaping, same envelope (level, time, pid, msg) and the
// same syslog prefix; for hostile workstation names as well as ordinary ones.
import { Writable } from 'node:stream';
import t from 'tap';
import type { ActivationOutcome } from '../../src/host/outcome';
import { activationFields, activationJsonFields, MSG_REFUSED, MSG_SERVED } from '../../src/logging/activation-line';
import { batchLines, type BufferedDestination } from '../../src/logging/line-batch';
import { createLogger, logActivation, type LogLevel } from '../../src/logging/logger';
import { seededRandom } from '../prng';
import { SERVED_OUTCOME } from './served-outcome';

/**
 * A logger over a plain stream (the line is made as a string), or over serve's line batch (the
 * line is written into the batch's buffer).
 */
function capture(level: LogLevel = 'info', syslogPrefix = false, batched = false) {
  const raw: string[] = [];
  const take = (chunk: Buffer | string) => raw.push(...chunk.toString().split('\n').filter(Boolean));
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      take(chunk);
      done();
    },
  });
  const sink: BufferedDestination = { write: take, flush: (cb) => cb?.(), flushSync: () => {} };
  // A batch of one byte: every line is handed on as soon as it is written.
  const batch = batchLines(sink, 1);
  const log = createLogger({ level, destination: batched ? batch : stream, syslogPrefix });
  return { log, raw };
}

const DESTINATIONS = [
  ['a stream', false],
  ["serve's line batch", true],
] as const;

const SERVED = SERVED_OUTCOME;

const OUTCOMES: [string, ActivationOutcome][] = [
  ['served', SERVED],
  ['served, no licence state name given (looked up)', { ...SERVED, licenseStatusName: undefined, licenseStatus: 5, vm: false }],
  [
    'below the threshold, with its explanation',
    { ...SERVED, result: 'below-threshold', currentCount: 3, explanation: 'The host counts 3 machines for Windows; "needs" 25.' },
  ],
  [
    'refused before the version was known',
    { result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '192.0.2.1' },
  ],
  [
    'refused with the request decoded',
    {
      ...SERVED,
      result: 'refused',
      hresult: 0xc004f042,
      code: 'KMS_ERR_KMS_RETAIL_GROUP',
      clientAddress: '2001:db8::17',
      protocolVersion: 5,
      currentCount: undefined,
      epid: undefined,
      explanation: 'Windows 10/11 Retail is a retail product group.\nThe client shows 0xC004F042.',
    },
  ],
  ['a count that is not a number', { ...SERVED, currentCount: Number.NaN, requiredClientCount: Number.POSITIVE_INFINITY }],
  ['a client clock before 1970', { ...SERVED, requestTimeMs: -11_644_473_600_000 }],
  ['a client clock Date cannot show (no clientTimestamp)', { ...SERVED, requestTimeMs: 9e15 }],
];

const HOSTILE_NAMES = [
  '',
  'quote"and\\backslash',
  '"'.repeat(50),
  'evil\u202egpj.exe\x1b[2J\nfake {"level":"info"}\u0085',
  `${'\x00\x01\x07\x08\t\n\x0b\x0c\r\x1f'}DEL\x7f C1\x80\x9f`,
  'zero\u200bwidth\u200f\u2028line\u2029para\u2066isolate\u2069\ufeffbom\ufff9',
  'soft\u00adhyphen arabic\u061cmark',
  'пк-бухгалтерия.филиал.пример',
  '経理部のパソコン',
  'emoji 💻 and ñ, é, ß',
  `long-${'a'.repeat(120)}"${'b'.repeat(40)}`,
  '\\u202e written out as text',
  'tag\u{e0041}\u{e0042}characters\u{e007f} and mongolian\u180evowel',
];

/** The line with its time replaced, so two lines written a millisecond apart compare. */
function timeless(line: string): string {
  return line.replace(/"time":"[^"]*"/, '"time":"T"');
}

function pinoLine(log: ReturnType<typeof capture>['log'], o: ActivationOutcome): void {
  if (o.result === 'refused') log.warn(activationFields(o), MSG_REFUSED);
  else log.info(activationFields(o), MSG_SERVED);
}

for (const [dest, batched] of DESTINATIONS) {
  t.test(`every outcome's line is byte for byte pino's line (${dest})`, async (t) => {
    const cases: [string, ActivationOutcome][] = [
      ...OUTCOMES,
      ...HOSTILE_NAMES.map((name, i): [string, ActivationOutcome] => [`hostile name ${i}`, { ...SERVED, workstationName: name }]),
      ...HOSTILE_NAMES.map((name, i): [string, ActivationOutcome] => [
        `hostile name ${i} in a refusal`,
        { result: 'refused', hresult: 0xc004f06c, code: 'KMS_ERR_KMS_TIME_SKEW', clientAddress: '192.0.2.9', workstationName: name },
      ]),
    ];
    for (const [what, o] of cases) {
      const { log, raw } = capture('info', false, batched);
      logActivation(log, o);
      pinoLine(log, o);
      t.equal(raw.length, 2, `${what}: one line each`);
      t.equal(timeless(raw[0]!), timeless(raw[1]!), what);
      t.same(JSON.parse(raw[0]!), { ...JSON.parse(raw[1]!), time: JSON.parse(raw[0]!).time }, `${what}: the same JSON value`);
      t.notMatch(raw[0]!, /[\x00-\x1f\x7f-\x9f\u202e\u2028\p{Cf}]/u, `${what}: nothing a terminal acts on, nothing invisible`);
    }
  });
}

for (const [dest, batched] of DESTINATIONS) {
  t.test(`random workstation names: the same line as pino, the exact name back (${dest})`, async (t) => {
    const seed = 0x5e71a1;
    const random = seededRandom(seed);
    // Mostly ASCII, with controls, quotes, backslashes, bidi and other characters mixed in.
    const alphabet = 'abcXYZ019.-_ "\\\x00\x1f\x7f\x85\u00ad\u200e\u202a\u202e\u2028\u2066\ufeffé日💻';
    const chars = [...alphabet];
    for (let n = 0; n < 300; n++) {
      let name = '';
      const length = Math.floor(random() * 140);
      for (let i = 0; i < length; i++) name += chars[Math.floor(random() * chars.length)];
      const { log, raw } = capture('info', false, batched);
      const o = { ...SERVED, workstationName: name };
      logActivation(log, o);
      pinoLine(log, o);
      if (timeless(raw[0]!) !== timeless(raw[1]!)) {
        t.fail(`seed ${seed} name ${n}: ${JSON.stringify(name)}\n${raw[0]}\n${raw[1]}`);
        return;
      }
      t.equal(JSON.parse(raw[0]!).clientFqdn, name);
    }
  });
}

for (const [dest, batched] of DESTINATIONS) {
  t.test(`the envelope: pino's level, ISO time, pid and message, at the configured level (${dest})`, async (t) => {
    const { log, raw } = capture('warn', false, batched);
    const before = Date.now();
    logActivation(log, SERVED);
    logActivation(log, OUTCOMES[3]![1]);
    const after = Date.now();
    t.equal(raw.length, 1, 'a served line is below warn');
    const line = JSON.parse(raw[0]!) as Record<string, unknown>;
    t.match(line, { level: 'warn', pid: process.pid, msg: MSG_REFUSED, event: 'kms-request-refused', eventId: 12290 });
    t.match(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const ms = Date.parse(String(line.time));
    t.ok(ms >= before && ms <= after, 'the time of writing');
    const silent = capture('silent', false, batched);
    logActivation(silent.log, OUTCOMES[3]![1]);
    t.equal(silent.raw.length, 0, 'silent writes nothing');
  });
}

for (const [dest, batched] of DESTINATIONS) {
  t.test(`under journald the line carries the priority of its level, as pino writes it (${dest})`, async (t) => {
    const { log, raw } = capture('info', true, batched);
    logActivation(log, SERVED);
    logActivation(log, OUTCOMES[3]![1]);
    log.info('in between');
    pinoLine(log, SERVED);
    t.same(
      raw.map((l) => l.slice(0, 3)),
      ['<6>', '<4>', '<6>', '<6>'],
    );
    t.equal(timeless(raw[0]!), timeless(raw[3]!));
  });
}

t.test("products seen again: the same line as pino, and a change in any product value is written, not the last one's", async (t) => {
  // The line reuses the product members' bytes of recent lines (16 slots); 24 products overflow them.
  const products = Array.from(
    { length: 24 },
    (_, p): ActivationOutcome => ({
      ...SERVED,
      activationId: `${p.toString(16).padStart(8, '0')}-${SERVED.activationId!.slice(9)}`,
      skuName: `Product ${p}`,
      epid: `${SERVED.epid!.slice(0, -1)}${p % 10}`,
    }),
  );
  const fields = ['activationId', 'skuName', 'kmsCountedId', 'productGroupName', 'applicationId', 'applicationName', 'epid'] as const;
  const seed = 0x51075;
  const random = seededRandom(seed);
  for (let n = 0; n < 400; n++) {
    let o = products[Math.floor(random() * (random() < 0.5 ? 3 : products.length))]!;
    if (random() < 0.3) {
      // One value differs from a product seen before: by one character, or absent.
      const field = fields[Math.floor(random() * fields.length)]!;
      const value = o[field];
      o = { ...o, [field]: random() < 0.3 || value === undefined ? undefined : `${value.slice(0, -1)}#` };
    }
    const { log, raw } = capture('info', false, true);
    logActivation(log, o);
    pinoLine(log, o);
    if (timeless(raw[0]!) !== timeless(raw[1]!)) {
      t.fail(`seed ${seed} line ${n}:\n${raw[0]}\n${raw[1]}`);
      return;
    }
  }
  t.equal(JSON.parse(`{${activationJsonFields(products[5]!).slice(1)}}`).sku, 'Product 5', 'the string form too');
});

t.test("a child logger's bindings stay in the line (pino writes it)", async (t) => {
  const { log, raw } = capture();
  logActivation(log.child({ listener: '127.0.0.1:1688' }), SERVED);
  t.match(JSON.parse(raw[0]!), { listener: '127.0.0.1:1688', event: 'kms-request-served', clientFqdn: SERVED.workstationName });
});

for (const [dest, batched] of DESTINATIONS) {
  t.test(`a lone surrogate keeps its value as an escape (pino wrote it raw, which UTF-8 replaced) (${dest})`, async (t) => {
    const name = 'half\ud83d-pair\udcbb';
    const { log, raw } = capture('info', false, batched);
    logActivation(log, { ...SERVED, workstationName: name });
    t.match(raw[0]!, '\\ud83d');
    t.equal(JSON.parse(raw[0]!).clientFqdn, name);
  });
}
