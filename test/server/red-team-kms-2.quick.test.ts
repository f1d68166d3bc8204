// Red-team findings against the KMS listener (TCP 1688), second round: an attacker holding every
// slot from many address groups, floods of log lines, and what the spec says about fragment sizes.
// Each test is an attack that got a wrong answer before its fix.
import t, { type Test } from 'tap';
import net from 'node:net';
import { KmsServer } from '../../src/server/kms-server';
import { SILENT_LOG, type KmsServerSettings, type ServerLog } from '../../src/server/types';
import { encodeBind } from '../../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, PTYPE } from '../../src/protocol/rpc/constants';
import { decodeResponsePdu, encodeRequestPdu } from '../../src/protocol/rpc/request';
import { HRESULT, ProtocolError } from '../../src/errors';
import { RpcSession } from '../../src/protocol/rpc/session';
import { FirstBindCache } from '../../src/protocol/rpc/first-bind-cache';
import { validateConfigText } from '../../src/config/load';
import { until, within } from '../wait';
import { kmsBindNdr32 } from './kms-bind';
import { testServerSettings } from './settings';
import { connectPeer, type Peer } from './peer';
import { rawConnect, startHarness } from './appliance-harness';
import { Writable } from 'node:stream';
import { createLogger, logActivation } from '../../src/logging/logger';
import { UndecodableLines } from '../../src/logging/undecodable-lines';

const BIND = kmsBindNdr32(1);

/** A request on ctx 0 whose KMS body the test handlers refuse: answered with a response, which is progress. */
function request(callId: number): Buffer {
  const body = Buffer.alloc(32, 0x5a);
  const stub = Buffer.alloc(8 + body.length);
  stub.writeUInt32LE(body.length, 0);
  stub.writeUInt32LE(body.length, 4);
  body.copy(stub, 8);
  return encodeRequestPdu({ callId, contextId: 0, opnum: 0, stub });
}

/** The lockout tests wait for it; the server's default is 2 s. */
const OPEN_GRACE_MS = 300;

async function startServer(t: Test, s: KmsServerSettings, log: ServerLog = SILENT_LOG): Promise<{ server: KmsServer; port: number }> {
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings: s,
    handler: (_m, clientAddress) => ({
      hresult: HRESULT.INVALID_DATA,
      outcome: { result: 'refused', hresult: HRESULT.INVALID_DATA, clientAddress },
    }),
    log,
    openGraceMs: OPEN_GRACE_MS,
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  return { server, port: bound!.port };
}

const onData = (...sockets: net.Socket[]) => ({ on: sockets.map((emitter) => ({ emitter, events: ['data', 'close'] })) });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('an attacker holding every slot from many address groups, all making progress, cannot lock a newcomer out', async (t) => {
  const { server, port } = await startServer(t, testServerSettings({ maxConnections: 6, maxConnectionsPerAddress: 2 }));
  // Six address groups with one connection each: no group is larger than the newcomer's by two.
  const attackers: Peer[] = [];
  for (let i = 1; i <= 6; i++) {
    const p = await connectPeer(port, `127.0.3.${i}`);
    p.socket.write(BIND);
    attackers.push(p);
  }
  await until(() => attackers.every((p) => p.data().length >= 60), 'six bind_acks', onData(...attackers.map((p) => p.socket)));
  // Each keeps making progress (a request answered every 100 ms) past the grace a connection open that long loses.
  let callId = 10;
  for (let round = 0; round * 100 < OPEN_GRACE_MS + 200; round++) {
    for (const p of attackers) if (!p.socket.destroyed) p.socket.write(request(callId++));
    await sleep(100);
  }
  const fresh = await connectPeer(port, '127.0.3.99');
  fresh.socket.write(BIND);
  await until(() => fresh.data().length >= 10 || fresh.socket.destroyed, "the newcomer's answer", onData(fresh.socket));
  t.equal(fresh.data()[2], PTYPE.BIND_ACK, 'the newcomer gets a slot (a bind_ack, not bind_nak reason 2)');
  if (fresh.socket.destroyed) return;
  fresh.socket.write(request(2));
  await until(() => fresh.data().length >= 60 + 36, "the newcomer's response", onData(fresh.socket));
  t.equal(fresh.data()[60 + 2], PTYPE.RESPONSE, 'and its request is answered');
  t.equal(server.stats().refusedByReason.evicted, 1, 'one attacker connection made way');
  await until(() => attackers[0]!.socket.destroyed, 'the longest-open attacker connection closed', onData(attackers[0]!.socket));
  t.same(
    attackers.map((p) => p.socket.destroyed),
    [true, false, false, false, false, false],
    'the connection open longest was the one evicted',
  );
  for (const p of [...attackers, fresh]) p.socket.destroy();
});

t.test(
  'busy connections of one address at kms.maxConnectionsPerAddress cannot lock out a newcomer from it (an IPv6 LAN is one /64)',
  async (t) => {
    const { server, port } = await startServer(t, testServerSettings({ maxConnectionsPerAddress: 4 }));
    const attackers: Peer[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await connectPeer(port, '127.0.5.1');
      p.socket.write(BIND);
      attackers.push(p);
    }
    await until(() => attackers.every((p) => p.data().length >= 60), 'four bind_acks', onData(...attackers.map((p) => p.socket)));
    let callId = 10;
    for (let round = 0; round * 100 < OPEN_GRACE_MS + 200; round++) {
      for (const p of attackers) if (!p.socket.destroyed) p.socket.write(request(callId++));
      await sleep(100);
    }
    const fresh = await connectPeer(port, '127.0.5.1');
    fresh.socket.write(BIND);
    await until(() => fresh.data().length >= 10 || fresh.socket.destroyed, "the newcomer's answer", onData(fresh.socket));
    t.equal(fresh.data()[2], PTYPE.BIND_ACK, 'the newcomer gets a slot (a bind_ack, not bind_nak reason 2)');
    t.equal(server.stats().refusedByReason.evicted, 1, 'one connection of its address made way');
    await until(() => attackers[0]!.socket.destroyed, 'the longest-open connection closed', onData(attackers[0]!.socket));
    t.same(
      attackers.map((p) => p.socket.destroyed),
      [true, false, false, false],
      'the connection open longest was the one evicted',
    );
    for (const p of [...attackers, fresh]) p.socket.destroy();
  },
);

t.test('a flood of undecodable KMS messages is not a warn line each; genuine refusals still are', async (t) => {
  const h = await startHarness(t);
  const peer = await rawConnect(h.host, h.port);
  peer.socket.write(BIND);
  await peer.waitFor(60);
  // 300 requests whose KMS body is no KMS message (version 7.0), in batches the host answers in turn.
  const N = 300;
  for (let sent = 0; sent < N; ) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 50; i++) batch.push(request(100 + sent++));
    peer.socket.write(Buffer.concat(batch));
    await until(() => h.outcomes.length >= sent, `${sent} requests answered`, { everyMs: 5 });
  }
  t.equal(h.outcomes.length, N, 'every request is decided (event log, metrics)');
  t.ok(
    h.outcomes.every((o) => o.result === 'refused' && o.code === 'KMS_ERR_KMS_VERSION'),
    'each refused as not a KMS request',
  );
  const lines = h.logs.filter((l) => l['event'] === 'kms-request-refused');
  t.ok(lines.length >= 1, 'the first is logged');
  t.ok(lines.length <= 2, `one client's flood is not a line per request (${lines.length} lines for ${N} requests)`);
  peer.socket.destroy();
});

t.test('undecodable lines: once per address per window, a cap for all addresses, then a count of those left out', async (t) => {
  const lines = new UndecodableLines(1000, 3);
  t.equal(lines.admit('192.0.2.1', 0), 0, 'the first from an address is written');
  t.equal(lines.admit('192.0.2.1', 10), -1, 'the second within the window is not');
  t.equal(lines.admit('192.0.2.2', 20), 1, 'another address is written, counting the one left out');
  t.equal(lines.admit('192.0.2.3', 30), 0);
  t.equal(lines.admit('192.0.2.4', 40), -1, 'past the cap for all addresses, a new address is not');
  t.equal(lines.admit('192.0.2.1', 1000), 1, 'the next line written counts the one left out since');
  t.equal(lines.admit('192.0.2.4', 1001), 0, 'an address left out for the cap is written in the next window');

  const written: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) written.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const log = createLogger({ level: 'info', destination });
  for (let i = 0; i < 50; i++) {
    logActivation(log, { result: 'refused', hresult: 0x8007000d, code: 'KMS_ERR_KMS_VERSION', clientAddress: '192.0.2.9' });
    logActivation(log, {
      result: 'refused',
      hresult: 0xc004f06c,
      code: 'KMS_ERR_KMS_TIME_SKEW',
      clientAddress: '192.0.2.9',
      clientMachineId: `00000000-0000-4000-8000-0000000000${String(i).padStart(2, '0')}`,
    });
  }
  t.equal(written.filter((l) => l['code'] === 'KMS_ERR_KMS_TIME_SKEW').length, 50, 'a refusal of a decoded request: a line each (12290)');
  t.equal(written.filter((l) => l['code'] === 'KMS_ERR_KMS_VERSION').length, 1, 'an undecodable message: one line for the address');
});

t.test("the listener's errors (EMFILE on every accept) are throttled, not a line each", async (t) => {
  const errors: object[] = [];
  const { server, port } = await startServer(t, testServerSettings(), { ...SILENT_LOG, error: (o: object) => void errors.push(o) });
  const listener = (server as unknown as { servers: net.Server[] }).servers[0]!;
  for (let i = 0; i < 1000; i++) listener.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
  t.ok(errors.length >= 1, 'the error is logged');
  t.ok(errors.length <= 20, `1000 failed accepts: ${errors.length} lines`);
  // The listener keeps serving.
  const p = await connectPeer(port, '127.0.0.1');
  p.socket.write(BIND);
  await until(() => p.data().length >= 60, 'a bind_ack', onData(p.socket));
  t.equal(p.data()[2], PTYPE.BIND_ACK, 'and the listener still serves');
  p.socket.destroy();
});

t.test('a fault-provoking PDU costs no stack trace: protocol errors describe the bytes, not our code', async (t) => {
  const limit = Error.stackTraceLimit;
  const session = new RpcSession(
    { ndr64: true, btfn: true, maxStubBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1 },
    () => ({ hresult: HRESULT.INVALID_DATA }),
  );
  // A request before any bind: a fault for an unknown context, 24 bytes each, as many as a client likes.
  const result = session.handlePdu(encodeRequestPdu({ callId: 7, contextId: 0, opnum: 0, stub: Buffer.alloc(0) }));
  t.equal(result.reply?.[2], PTYPE.FAULT, 'a fault');
  t.equal(result.error?.code, 'KMS_ERR_RPC_UNKNOWN_CONTEXT', 'with its code');
  t.notMatch(result.error?.stack ?? '', /\n\s+at /, 'and no stack frames captured');
  const e = new ProtocolError('KMS_ERR_PDU_TRUNCATED', 'cut short', { length: 3 });
  t.equal(e.message, 'cut short');
  t.same(e.details, { length: 3 });
  t.notMatch(e.stack ?? '', /\n\s+at /, 'a ProtocolError has no frames');
  t.equal(Error.stackTraceLimit, limit, 'the stack trace limit is left as it was');
  t.match(new Error('x').stack, /\n\s+at /, 'other errors keep theirs');
});

t.test('one read of a thousand PDUs is handled over several turns of the loop, every one answered in order', async (t) => {
  let calls = 0;
  let callsWhenTheLoopTurned = -1;
  const server = new KmsServer({
    listen: [{ host: '127.0.0.1', port: 0, family: 4 }],
    settings: testServerSettings(),
    handler: (_m, clientAddress) => {
      // The first call asks to be told when the loop next turns: how many calls ran in this turn?
      if (calls++ === 0) setImmediate(() => (callsWhenTheLoopTurned = calls));
      return { hresult: HRESULT.INVALID_DATA, outcome: { result: 'refused', hresult: HRESULT.INVALID_DATA, clientAddress } };
    },
    log: SILENT_LOG,
  });
  const [bound] = await server.start();
  t.teardown(() => server.close(0));
  const p = await connectPeer(bound!.port, '127.0.0.1');
  p.socket.write(BIND);
  await until(() => p.data().length >= 60, 'the bind_ack', onData(p.socket));
  const N = 1000;
  const burst = Buffer.concat(Array.from({ length: N }, (_, i) => request(10 + i)));
  // 64,000 bytes, most of it in one read, and the client's FIN right behind: the host answers every
  // request before it honours the close (§2.11), however many turns that takes.
  p.socket.end(burst);
  const expected = 60 + N * 36;
  await until(() => p.data().length >= expected || p.socket.destroyed, 'every response', onData(p.socket));
  const replies = [];
  const all = p.data();
  for (let at = 60; at + 10 <= all.length; at += all.readUInt16LE(at + 8)) replies.push(all.subarray(at, at + all.readUInt16LE(at + 8)));
  t.equal(replies.length, N, 'a reply for each request');
  t.ok(
    replies.every((r, i) => r[2] === PTYPE.RESPONSE && r.readUInt32LE(12) === 10 + i),
    'each a response, in the order of the requests',
  );
  t.ok(callsWhenTheLoopTurned > 0 && callsWhenTheLoopTurned <= 128, `the loop turned after ${callsWhenTheLoopTurned} of ${N} requests`);
  await within(p.closed, 'the close after the replies');
  t.ok(p.socket.destroyed, 'then the host closes the connection');
});

t.test('kms.maxPduBytes is at least 1432: bind_ack never advertises less (§2.6), so the framer must accept that much', async (t) => {
  t.throws(() => validateConfigText('kms:\n  maxPduBytes: 1024\n', 'config.yaml'), { code: 'KMS_ERR_CONFIG_INVALID' }, '1024 refused');
  t.throws(() => validateConfigText('kms:\n  maxPduBytes: 1431\n', 'config.yaml'), { code: 'KMS_ERR_CONFIG_INVALID' }, '1431 refused');
  t.equal(validateConfigText('kms:\n  maxPduBytes: 1432\n', 'config.yaml').kms.maxPduBytes, 1432, '1432 accepted');
});

/** The reply PDUs in `stream`, cut by frag_length. */
function pdusIn(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 10 <= stream.length; at += stream.readUInt16LE(at + 8))
    out.push(stream.subarray(at, at + stream.readUInt16LE(at + 8)));
  return out;
}

t.test("no reply exceeds the client's max_recv_frag: a response too big for it is sent in fragments (§2.10)", async (t) => {
  const kmsResponse = Buffer.alloc(300);
  for (let i = 0; i < kmsResponse.length; i++) kmsResponse[i] = i & 0xff;
  // Shared as a listener shares it: the first bind is decoded in full, the later ones answered from memory.
  const firstBinds = new FirstBindCache();
  const answer = (maxRecvFrag: number): Buffer => {
    const session = new RpcSession(
      { ndr64: true, btfn: true, maxStubBytes: 4096, maxPduBytes: 4096, secondaryAddress: '1688', newAssocGroupId: () => 1, firstBinds },
      () => ({ response: kmsResponse }),
    );
    const bind = encodeBind({
      ptype: PTYPE.BIND,
      callId: 1,
      flags: 0x03,
      maxXmitFrag: 5840,
      maxRecvFrag,
      assocGroupId: 0,
      contexts: [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }],
    });
    const ack = session.handlePdu(bind).reply!;
    if (maxRecvFrag < 1432) t.equal(ack.readUInt16LE(18), maxRecvFrag, `max_recv_frag ${maxRecvFrag}: echoed (below 1432, §2.6)`);
    return session.handlePdu(request(9)).reply!;
  };
  const whole = answer(5840);
  t.equal(pdusIn(whole).length, 1, 'max_recv_frag 5840: one response PDU');
  const wholeStub = decodeResponsePdu(whole).stub;
  for (const limit of [200, 100, 57, 100]) {
    const fragments = pdusIn(answer(limit));
    t.ok(fragments.length > 1, `max_recv_frag ${limit}: ${fragments.length} fragments`);
    t.ok(
      fragments.every((f) => f.length <= limit && f[2] === PTYPE.RESPONSE && f.readUInt32LE(12) === 9),
      `max_recv_frag ${limit}: each a response of call 9 within the limit`,
    );
    t.same(
      fragments.map((f) => f[3]! & 0x03),
      fragments.map((_, i) => (i === 0 ? 0x01 : 0) | (i === fragments.length - 1 ? 0x02 : 0)),
      `max_recv_frag ${limit}: FIRST on the first, LAST on the last, neither between`,
    );
    const stubs = fragments.map((f) => decodeResponsePdu(f).stub);
    t.ok(
      stubs.slice(0, -1).every((s) => s.length % 8 === 0),
      `max_recv_frag ${limit}: every stub but the last a multiple of 8 bytes`,
    );
    t.same(Buffer.concat(stubs), wholeStub, `max_recv_frag ${limit}: the stubs join into the one-fragment stub`);
  }
});
