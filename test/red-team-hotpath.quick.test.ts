// Red team of the allocation round's hot paths (issue 14): the byte-written log line and journal
// line, the line batch in front of sonic-boom, the connection's outbox at the reply gate, the
// cipher's own CBC chaining and the repeated-GUID texts. Each part checks the rewrite against an
// independent reference (pino's line, JSON.stringify, the block-at-a-time CBC, bytesToGuid) with
// hostile input, or a behaviour the code it replaced had.
import t from 'tap';
import type { ActivationOutcome } from '../src/host/outcome';
import { JSON_NUMBER_BOUND, JsonBytes } from '../src/json-bytes';
import { activationFields, MSG_REFUSED, MSG_SERVED } from '../src/logging/activation-line';
import { batchLines, type BufferedDestination } from '../src/logging/line-batch';
import { createLogger, logActivation } from '../src/logging/logger';
import { bytesToGuid, RepeatedGuids } from '../src/protocol/guid';
import { decodeRequestBase } from '../src/protocol/kms/request-base';
import { V4_CIPHER, V5_CIPHER, V6_CIPHER } from '../src/protocol/kms/ciphers';
import { cbcDecryptInPlace, cbcEncryptInPlace } from '../src/protocol/kms/cbc';
import type { BlockCipher } from '../src/protocol/kms/rijndael';
import { encodeRequestStub } from '../src/protocol/ndr/stub';
import { PTYPE, OPNUM_REQUEST_ACTIVATION } from '../src/protocol/rpc/constants';
import { encodeRequestPdu } from '../src/protocol/rpc/request';
import { KmsServer } from '../src/server/kms-server';
import { GroupCommitGate, type ReplyGate } from '../src/server/reply-gate';
import { SILENT_LOG } from '../src/server/types';
import { decodeRecord, RecordLines, type JournaledWrite } from '../src/store/journal-records';
import { seededRandom } from './prng';
import { SERVED_OUTCOME } from './logging/served-outcome';
import { kmsBindNdr32 } from './server/kms-bind';
import { connectPeer } from './server/peer';
import { testServerSettings } from './server/settings';
import { until, within } from './wait';

// ---- hostile text -------------------------------------------------------------------------------

/** Characters that take the most bytes each: controls, C1, bidi, U+2028, lone surrogates, quotes. */
const WORST = ['\x00', '\x1f', '"', '\\', '\x7f', '\x85', '\u202e', '\u2028', '\u2066', '\ufeff', '\ud800', '\udfff', '\u00ad'];
const MIXED = [...WORST, 'a', 'Z', '9', '.', '-', ' ', 'é', '日', '💻', '\ud83d\udcbb'];

function text(random: () => number, alphabet: readonly string[], max: number): string {
  let s = '';
  const n = Math.floor(random() * (max + 1));
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(random() * alphabet.length)];
  return s;
}

/** Numbers whose JSON text is long, negative, fractional, huge, or not JSON at all. */
const NUMBERS = [
  -0.0000012345678901234567,
  -1.2345678901234567e-100,
  -123456789012345680000,
  -Number.MAX_VALUE,
  -Number.MIN_VALUE,
  Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 2,
  -Number.MAX_SAFE_INTEGER,
  -0,
  0.1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  4294967295,
];

// ---- the log line: bounds ------------------------------------------------------------------------

/**
 * A reserving destination that gives exactly the room asked for and a guard after it, so a write
 * past the reservation (which a typed array would drop silently) shows.
 */
function exactRoom() {
  const lines: string[] = [];
  let overrun = 0;
  const GUARD = 64;
  let buf = Buffer.alloc(0);
  let reserved = 0;
  const dest = {
    write(line: string | Buffer): void {
      lines.push(line.toString());
    },
    flush: (cb?: (err?: Error) => void) => cb?.(),
    flushSync: () => {},
    reserve(bytes: number): JsonBytes {
      reserved = bytes;
      buf = Buffer.alloc(bytes + GUARD, 0xee);
      return new JsonBytes(buf, 0);
    },
    commit(line: JsonBytes): void {
      if (line.at > reserved || buf.subarray(reserved).some((b) => b !== 0xee)) overrun++;
      lines.push(buf.toString('utf8', 0, Math.min(line.at, reserved)));
    },
  };
  return { dest, lines, overruns: () => overrun };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The line with its time replaced, and a lone surrogate as its escape: the one difference from
 * pino on purpose (activation-line.ts), and not one a client can cause (the workstation name's
 * decoder replaces them).
 */
function timeless(line: string): string {
  return line.replace(/"time":"[^"]*"/, '"time":"T"').replace(LONE_SURROGATE, (ch) => `\\u${ch.charCodeAt(0).toString(16)}`);
}

function hostileOutcome(random: () => number, alphabet: readonly string[], max: number): ActivationOutcome {
  const s = () => text(random, alphabet, max);
  const n = () => NUMBERS[Math.floor(random() * NUMBERS.length)]!;
  const refused = random() < 0.5;
  return {
    result: refused ? 'refused' : random() < 0.5 ? 'activated' : 'below-threshold',
    hresult: refused ? 0xc004f06c : 0,
    code: refused ? s() : undefined,
    clientAddress: s(),
    protocolVersion: 6,
    clientMachineId: s(),
    previousClientMachineId: s(),
    workstationName: s(),
    applicationId: s(),
    applicationName: s(),
    kmsCountedId: s(),
    productGroupName: s(),
    activationId: s(),
    skuName: s(),
    requiredClientCount: n(),
    requestTimeMs: [-8.64e15, 8.64e15, -62198755200001, 253402300800000, n()][Math.floor(random() * 5)],
    vm: random() < 0.5,
    licenseStatus: n(),
    licenseStatusName: random() < 0.5 ? undefined : s(),
    bindingExpirationMinutes: n(),
    currentCount: n(),
    epid: s(),
    explanation: s(),
  };
}

for (const syslogPrefix of [false, true]) {
  t.test(`the request line never writes past what it reserved, and is pino's line (journald prefix ${syslogPrefix})`, async (t) => {
    const seed = syslogPrefix ? 0x7ed1 : 0x7ed0;
    const random = seededRandom(seed);
    const { dest, lines, overruns } = exactRoom();
    const log = createLogger({ level: 'info', destination: dest, syslogPrefix });
    let same = 0;
    for (let i = 0; i < 300; i++) {
      // Every third outcome is all worst-case text (the bound's own worst case).
      const o = hostileOutcome(random, i % 3 === 0 ? WORST : MIXED, i % 3 === 0 ? 64 : 40);
      lines.length = 0;
      logActivation(log, o);
      if (o.result === 'refused') log.warn(activationFields(o), MSG_REFUSED);
      else log.info(activationFields(o), MSG_SERVED);
      if (lines.length !== 2 || timeless(lines[0]!) !== timeless(lines[1]!)) {
        const [a = '', b = ''] = lines.map(timeless);
        let d = 0;
        while (d < a.length && a[d] === b[d]) d++;
        t.fail(
          `seed ${seed} outcome ${i}: ${lines.length} lines, first difference at ${d}: ` +
            JSON.stringify([a.slice(d - 60, d + 60), b.slice(d - 60, d + 60)]),
        );
        return;
      }
      same++;
    }
    t.equal(same, 300, "every hostile outcome's byte line equals pino's line");
    t.equal(overruns(), 0, 'every line within its reservation (the guard bytes untouched)');
  });
}

t.test("JsonBytes.number: no number's text is longer than JSON_NUMBER_BOUND, and it is JSON.stringify's", async (t) => {
  const random = seededRandom(0x4e4d);
  const f64 = new Float64Array(1);
  const u32 = new Uint32Array(f64.buffer);
  const samples = [...NUMBERS];
  for (let i = 0; i < 20000; i++) {
    u32[0] = Math.floor(random() * 2 ** 32);
    u32[1] = Math.floor(random() * 2 ** 32);
    samples.push(f64[0]!);
    samples.push(-(random() * 10 ** Math.floor(random() * 30 - 12)));
  }
  let bad = 0;
  for (const n of samples) {
    const buf = Buffer.alloc(JSON_NUMBER_BOUND + 8, 0xee);
    const w = new JsonBytes(buf, 0);
    w.number(n);
    const expected = Number.isFinite(n) ? JSON.stringify(n) : 'null';
    if (w.at > JSON_NUMBER_BOUND || buf.toString('latin1', 0, w.at) !== expected || buf[JSON_NUMBER_BOUND] !== 0xee) {
      if (bad++ < 5) t.fail(`${n}: ${buf.toString('latin1', 0, w.at)} (${w.at} bytes)`);
    }
  }
  t.equal(bad, 0, `${samples.length} numbers`);
});

t.test("an undecodable flood's lines, suppressedSimilar included, are pino's lines", async (t) => {
  const { dest, lines, overruns } = exactRoom();
  const log = createLogger({ level: 'info', destination: dest });
  // A child logger's line is pino's (no serializer of its own), with its own flood counter.
  const child = log.child({});
  const o: ActivationOutcome = { result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '' };
  for (let i = 0; i < 60; i++) {
    const each = { ...o, clientAddress: `192.0.2.${i % 30}` };
    logActivation(log, each);
    logActivation(child, each);
  }
  // A minute later the next line says how many were left out.
  const realNow = Date.now;
  const later = realNow() + 61_000;
  Date.now = () => later;
  try {
    logActivation(log, { ...o, clientAddress: '198.51.100.1' });
    logActivation(child, { ...o, clientAddress: '198.51.100.1' });
  } finally {
    Date.now = realNow;
  }
  t.ok(lines.length >= 40, `${lines.length} lines written`);
  const mine = lines.filter((_, i) => i % 2 === 0).map(timeless);
  const pinos = lines.filter((_, i) => i % 2 === 1).map(timeless);
  t.same(mine, pinos, 'the same lines');
  t.ok(
    mine.some((l) => l.includes('"suppressedSimilar":')),
    'some carry suppressedSimilar',
  );
  t.equal(overruns(), 0);
});

// ---- the line batch ------------------------------------------------------------------------------

/**
 * sonic-boom in its Buffer mode keeps each Buffer it is handed until its asynchronous write
 * completes: this destination keeps them all, and a snapshot of each as it was handed over.
 */
function holdingDestination() {
  const held: Buffer[] = [];
  const snapshots: Buffer[] = [];
  const dest: BufferedDestination = {
    write(line: string | Buffer): void {
      if (typeof line === 'string') throw new Error('a string reached a Buffer-mode destination');
      held.push(line);
      snapshots.push(Buffer.from(line));
    },
    flush: (cb) => cb?.(),
    flushSync: () => {},
  };
  return { dest, held, snapshots };
}

for (const syslogPrefix of [false, true]) {
  t.test(`a production-size batch: request lines, pino's lines and huge lines, in order and whole (prefix ${syslogPrefix})`, async (t) => {
    const random = seededRandom(syslogPrefix ? 0xba7c1 : 0xba7c0);
    const { dest, held, snapshots } = holdingDestination();
    const batch = batchLines(dest);
    const log = createLogger({ level: 'info', destination: batch, syslogPrefix });
    const expected: string[] = [];
    for (let i = 0; i < 600; i++) {
      const r = random();
      if (r < 0.6) {
        const o = { ...SERVED_OUTCOME, workstationName: text(random, MIXED, 64), currentCount: i };
        logActivation(log, o);
        expected.push(`served ${i}`);
      } else if (r < 0.75) {
        // Longer than a batch's whole buffer: goes on as a string line.
        const o = { ...SERVED_OUTCOME, explanation: text(random, MIXED, 6000), currentCount: i };
        logActivation(log, o);
        expected.push(`served ${i}`);
      } else if (r < 0.9) {
        log.warn({ event: 'other', n: i, note: text(random, MIXED, 300) }, 'a line of pino');
        expected.push(`other ${i}`);
      } else {
        log.info({ event: 'big', n: i, blob: 'x'.repeat(Math.floor(random() * 40000)) }, 'a huge line of pino');
        expected.push(`big ${i}`);
      }
    }
    batch.flush();
    const all = Buffer.concat(held).toString('utf8');
    t.ok(all.endsWith('\n'), 'the output ends with a whole line');
    const got = all
      .slice(0, -1)
      .split('\n')
      .map((line) => {
        if (syslogPrefix) {
          if (!/^<[46]>\{/.test(line)) t.fail(`no priority: ${line.slice(0, 80)}`);
          line = line.slice(3);
        }
        const v = JSON.parse(line) as { event: string; n?: number; currentCount?: number };
        return v.event === 'kms-request-served' ? `served ${v.currentCount}` : `${v.event} ${v.n}`;
      });
    t.same(got, expected, 'every line once, in the order written');
    let changed = 0;
    for (let i = 0; i < held.length; i++) if (!held[i]!.equals(snapshots[i]!)) changed++;
    t.equal(changed, 0, `${held.length} handed-over buffers never written again`);
  });
}

// ---- the request journal's lines -----------------------------------------------------------------

/**
 * A write with hostile text wherever a client chooses text (workstation, address: up to the 256
 * UTF-16 units a line may hold, quotes, controls, bidi, lone surrogates), and everything else as
 * the host writes it (lowercase GUIDs, codes, numbers in range): a line this host could write.
 */
function hostileWrite(random: () => number): JournaledWrite {
  const alphabet = random() < 0.5 ? MIXED : WORST;
  const s = () => text(random, alphabet, 100).slice(0, 256);
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');
  const guid = () => `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`;
  const u32 = () => Math.floor(random() * 0x1_0000_0000);
  const time = () => Math.floor(random() * 2e12);
  const kind = random();
  if (kind < 0.4) {
    return {
      kind: 'served',
      row: {
        application: guid(),
        cmid: guid(),
        now: time(),
        counted: null,
        workstation: s(),
        sku: guid(),
        kms_group: guid(),
        license_status: u32(),
        protocol_version: u32(),
        client_address: s(),
        vm: random() < 0.5 ? 0 : 1,
        last_hresult: 0,
        required_count: u32(),
      },
      previous: random() < 0.5 ? undefined : guid(),
      previousCmid: random() < 0.5 ? '' : guid(),
      requestTimeMs: Math.floor((random() - 0.5) * 1e15),
      currentCount: u32(),
      persistRequired: u32(),
      servedMs: time(),
    };
  }
  if (kind < 0.8) {
    const event = {
      time_ms: time(),
      served: 0,
      hresult: u32(),
      code: 'KMS_ERR_KMS_TIME_SKEW',
      application: random() < 0.2 ? '' : guid(),
      kms_group: random() < 0.2 ? '' : guid(),
      sku: random() < 0.2 ? '' : guid(),
      cmid: random() < 0.2 ? '' : guid(),
      previous_cmid: random() < 0.5 ? '' : guid(),
      workstation: s(),
      required_count: u32(),
      license_status: u32(),
      vm: random() < 0.5 ? 0 : 1,
      protocol_version: u32(),
      client_address: s(),
      request_time_ms: Math.floor((random() - 0.5) * 1e15),
      current_count: 0,
    };
    return { kind: 'refused', row: undefined, event };
  }
  return { kind: 'setting', key: `epid:${u32()}`, value: s() };
}

/** What a replay compares: the write's JSON value (undefined members left out, as a line cannot hold them). */
function comparable(w: JournaledWrite): unknown {
  if (w.kind === 'served') return { ...w, row: { ...w.row, counted: w.row.now } };
  return JSON.parse(JSON.stringify(w)) as unknown;
}

t.test("RecordLines over turns that grow and shrink its buffer: each line is JSON.stringify's text and decodes to its write", async (t) => {
  const seed = 0x10a7;
  const random = seededRandom(seed);
  const lines = new RecordLines();
  let seq = 0;
  let checked = 0;
  for (let turn = 0; turn < 60; turn++) {
    const writes: [number, JournaledWrite][] = [];
    // Some turns are floods (the buffer grows past what it keeps), most are small.
    const big = turn % 7 === 3;
    const count = 1 + Math.floor(random() * (big ? 400 : 12));
    for (let i = 0; i < count; i++) {
      const w = hostileWrite(random);
      writes.push([++seq, w]);
      lines.add(seq, w);
    }
    const taken = lines.take();
    const snapshot = Buffer.from(taken);
    const text = snapshot.toString('utf8');
    t.ok(text.endsWith('\n'), `turn ${turn}: whole lines`);
    const got = text.slice(0, -1).split('\n');
    if (got.length !== writes.length) {
      t.fail(`seed ${seed} turn ${turn}: ${got.length} lines for ${writes.length} writes`);
      return;
    }
    for (let i = 0; i < got.length; i++) {
      const line = got[i]!;
      const back = decodeRecord(line);
      const [s, w] = writes[i]!;
      if (
        JSON.stringify(JSON.parse(line)) !== line ||
        back?.seq !== s ||
        JSON.stringify(comparable(back.write)) !== JSON.stringify(comparable(w))
      ) {
        t.fail(`seed ${seed} turn ${turn} line ${i}: ${line.slice(0, 300)}`);
        return;
      }
      checked++;
    }
  }
  t.ok(checked > 60, `${checked} lines over 60 turns, each JSON.stringify's text decoding to its write`);
});

// ---- the connection's outbox at the gate ---------------------------------------------------------

/** A gate that holds everything until released; release() runs each entry and keeps going past one that throws. */
class HeldGate implements ReplyGate {
  readonly held: (() => void)[] = [];
  private holding = true;
  errors = 0;
  run(send: () => void): void {
    if (this.holding) this.held.push(send);
    else send();
  }
  release(): void {
    this.holding = false;
    for (const send of this.held.splice(0)) {
      try {
        send();
      } catch {
        this.errors++;
      }
    }
  }
  hold(): void {
    this.holding = true;
  }
}

const REQUEST = (callId: number): Buffer =>
  encodeRequestPdu({ callId, contextId: 0, opnum: OPNUM_REQUEST_ACTIVATION, stub: encodeRequestStub(Buffer.alloc(100, 1), 'ndr32') });

/** The call ids of the response PDUs in what a peer received. */
function responses(bytes: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at + 16 <= bytes.length; at += bytes.readUInt16LE(at + 8)) {
    if (bytes[at + 2] === PTYPE.RESPONSE) out.push(bytes.readUInt32LE(at + 12));
  }
  return out;
}

t.test("an outcome report that throws once does not hold back the connection's later replies", async (t) => {
  const gate = new HeldGate();
  const errors: string[] = [];
  let reports = 0;
  const reported: number[] = [];
  let n = 0;
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings: testServerSettings(),
    handler: () => ({ response: Buffer.alloc(40, 7), hresult: 0, outcome: { n: ++n } as never }),
    log: { ...SILENT_LOG, error: (_obj, msg) => errors.push(msg ?? '') },
    gate,
    onOutcome: (o) => {
      if (reports++ === 0) throw new Error('a broken log destination');
      reported.push((o as unknown as { n: number }).n);
    },
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  const peer = await connectPeer(bound!.port);
  const socket = peer.socket;
  t.teardown(() => socket.destroy());
  const onData = { on: [{ emitter: socket, events: ['data'] }] };
  socket.write(kmsBindNdr32(1));
  await until(() => peer.data().length > 0 || undefined, 'the bind_ack', onData);
  socket.write(REQUEST(2));
  await until(() => gate.held.length === 1 || undefined, "the first call's outbox at the gate", { everyMs: 5 });
  gate.release();
  await until(() => responses(peer.data()).length === 1 || undefined, 'the first response', onData);
  t.equal(reports, 1, 'the report was made (and threw)');
  t.match(errors, [/internal error while reporting a request/], 'said loudly in the log');
  // The next call of the same connection, with the gate holding and then releasing again.
  gate.hold();
  socket.write(REQUEST(3));
  await within(
    until(() => gate.held.length === 1 || undefined, "the second call's outbox at the gate", { everyMs: 5 }),
    'the second call waiting at the gate',
    3000,
  ).catch(() => undefined);
  gate.release();
  const got = await within(
    until(() => (responses(peer.data()).length === 2 ? responses(peer.data()) : undefined), 'the second response', onData),
    'the second response',
    3000,
  ).catch(() => responses(peer.data()));
  t.same(got, [2, 3], 'both calls answered, in order');
  t.same(reported, [2], "the second call's outcome reported");
  t.equal(gate.errors, 0, 'nothing thrown at the gate (the entries after it run)');
});

t.test('pipelined calls through the group-commit gate: every reply and report once, in order, then the FIN honoured', async (t) => {
  const store = { batches: 0, beginBatch: () => true, commitBatch: () => void store.batches++ };
  const gate = new GroupCommitGate(store);
  const reported: number[] = [];
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings: testServerSettings(),
    handler: (message: Buffer) => {
      gate.enter();
      const n = message[0]!;
      return { response: Buffer.alloc(40, n), hresult: 0, outcome: { n } as never };
    },
    log: SILENT_LOG,
    gate,
    onOutcome: (o) => reported.push((o as unknown as { n: number }).n),
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  const peer = await connectPeer(bound!.port);
  const socket = peer.socket;
  t.teardown(() => socket.destroy());
  // More PDUs in one write than one turn handles (64): the rest wait a turn; the FIN comes with them.
  const calls = 150;
  const pdus = [kmsBindNdr32(1)];
  for (let i = 0; i < calls; i++) {
    pdus.push(
      encodeRequestPdu({
        callId: 10 + i,
        contextId: 0,
        opnum: OPNUM_REQUEST_ACTIVATION,
        stub: encodeRequestStub(Buffer.alloc(100, i & 0xff), 'ndr32'),
      }),
    );
  }
  socket.end(Buffer.concat(pdus));
  await within(peer.closed, 'the close after the last reply');
  const expected = Array.from({ length: calls }, (_, i) => 10 + i);
  t.same(responses(peer.data()), expected, 'every call answered once, in order');
  t.same(
    reported,
    expected.map((c) => (c - 10) & 0xff),
    'every call reported once, in order',
  );
  t.ok(store.batches >= 3, `${store.batches} group commits (64 calls a turn at most)`);
});

t.test('a reply released by the gate that opens the next batch and queues two more: each runs once, after that commit', async (t) => {
  const log: string[] = [];
  const store = { begin: 0, beginBatch: () => (log.push(`begin ${++store.begin}`), true), commitBatch: () => void log.push('commit') };
  const gate = new GroupCommitGate(store);
  gate.enter();
  gate.run(() => {
    log.push('a');
    // What a handler does when a release leads to the next request (the gate is closed by now).
    gate.enter();
    gate.run(() => log.push('c'));
    gate.run(() => log.push('d'));
  });
  gate.run(() => log.push('b'));
  gate.flush();
  t.doesNotThrow(() => gate.flush(), 'the next batch commits and releases');
  t.same(log, ['begin 1', 'commit', 'a', 'begin 2', 'b', 'commit', 'c', 'd'], 'b with the first batch; c and d after the second commit');
});

// ---- CBC chaining --------------------------------------------------------------------------------

/** The same cipher without its own chaining: cbc.ts's block-at-a-time path. */
function blockwise(c: BlockCipher): BlockCipher {
  return { encryptBlock: (s, so, d, dof) => c.encryptBlock(s, so, d, dof), decryptBlock: (s, so, d, dof) => c.decryptBlock(s, so, d, dof) };
}

t.test("each cipher's own CBC chaining equals the block-at-a-time chaining at any offset and length", async (t) => {
  const random = seededRandom(0xcbc);
  const ciphers: [string, BlockCipher][] = [
    ['v4 (160-bit key, 11 rounds)', V4_CIPHER],
    ['v5', V5_CIPHER],
    ['v6 (altered schedule)', V6_CIPHER],
  ];
  for (const [name, cipher] of ciphers) {
    let bad = 0;
    for (let i = 0; i < 200; i++) {
      const blocks = Math.floor(random() * 20);
      const start = Math.floor(random() * 40);
      const buf = Buffer.alloc(start + 16 * blocks + Math.floor(random() * 17));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(random() * 256);
      const iv = Buffer.alloc(16);
      for (let j = 0; j < 16; j++) iv[j] = Math.floor(random() * 256);
      const end = start + 16 * blocks;
      const a = Buffer.from(buf);
      const b = Buffer.from(buf);
      cbcEncryptInPlace(cipher, iv, a, start, end);
      cbcEncryptInPlace(blockwise(cipher), iv, b, start, end);
      const encrypted = a.equals(b);
      const outside = a.subarray(0, start).equals(buf.subarray(0, start)) && a.subarray(end).equals(buf.subarray(end));
      cbcDecryptInPlace(cipher, iv, a, start, end);
      cbcDecryptInPlace(blockwise(cipher), iv, b, start, end);
      if (!encrypted || !outside || !a.equals(buf) || !b.equals(buf)) bad++;
      // An IV that is the block just before the range (v6 encrypts with such a view).
      if (start >= 16) {
        const c = Buffer.from(buf);
        const d = Buffer.from(buf);
        cbcEncryptInPlace(cipher, c.subarray(start - 16, start), c, start, end);
        cbcEncryptInPlace(blockwise(cipher), d.subarray(start - 16, start), d, start, end);
        if (!c.equals(d)) bad++;
        cbcDecryptInPlace(cipher, c.subarray(start - 16, start), c, start, end);
        if (!c.equals(buf)) bad++;
      }
    }
    t.equal(bad, 0, `${name}: 200 random ranges`);
    t.throws(() => cbcEncryptInPlace(cipher, Buffer.alloc(16), Buffer.alloc(40), 0, 20), 'a range that is not whole blocks is refused');
    t.throws(() => cbcDecryptInPlace(cipher, Buffer.alloc(16), Buffer.alloc(40), 8, 36), 'a range that is not whole blocks is refused');
    t.throws(() => cbcDecryptInPlace(cipher, Buffer.alloc(16), Buffer.alloc(32), 16, 48), 'a range past the end is refused');
  }
});

// ---- repeated GUID texts -------------------------------------------------------------------------

t.test('RepeatedGuids: GUIDs that share a slot, any bytes, the nil GUID: always bytesToGuid', async (t) => {
  const random = seededRandom(0x6a1d);
  const g = new RepeatedGuids();
  // GUIDs whose words XOR to the same slot: the first word chosen to cancel the rest.
  const pool: Buffer[] = [Buffer.alloc(16), Buffer.alloc(16, 0xff)];
  for (let i = 0; i < 60; i++) {
    const b = Buffer.alloc(16);
    for (let j = 4; j < 16; j++) b[j] = Math.floor(random() * 256);
    const w1 = b.readInt32LE(4);
    const w2 = b.readInt32LE(8);
    const w3 = b.readInt32LE(12);
    b.writeInt32LE((w1 ^ w2 ^ w3 ^ (w3 >>> 16) ^ (i % 2 === 0 ? 5 : 0)) | 0, 0);
    pool.push(b);
  }
  let bad = 0;
  const area = Buffer.alloc(64);
  for (let i = 0; i < 5000; i++) {
    const b = pool[Math.floor(random() * pool.length)]!;
    const at = Math.floor(random() * 48);
    b.copy(area, at);
    const got = g.text(area, at);
    if (got !== bytesToGuid(b) || got !== got.toLowerCase()) bad++;
  }
  t.equal(bad, 0, '5,000 lookups among GUIDs that collide on two slots');
});

t.test("the workstation name: the surrogate check's shortcut gives the full replacement's text", async (t) => {
  const random = seededRandom(0x5a5a);
  const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  // Units whose low byte looks like a surrogate's high byte, surrogates of both halves, NULs.
  const UNITS = [0x0041, 0x00d8, 0x00dc, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xd83d, 0xdcbb, 0xe000, 0xd7ff, 0x0000, 0x2028, 0xfeff];
  const buf = Buffer.alloc(236);
  let bad = 0;
  for (let i = 0; i < 3000; i++) {
    buf.fill(0);
    const units = Math.floor(random() * 65);
    for (let u = 0; u < units; u++) buf.writeUInt16LE(UNITS[Math.floor(random() * UNITS.length)]!, 108 + 2 * u);
    let end = 0;
    while (end < 64 && buf.readUInt16LE(108 + 2 * end) !== 0) end++;
    const expected = buf.toString('utf16le', 108, 108 + 2 * end).replace(LONE, '\ufffd');
    if (decodeRequestBase(buf, 0).workstationName !== expected) bad++;
  }
  t.equal(bad, 0, '3,000 names');
});
