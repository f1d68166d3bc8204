// A hostile or broken "PostgreSQL" on the other end of fleet reporting: a loopback TLS server with
// a certificate the appliance trusts (so every check the appliance makes passes) that speaks just
// enough of the PostgreSQL protocol to get past the start and then misbehaves. Whatever it does,
// the process keeps running, memory and sockets stay bounded, the admin reads what is wrong, the
// next attempt comes, and the outbox still holds everything PostgreSQL never acknowledged.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import type { ClientBase } from 'pg';
import { loadCatalog } from '../../src/catalog/load';
import { catalogNames } from '../../src/catalog/names';
import { writeBatch } from '../../src/fleet/remote-writes';
import type { OutboxMachine } from '../../src/store/fleet-outbox';
import { WINDOWS_APP } from '../ids';
import type { Command } from '../../src/cli/command';
import { fleetInit, fleetReport } from '../../src/cli/commands/fleet';
import { DEFAULTS, type FleetConfig } from '../../src/config/defaults';
import { explainPostgresError } from '../../src/fleet/pg-connection';
import { BackendFrameWatch } from '../../src/fleet/pg-guard';
import { WINDOW, cmid, obs } from '../store/observations';
import { appliance, fleetDatabase, postgresForFile, rows } from './fleet-fixture';
import { makeCertificates } from './postgres-harness';
import { settledWithin, until } from '../wait';
import { activate } from '../../src/client/kms-client';
import { startHarness, product } from '../server/appliance-harness';

const NOW = Date.now();
const names = catalogNames(loadCatalog());
const SSL_REQUEST = 80877103;

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
/** One backend message: type byte, length (itself included), body. */
const be = (code: string, body: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([Buffer.from(code, 'latin1'), u32(body.length + 4), body]);
const AUTH_OK = be('R', u32(0));
const READY = be('Z', Buffer.from('I'));
const errorResponse = (sqlstate: string, message: string): Buffer =>
  be('E', Buffer.concat([Buffer.from(`SERROR\0C${sqlstate}\0M${message}\0\0`, 'utf8')]));

/** What the fake server does with one connection once TLS is up and the startup message read. */
interface Peer {
  readonly socket: tls.TLSSocket;
  /** Calls `fn` for each frontend message (type letter, body). */
  onMessage(fn: (code: string, body: Buffer) => void): void;
  /** Writes `total` bytes of `fill` with backpressure; resolves with what was written before the peer hung up. */
  pour(total: number, fill: Buffer): Promise<number>;
}
type Conduct = (peer: Peer) => void;

interface FakePostgres {
  readonly port: number;
  readonly caFile: string;
  readonly connections: number;
  readonly open: number;
  /** Resolves when the n-th connection closed. */
  closed(n: number): Promise<void>;
}

let certs: { ca: string; cert: string; key: string };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fleet-redteam-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
t.before(() => {
  certs = makeCertificates(dir);
});
const passwordFile = path.join(dir, 'fleet.pw');
fs.writeFileSync(passwordFile, 'hostile-test-password\n', { mode: 0o600 });

async function fakePostgres(t: Test, conduct: Conduct, options: { refuseTls?: boolean; notPostgres?: string } = {}): Promise<FakePostgres> {
  const sockets = new Set<net.Socket>();
  const closedAt: (() => void)[][] = [];
  const done: boolean[] = [];
  let connections = 0;
  const server = net.createServer((raw) => {
    const n = ++connections;
    sockets.add(raw);
    raw.on('error', () => undefined);
    raw.on('close', () => {
      sockets.delete(raw);
      done[n] = true;
      for (const f of closedAt[n] ?? []) f();
    });
    raw.once('data', (first: Buffer) => {
      if (first.length < 8 || first.readUInt32BE(4) !== SSL_REQUEST) return raw.destroy();
      if (options.refuseTls) return void raw.write('N');
      if (options.notPostgres !== undefined) return void raw.end(options.notPostgres);
      raw.write('S');
      const socket = new tls.TLSSocket(raw, { isServer: true, cert: fs.readFileSync(certs.cert), key: fs.readFileSync(certs.key) });
      socket.on('error', () => undefined);
      let pending = Buffer.alloc(0);
      let started = false;
      const handlers: ((code: string, body: Buffer) => void)[] = [];
      socket.on('data', (d: Buffer) => {
        pending = Buffer.concat([pending, d]);
        for (;;) {
          if (!started) {
            if (pending.length < 4 || pending.length < pending.readUInt32BE(0)) return;
            pending = pending.subarray(pending.readUInt32BE(0));
            started = true;
            conduct(peer);
            continue;
          }
          if (pending.length < 5 || pending.length < 1 + pending.readUInt32BE(1)) return;
          const code = String.fromCharCode(pending[0]!);
          const body = pending.subarray(5, 1 + pending.readUInt32BE(1));
          pending = pending.subarray(1 + pending.readUInt32BE(1));
          for (const h of handlers) h(code, body);
        }
      });
      const peer: Peer = {
        socket,
        onMessage: (fn) => void handlers.push(fn),
        pour: async (total, fill) => {
          let sent = 0;
          while (sent < total && !socket.destroyed && socket.writable) {
            const ok = socket.write(fill);
            sent += fill.length;
            if (!ok) {
              await new Promise<void>((resolve) => {
                socket.once('drain', resolve);
                socket.once('close', resolve);
              });
            }
          }
          return sent;
        },
      };
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    caFile: certs.ca,
    get connections() {
      return connections;
    },
    get open() {
      return sockets.size;
    },
    closed: (n) =>
      done[n]
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            (closedAt[n] ??= []).push(resolve);
          }),
  };
}

function fleetTo(fake: FakePostgres, siteName: string): FleetConfig {
  return {
    ...DEFAULTS.fleet,
    siteName,
    postgres: {
      ...DEFAULTS.fleet.postgres,
      enabled: true,
      host: '127.0.0.1',
      port: fake.port,
      database: 'kms_fleet',
      user: 'kms_appliance',
      passwordFile,
      caFile: fake.caFile,
      serverName: 'localhost',
      connectTimeoutSeconds: 5,
    },
  };
}

/** A site with a few activations waiting, reporting to `fake`. */
function siteWithBacklog(t: Test, fake: FakePostgres, name: string): ReturnType<typeof appliance> {
  const site = appliance(t, fleetTo(fake, name));
  for (let n = 1; n <= 3; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  return site;
}

/** After startup, answers each query (simple, or extended at its Sync) with `reply`. */
const afterStartup =
  (reply: (peer: Peer, code: string) => void): Conduct =>
  (peer) => {
    peer.socket.write(Buffer.concat([AUTH_OK, READY]));
    peer.onMessage((code) => {
      if (code === 'Q' || code === 'S') reply(peer, code);
    });
  };

async function failsWith(t: Test, site: ReturnType<typeof appliance>, pattern: RegExp, what: string): Promise<string> {
  let message = '';
  try {
    await site.forwarder.syncNow();
    t.fail(`${what}: the sync should have failed`);
  } catch (err) {
    message = explainPostgresError(err, fleetTo({ port: 0 } as FakePostgres, 'x').postgres);
  }
  t.match(message, pattern, `${what}: the admin reads why`);
  t.equal(site.store.fleetOutbox().state().eventsAcked, 0, `${what}: nothing is marked as sent`);
  t.equal(site.forwarder.health().backlogEvents, 3, `${what}: the activations still wait in the outbox`);
  t.ok(
    site.log.lines.some((l) => l.level === 'warn' && l.obj.code === 'KMS_ERR_FLEET_SEND_FAILED'),
    `${what}: a warning is logged`,
  );
  t.notMatch(JSON.stringify(site.log.lines), /hostile-test-password/, `${what}: the password is in no log line`);
  return message;
}

t.test('an authentication method the appliance cannot do (pg_hba says gss) is explained, not a crash', async (t) => {
  for (const [method, name] of [
    [7, /GSSAPI/],
    [9, /SSPI/],
    [2, /Kerberos/],
    [42, /42/],
  ] as const) {
    const fake = await fakePostgres(t, (peer) => peer.socket.write(be('R', u32(method))));
    const site = siteWithBacklog(t, fake, `auth-${method}`);
    await failsWith(t, site, name, `method ${method}`);
    t.match(site.log.lines.map((l) => l.msg).join('\n'), /pg_hba\.conf/, 'and what to change');
    await failsWith(t, site, name, `method ${method}, again`);
    t.equal(fake.connections, 2, 'the next attempt connects again');
    await fake.closed(2);
    t.equal(fake.open, 0, 'no socket is left open');
  }
});

t.test('the running appliance keeps serving while its fleet database asks for GSSAPI', async (t) => {
  const fake = await fakePostgres(t, (peer) => peer.socket.write(be('R', u32(7))));
  const h = await startHarness(t, (c) => {
    c.fleet = fleetTo(fake, 'Kerberos site') as typeof c.fleet;
  });
  // The forwarder's first attempt starts one second after start.
  await until(() => h.logs.some((l) => l.code === 'KMS_ERR_FLEET_SEND_FAILED'), 'the forwarder giving up on the GSSAPI request', {
    on: [{ emitter: h.logged, events: ['line'] }],
  });
  const replies = await activate({
    host: h.host,
    port: h.port,
    product: product('Windows 10/11 Enterprise'),
    workstation: 'pc-1',
    timeoutMs: 2000,
  });
  t.same(
    replies.map((r) => r.hresult),
    [0],
    'a client is served after the failed attempt',
  );
  t.match(h.appliance.fleetHealth()?.lastError ?? '', /GSSAPI.*pg_hba\.conf/, 'health says what to change');
});

t.test('a reply pg cannot parse (a row description of 32767 fields, none sent) is a failed send, not a crash', async (t) => {
  const fake = await fakePostgres(
    t,
    afterStartup((peer) => peer.socket.write(be('T', Buffer.from([0x7f, 0xff])))),
  );
  const site = siteWithBacklog(t, fake, 'garbage');
  await failsWith(t, site, /cannot be read/, 'a truncated row description');
  await fake.closed(1);
  t.equal(fake.open, 0, 'the connection is closed');
});

t.test('a message announced as 1 GB is refused at its header, not buffered', async (t) => {
  let poured = -1;
  const POUR = 24 << 20;
  const fake = await fakePostgres(
    t,
    afterStartup((peer) => {
      peer.socket.write(Buffer.concat([Buffer.from('D'), u32(1 << 30)]));
      void peer.pour(POUR, Buffer.alloc(64 << 10)).then((n) => (poured = n));
    }),
  );
  const site = siteWithBacklog(t, fake, 'huge');
  await failsWith(t, site, /1073741820|announced/, 'a 1 GB data row');
  await fake.closed(1);
  await until(() => poured >= 0, 'the server to stop pouring');
  t.ok(poured < POUR, `the appliance hung up before taking ${POUR} bytes (took ${poured})`);
});

t.test('an endless reply of small rows is cut off, not collected', async (t) => {
  let poured = -1;
  const POUR = 24 << 20;
  const row = be('D', Buffer.concat([Buffer.from([0, 1]), u32(8), Buffer.from('hostname')]));
  const fill = Buffer.concat(Array.from({ length: 4096 }, () => row));
  const fake = await fakePostgres(
    t,
    afterStartup((peer) => {
      const column = Buffer.concat([
        Buffer.from('t\0'),
        u32(0),
        Buffer.from([0, 0]),
        u32(25),
        Buffer.from([0xff, 0xff]),
        u32(0xffffffff),
        Buffer.from([0, 0]),
      ]);
      peer.socket.write(be('T', Buffer.concat([Buffer.from([0, 1]), column])));
      void peer.pour(POUR, fill).then((n) => (poured = n));
    }),
  );
  const site = siteWithBacklog(t, fake, 'endless');
  await failsWith(t, site, /too much|endless|more than/, 'endless rows');
  await fake.closed(1);
  await until(() => poured >= 0, 'the server to stop pouring');
  t.ok(poured < POUR, `the appliance hung up before taking ${POUR} bytes (took ${poured})`);
});

t.test('a server whose error text is huge and full of control characters is quoted inert and short', async (t) => {
  const nasty = `disk full\n\u001b[31mFAKE LOG LINE level=fatal\u001b[0m\r${'x'.repeat(100_000)}`;
  const fake = await fakePostgres(
    t,
    afterStartup((peer) => peer.socket.write(Buffer.concat([errorResponse('XX000', nasty), READY]))),
  );
  const site = siteWithBacklog(t, fake, 'chatty');
  const message = await failsWith(t, site, /disk full/, 'an error for every statement');
  t.notMatch(message, /[\u0000-\u001f\u007f-\u009f]/, 'no control character reaches the log or the terminal');
  t.ok(message.length < 2000, `the message is bounded (${message.length} characters)`);
  const health = site.forwarder.health();
  t.ok((health.lastError ?? '').length < 2000, 'and so is what health and status show');
  t.notMatch(health.lastError ?? '', /[\u0000-\u001f]/, 'inert there too');
});

t.test('a server that refuses TLS is named as such, with the fix', async (t) => {
  const fake = await fakePostgres(t, () => undefined, { refuseTls: true });
  const site = siteWithBacklog(t, fake, 'plain');
  await failsWith(t, site, /does not offer TLS.*ssl = on/, 'no TLS');
});

t.test('the frame watch on its own', async (t) => {
  const limits = { maxMessageBytes: 100, maxReplyBytes: 1000 };
  const w = new BackendFrameWatch(limits);
  t.equal(w.feed(Buffer.concat([AUTH_OK, READY])), null, 'a normal start passes');
  const split = Buffer.concat([be('D', Buffer.alloc(90)), READY]);
  for (let i = 0; i < split.length; i++) t.equal(w.feed(split.subarray(i, i + 1)), null, `byte ${i} of a row fed alone`);
  t.match(new BackendFrameWatch(limits).feed(Buffer.from([0x44, 0, 0, 0, 2])), /malformed/, 'a length below 4');
  t.match(new BackendFrameWatch(limits).feed(Buffer.concat([Buffer.from('D'), u32(105)])), /announced/, 'a message over the bound');
  t.match(new BackendFrameWatch(limits).feed(be('R', u32(7))), /GSSAPI/, 'an unsupported authentication method');
  t.match(new BackendFrameWatch(limits).feed(be('R', Buffer.alloc(2))), /malformed/, 'an authentication request cut short');
  const rows = new BackendFrameWatch(limits);
  let why: string | null = null;
  for (let i = 0; i < 20 && why === null; i++) why = rows.feed(be('D', Buffer.alloc(90)));
  t.match(why ?? '', /more than/, 'rows beyond the reply bound');
  const reset = new BackendFrameWatch(limits);
  let resetWhy: string | null = null;
  for (let i = 0; i < 40 && resetWhy === null; i++) resetWhy = reset.feed(Buffer.concat([be('D', Buffer.alloc(90)), READY]));
  t.equal(resetWhy, null, 'each ReadyForQuery starts a new reply');
});

t.test('a client-chosen licence status or required count beyond PostgreSQL integer does not hide the machine', async (t) => {
  const pg = await postgresForFile(t);
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Out of range'));
  // Both are unsigned 32-bit fields of the request (PROTOCOL.md: logged, not checked).
  site.store.recordActivation(obs(1, { licenseStatus: 0xffffffff, requiredClientCount: 0xffffffff }), NOW, WINDOW);
  site.store.recordRefusal(
    obs(2, { licenseStatus: 0x80000000, requiredClientCount: 0x80000000 }),
    0xc004f06c,
    'KMS_ERR_KMS_TIME_SKEW',
    NOW,
  );
  for (let n = 3; n <= 5; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [5, 5], 'the batch was sent');
  t.notOk(
    site.log.lines.some((l) => l.obj.skippedMachines !== undefined),
    'no row was refused',
  );
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const machines = await rows<{ cmid: string; license_status: number }>(
    db,
    'SELECT cmid, license_status FROM kms_fleet.machines ORDER BY cmid',
  );
  t.equal(machines.length, 5, 'the machine that sent them is in the fleet inventory');
  t.equal(machines[0]?.license_status, 2147483647, 'its licence status is the largest PostgreSQL holds');
  const events = await rows<{ required_count: number }>(db, 'SELECT required_count FROM kms_fleet.events ORDER BY event_id');
  t.same(
    events.slice(0, 2).map((e) => e.required_count),
    [2147483647, 2147483647],
    'so are the required counts of its requests',
  );
});

const textColumn = (name: string, oid: number): Buffer =>
  Buffer.concat([
    Buffer.from(`${name}\0`),
    u32(0),
    Buffer.from([0, 0]),
    u32(oid),
    Buffer.from([0xff, 0xff]),
    u32(0xffffffff),
    Buffer.from([0, 0]),
  ]);
const oneValue = (name: string, oid: number, value: string): Buffer =>
  Buffer.concat([
    be('T', Buffer.concat([Buffer.from([0, 1]), textColumn(name, oid)])),
    be('D', Buffer.concat([Buffer.from([0, 1]), u32(Buffer.byteLength(value)), Buffer.from(value)])),
    be('C', Buffer.from('SELECT 1\0')),
  ]);

/**
 * Plays a fleet database that accepts every batch: the schema version, then every statement
 * succeeds (parameterised ones with no rows). `afterCommit` runs once a COMMIT was answered.
 */
const cooperative =
  (afterCommit: (peer: Peer) => void, hostName?: string): Conduct =>
  (peer) => {
    peer.socket.write(Buffer.concat([AUTH_OK, READY]));
    let committing = false;
    let parsed = '';
    peer.onMessage((code, body) => {
      if (code === 'Q') {
        const sql = body.toString('utf8');
        let reply: Buffer;
        if (/to_regclass/.test(sql)) reply = oneValue('t', 25, 'kms_fleet.schema_version');
        else if (/max\(version\)/.test(sql)) reply = oneValue('v', 23, '2');
        else reply = be('C', Buffer.from(`${sql.trim().split(/\s/)[0]}\0`));
        peer.socket.write(Buffer.concat([reply, READY]));
        if (/^COMMIT/.test(sql)) committing = true;
      } else if (code === 'P') {
        parsed = body.toString('utf8');
      } else if (code === 'S') {
        const rows =
          hostName !== undefined && /SELECT host_name/.test(parsed)
            ? oneValue('host_name', 25, hostName)
            : Buffer.concat([be('n'), be('C', Buffer.from('INSERT 0 1\0'))]);
        peer.socket.write(Buffer.concat([be('1'), be('2'), rows, READY]));
      }
      if (committing) {
        committing = false;
        afterCommit(peer);
      }
    });
  };

t.test('a server that reports an error on an idle connection but keeps it open does not leak a socket per cycle', async (t) => {
  const fake = await fakePostgres(
    t,
    cooperative((peer) => {
      // FATAL while idle, and the socket stays open: a half-dead server or a hostile one.
      setImmediate(() => peer.socket.write(errorResponse('57P01', 'terminating connection due to administrator command')));
    }),
  );
  const site = siteWithBacklog(t, fake, 'idle error');
  const first = await site.forwarder.syncNow();
  t.same([first.machines, first.events], [3, 3], 'the fake database accepted the batch');
  t.equal(site.store.fleetOutbox().state().eventsAcked, 3, 'and it is acknowledged');
  // "Did it happen at all", bounded: the server never closes this socket, only the appliance can.
  t.equal(
    await settledWithin(
      fake.closed(1).then(() => 'closed'),
      5000,
      'open',
    ),
    'closed',
    'the broken connection is closed',
  );
  site.store.recordActivation(obs(10), NOW, WINDOW);
  const second = await site.forwarder.syncNow();
  t.same([second.machines, second.events], [1, 1], 'the next sync goes through a new connection');
  t.equal(fake.connections, 2, 'one new connection');
  t.equal(fake.open, 1, 'and only that one is open');
});

t.test('fleet init and fleet report against a broken server: one line and an exit code, not a crash', async (t) => {
  const run = async (command: Command, fake: FakePostgres): Promise<{ code: number; err: string }> => {
    const file = path.join(dir, `cli-${fake.port}.yaml`);
    fs.writeFileSync(
      file,
      [
        'fleet:',
        '  postgres:',
        '    host: 127.0.0.1',
        `    port: ${fake.port}`,
        '    database: kms_fleet',
        `    caFile: ${fake.caFile}`,
        '    serverName: localhost',
        `    passwordFile: ${passwordFile}`,
        '',
      ].join('\n'),
    );
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await command.run(['--config', file], { stdout, stderr, env: {} });
    return { code, err };
  };
  const gss = await fakePostgres(t, (peer) => peer.socket.write(be('R', u32(7))));
  const init = await run(fleetInit, gss);
  t.equal(init.code, 1, 'fleet init fails');
  t.match(init.err, /^kms-appliance fleet init: .*GSSAPI.*pg_hba\.conf/, 'saying why');
  t.equal(init.err.trim().split('\n').length, 1, 'in one line');
  const huge = await fakePostgres(
    t,
    afterStartup((peer) => peer.socket.write(Buffer.concat([Buffer.from('D'), u32(0x7ffffff0)]))),
  );
  const report = await run(fleetReport, huge);
  t.equal(report.code, 1, 'fleet report fails');
  t.match(report.err, /announced a message of/, 'saying why');
  t.equal(report.err.trim().split('\n').length, 1, 'in one line');
});

t.test('a statement that timed out is not followed by a ROLLBACK that waits a second timeout', async (t) => {
  const machine: OutboxMachine = {
    application: WINDOWS_APP,
    cmid: cmid(1),
    workstation: 'pc-1',
    previousWorkstation: '',
    address: '192.0.2.1',
    sku: '',
    kmsGroup: '',
    firstSeenMs: NOW,
    lastSeenMs: NOW,
    lastCountedMs: NOW,
    lastHresult: 0,
    licenseStatus: 1,
    protocolVersion: 6,
    vm: false,
    requests: 1,
  };
  const batch = {
    site: { applianceId: randomUUID(), siteName: 's', hostName: 'h', softwareVersion: 'v', lastEventId: 0, backlogEvents: 0 },
    machines: [machine],
    events: [],
    eventOffset: 0,
  };
  /** A client whose machines statement fails with `failure`; ROLLBACK is answered only if `answersRollback`. */
  const client = (failure: Error, answersRollback: boolean): { c: ClientBase; sent: string[] } => {
    const sent: string[] = [];
    const c = {
      query: (text: string) => {
        const verb = text.trim().split(/\s/)[0]!;
        sent.push(verb);
        if (/kms_fleet\.machines/.test(text) && verb === 'INSERT') return Promise.reject(failure);
        if (verb === 'ROLLBACK' && !answersRollback) return new Promise(() => undefined);
        return Promise.resolve({ rows: [] });
      },
    } as unknown as ClientBase;
    return { c, sent };
  };
  const hung = client(new Error('Query read timeout'), false);
  const outcome = await settledWithin(
    writeBatch(hung.c, batch, names).then(
      () => 'committed',
      (err: Error) => err.message,
    ),
    5000,
    'still waiting for the ROLLBACK',
  );
  t.equal(outcome, 'Query read timeout', 'the timeout is reported at once');
  t.notOk(hung.sent.includes('ROLLBACK'), 'no ROLLBACK is queued behind the statement that hangs');
  const refused = client(Object.assign(new Error('value out of range'), { severity: 'ERROR', code: '22003' }), true);
  await t.rejects(writeBatch(refused.c, batch, names), /out of range/);
  t.equal(refused.sent.at(-1), 'ROLLBACK', 'a statement the server refused is rolled back (the connection goes on row by row)');
});

t.test('a host name the fleet database returns is quoted inert in the clone warning', async (t) => {
  const planted = `evil\n\u001b[2J{"level":"fatal"}${'y'.repeat(200_000)}`;
  const fake = await fakePostgres(
    t,
    cooperative(() => undefined, planted),
  );
  const site = siteWithBacklog(t, fake, 'planted');
  await site.forwarder.syncNow();
  const warning = site.log.lines.find((l) => l.obj.code === 'KMS_ERR_FLEET_CONFIG');
  t.ok(warning, 'the clone warning is logged');
  const text = `${warning?.msg ?? ''} ${String(warning?.obj.otherHost ?? '')}`;
  t.match(text, /evil/, 'naming the other host');
  t.notMatch(text, /[\u0000-\u001f]/, 'without its control characters');
  t.ok(text.length < 2000, `and short (${text.length} characters)`);
});

t.test('a server that authenticates and then never says it is ready is given up at the connect timeout', async (t) => {
  // Held before this round: pg's connection timeout runs until ReadyForQuery, not only the TCP connect.
  const fake = await fakePostgres(t, (peer) => peer.socket.write(AUTH_OK));
  const site = appliance(t, { ...fleetTo(fake, 'mute'), postgres: { ...fleetTo(fake, 'mute').postgres, connectTimeoutSeconds: 1 } });
  site.store.recordActivation(obs(1), NOW, WINDOW);
  await t.rejects(site.forwarder.syncNow(), /timeout|terminated/i, 'the attempt ends');
  t.match(site.forwarder.health().lastError ?? '', /did not answer in time|was cut/, 'and says why in words');
  await fake.closed(1);
  t.equal(fake.open, 0, 'the socket is closed');
  t.equal(site.store.fleetOutbox().state().eventsAcked, 0, 'nothing is marked as sent');
});

t.test('a table that refuses every row (a constraint head office added) is not taken for bad rows', async (t) => {
  const pg = await postgresForFile(t);
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Constrained'));
  for (let n = 1; n <= 5; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  const su = await fleet.connectAs('superuser');
  t.teardown(() => su.end());
  await su.query('ALTER TABLE kms_fleet.machines ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
  await t.rejects(site.forwarder.syncNow(), /refused every row/, 'the send fails as a whole');
  t.equal(site.store.fleetOutbox().state().eventsAcked, 0, 'nothing is marked as sent');
  t.match(site.forwarder.health().lastError ?? '', /constraint or trigger/, 'health says where to look');
  await su.query('ALTER TABLE kms_fleet.machines DROP CONSTRAINT refuse_all');
  const r = await site.forwarder.syncNow();
  t.same([r.machines, r.events], [5, 5], 'once the table takes rows again, the whole batch is sent');
  const [n] = await rows<{ m: string; e: string }>(
    su,
    'SELECT (SELECT count(*) FROM kms_fleet.machines) AS m, (SELECT count(*) FROM kms_fleet.events) AS e',
  );
  t.same([Number(n!.m), Number(n!.e)], [5, 5], 'and every machine and event is in the fleet database');
});

t.test('a port where something else than PostgreSQL answers is named as such', async (t) => {
  const fake = await fakePostgres(t, () => undefined, { notPostgres: 'HTTP/1.1 400 Bad Request\r\n\r\n' });
  const site = siteWithBacklog(t, fake, 'web server');
  await failsWith(t, site, /not answer like a PostgreSQL server.*fleet\.postgres\.port/, 'an HTTP server on the port');
});
