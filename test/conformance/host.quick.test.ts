// PROTOCOL.md §10 host-behaviour items (C26–C33) against the running appliance: ePID stability,
// counting and its window and cap, intervals, one 12290 record per request, hostile clients.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes, randomUUID } from 'node:crypto';
import { startHarness, testConfig } from '../server/appliance-harness';
import { startAppliance } from '../../src/cli/appliance';
import { createLogger } from '../../src/logging/logger';
import { validateConfigText } from '../../src/config/load';
import {
  BTFN_ACK,
  ACCEPT_NDR32,
  ACCEPT_NDR64,
  E_INVALID_DATA,
  E_PRODUCT,
  E_TIME,
  GROUP,
  Peer,
  REJECT_2_2,
  activateOnce,
  bind,
  boundNdr32,
  call,
  clientProblems,
  decodeKmsResponse,
  delay,
  filetimeOf,
  hex,
  ITEM,
  kmsRequest,
  parseBindAck,
  parseFault,
  requestPdu,
  requestStub,
  res,
  windowsBind,
  type RequestFields,
  type SentRequest,
} from './wire';

const DAY = 86_400_000;

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-conformance-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Sends every request on one NDR32 connection; returns each count (or the refusal HRESULT as -hresult). */
async function counts(port: number, requests: SentRequest[]): Promise<number[]> {
  const p = await boundNdr32(port);
  const out: number[] = [];
  let callId = 2;
  for (const sent of requests) {
    const { stub } = await call(p, sent.message, { callId: callId++ });
    out.push(stub.data ? decodeKmsResponse(sent.version, stub.data).base.count : -stub.hresult);
  }
  p.destroy();
  return out;
}

async function countOf(port: number, sent: SentRequest): Promise<number> {
  return (await counts(port, [sent]))[0]!;
}

function v6(f: RequestFields): SentRequest {
  return kmsRequest(6, f);
}

interface EpidParts {
  platform: string;
  group: string;
  lcid: string;
  build: number;
}

function epidParts(epid: string): EpidParts {
  const m = /^(\d{5})-(\d{5})-\d{3}-\d{6}-03-(\d{4,5})-(\d{4,5})\.0000-\d{7}$/.exec(epid);
  if (!m) throw new Error(`ePID shape: ${epid}`);
  return { platform: m[1]!, group: m[2]!, lcid: m[3]!, build: Number(m[4]) };
}

async function epidOf(port: number, sent: SentRequest): Promise<string> {
  const r = await activateOnce(port, sent);
  if (!r.response) throw new Error(`refused 0x${r.hresult.toString(16)}`);
  return decodeKmsResponse(sent.version, r.response).base.epid;
}

async function bindResults(port: number): Promise<[number, number, string, number][]> {
  const p = await Peer.open(port);
  p.send(windowsBind());
  const a = parseBindAck(await p.expect());
  p.destroy();
  return a.results.map(res);
}

t.test('C26 one ePID per KMS group across requests, connections and restarts; one platform, LCID and build', async (t) => {
  const dataDir = tempDir(t);
  const groups = [GROUP.win10, GROUP.win7, GROUP.server2022, GROUP.server2008r2, GROUP.office2010, GROUP.office2021];
  const collect = async (port: number): Promise<Map<string, Set<string>>> => {
    const seen = new Map<string, Set<string>>();
    for (const g of groups) {
      const set = new Set<string>();
      for (const version of [4, 6] as const) set.add(await epidOf(port, kmsRequest(version, { group: g })));
      seen.set(g.kms, set);
    }
    return seen;
  };
  const first = await startHarness(t, undefined, { dataDir });
  const before = await collect(first.port);
  await first.appliance.stop();
  const second = await startHarness(t, undefined, { dataDir });
  const after = await collect(second.port);
  const all = new Set<string>();
  for (const g of groups) {
    const a = before.get(g.kms)!;
    const b = after.get(g.kms)!;
    t.equal(a.size, 1, `${g.kms}: one ePID across requests and connections`);
    t.same([...b], [...a], `${g.kms}: the same ePID after the restart`);
    for (const e of a) all.add(e);
  }
  const parts = [...all].map(epidParts);
  t.ok(parts.length >= 4, `${parts.length} distinct ePIDs (one per host-key group)`);
  t.equal(new Set(parts.map((p) => p.platform)).size, 1, 'one platform id');
  t.equal(new Set(parts.map((p) => p.lcid)).size, 1, 'one LCID');
  t.equal(new Set(parts.map((p) => p.build)).size, 1, 'one build');
  t.ok(parts[0]!.build >= 9200, 'NDR64 on: build ≥ 9200');
  t.same(await bindResults(second.port), [REJECT_2_2, ACCEPT_NDR64, BTFN_ACK], 'and NDR64 is accepted');

  const old = await startHarness(t, (c) => {
    c.kms.ndr64 = false;
    c.host.build = 7601;
  });
  t.same(await bindResults(old.port), [ACCEPT_NDR32, REJECT_2_2, BTFN_ACK], 'NDR64 off: NDR64 rejected, NDR32 accepted');
  const oldParts = [GROUP.win10, GROUP.office2021].map(async (g) => epidParts(await epidOf(old.port, v6({ group: g }))));
  for (const p of await Promise.all(oldParts)) t.ok(p.build < 9200, `NDR64 off: build ${p.build} < 9200`);
});

t.test('C27 counts: 1, 2, 3 for new machines, unchanged for a repeat, separate per application', async (t) => {
  const h = await startHarness(t);
  const cmids = [randomUUID(), randomUUID(), randomUUID()];
  const win = await counts(h.port, [
    ...cmids.map((cmid) => v6({ group: GROUP.win10, cmid })),
    v6({ group: GROUP.server2022, cmid: cmids[1], requiredClientCount: 5 }), // a repeat, another Windows group
    v6({ group: GROUP.win10, cmid: cmids[0] }),
  ]);
  t.same(win, [1, 2, 3, 3, 3], 'Windows');
  t.same(
    await counts(h.port, [
      kmsRequest(4, { group: GROUP.office2010, requiredClientCount: 5 }),
      kmsRequest(4, { group: GROUP.office2010, requiredClientCount: 5 }),
    ]),
    [1, 2],
    'Office 2010 counts on its own',
  );
  t.same(
    await counts(h.port, [
      kmsRequest(5, { group: GROUP.office2013, requiredClientCount: 5 }),
      v6({ group: GROUP.office2021, requiredClientCount: 5 }),
    ]),
    [1, 2],
    'Office 2013+ counts on its own',
  );
  t.equal(await countOf(h.port, v6({ group: GROUP.win10 })), 4, 'Windows continues where it was');
  t.equal(await countOf(h.port, kmsRequest(4, { group: GROUP.office2010, cmid: randomUUID(), requiredClientCount: 5 })), 3);
});

t.test('C28 the count is capped at 2 × the largest RequiredClientCount seen, and at the distinct machines', async (t) => {
  const h = await startHarness(t);
  const servers = Array.from({ length: 12 }, () => v6({ group: GROUP.server2022, requiredClientCount: 5 }));
  t.same(await counts(h.port, servers), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10], 'only servers: capped at 10');
  const clients = Array.from({ length: 40 }, () => v6({ group: GROUP.win10, requiredClientCount: 25 }));
  const got = await counts(h.port, clients);
  const expected = clients.map((_, i) => Math.min(12 + i + 1, 50));
  t.same(got, expected, 'after a client request (25): the distinct machines (13, 14, …), capped at 50');
  t.equal(await countOf(h.port, v6({ group: GROUP.server2022, requiredClientCount: 5 })), 50, 'a server still sees 50');
  t.same(
    await counts(h.port, [
      kmsRequest(5, { group: GROUP.office2013, requiredClientCount: 1 }),
      kmsRequest(5, { group: GROUP.office2013, requiredClientCount: 1 }),
      kmsRequest(5, { group: GROUP.office2013, requiredClientCount: 1 }),
    ]),
    [1, 2, 2],
    'RequiredClientCount 1: capped at 2',
  );
  // §7.1 step 4 (U8): RequiredClientCount 0 is served and treated as 1.
  const zero = () => kmsRequest(4, { group: GROUP.office2010, requiredClientCount: 0 });
  t.same(await counts(h.port, [zero(), zero(), zero()]), [1, 2, 2], 'RequiredClientCount 0: treated as 1, capped at 2');
});

t.test('C29 machines silent for more than 30 days drop out; counts survive a restart', async (t) => {
  const dataDir = tempDir(t);
  const t0 = Date.now();
  let offset = 0;
  const clock = { now: () => t0 + offset };
  const start = async (): Promise<{ port: number; stop: () => Promise<void> }> => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const appliance = await startAppliance(
      testConfig((c) => {
        c.store.dataDir = dataDir;
      }),
      { log: createLogger({ level: 'warn', destination: sink }), clock },
    );
    t.teardown(() => appliance.stop());
    return { port: appliance.kmsAddresses[0]!.port, stop: () => appliance.stop() };
  };
  const at = (group = GROUP.win10): SentRequest => v6({ group, requestTime: filetimeOf(clock.now()) });

  const a = await start();
  t.same(await counts(a.port, [at(), at()]), [1, 2], 'two machines on day 0');
  offset = 29 * DAY;
  t.equal(await countOf(a.port, at()), 3, 'day 29: both still count');
  offset = 30 * DAY + 60_000;
  t.equal(await countOf(a.port, at()), 2, 'day 30 + 1 min: the day-0 machines no longer count');
  await a.stop();
  const b = await start();
  t.equal(await countOf(b.port, at()), 3, 'after a restart the count continues');
  offset = 61 * DAY;
  t.equal(await countOf(b.port, at()), 1, 'day 61: everyone else has dropped out');
});

t.test('C30 refused requests change no count', async (t) => {
  const h = await startHarness(t);
  t.equal(await countOf(h.port, v6({ group: GROUP.win10 })), 1);
  const refusals = await counts(h.port, [
    v6({ group: GROUP.win10, requestTime: filetimeOf(Date.now() - 5 * 3_600_000) }),
    v6({ group: GROUP.win10, requiredClientCount: 1001 }),
    v6({ group: GROUP.win10Retail }),
    v6({ group: GROUP.office2021, app: GROUP.win10.app }),
    kmsRequest(4, { group: GROUP.win7 }, { corruptMac: true }),
    kmsRequest(6, { group: GROUP.win10 }, { padding: hex('05 05 05 05') }),
    v6({ group: GROUP.office2021, requestTime: filetimeOf(Date.now() + 5 * 3_600_000) }),
    kmsRequest(4, { group: GROUP.office2010, innerMajor: 7 }),
  ]);
  t.same(
    refusals,
    [-E_TIME, -E_INVALID_DATA, -E_PRODUCT, -E_PRODUCT, -E_INVALID_DATA, -E_INVALID_DATA, -E_TIME, -E_INVALID_DATA],
    'all refused',
  );
  t.equal(await countOf(h.port, v6({ group: GROUP.win10 })), 2, 'Windows: the refused machines were not counted');
  t.equal(await countOf(h.port, v6({ group: GROUP.office2021, requiredClientCount: 5 })), 1, 'Office 2013+: not counted either');
  t.equal(await countOf(h.port, kmsRequest(4, { group: GROUP.office2010, requiredClientCount: 5 })), 1, 'Office 2010: not counted either');
});

t.test('C31 the intervals in responses are the configured ones; out-of-range configuration is rejected', async (t) => {
  for (const [activation, renewal] of [
    [undefined, undefined],
    [15, 43200],
    [43200, 15],
  ] as const) {
    const h = await startHarness(t, (c) => {
      if (activation !== undefined) c.kms.activationIntervalMinutes = activation;
      if (renewal !== undefined) c.kms.renewalIntervalMinutes = renewal;
    });
    for (const version of [4, 5, 6] as const) {
      const sent = kmsRequest(version, { group: GROUP.win10 });
      const r = await activateOnce(h.port, sent);
      const base = decodeKmsResponse(version, r.response!).base;
      t.same(
        [base.activationInterval, base.renewalInterval],
        [activation ?? 120, renewal ?? 10080],
        `v${version}: intervals ${activation ?? 'default'}/${renewal ?? 'default'}`,
      );
    }
  }
  for (const field of ['activationIntervalMinutes', 'renewalIntervalMinutes']) {
    for (const value of [14, 43201, 0]) {
      t.throws(
        () => validateConfigText(`kms:\n  ${field}: ${value}\n`, 'x.yaml'),
        { code: 'KMS_ERR_CONFIG_INVALID' },
        `${field} ${value} rejected`,
      );
    }
    for (const value of [15, 43200])
      t.equal(
        validateConfigText(`kms:\n  ${field}: ${value}\n`, 'x.yaml').kms[field as 'activationIntervalMinutes'],
        value,
        `${field} ${value} accepted`,
      );
  }
});

t.test('C32 every KMS request produces exactly one 12290 record with its outcome', async (t) => {
  const h = await startHarness(t);
  const cmid = randomUUID();
  const plan: [SentRequest, number][] = [
    [
      kmsRequest(6, { group: GROUP.win10, cmid, workstation: 'pc-42.branch.test', vmInfo: 1, licenseStatus: 5, bindingExpiration: 1234 }),
      0,
    ],
    [kmsRequest(4, { group: GROUP.office2010, requiredClientCount: 5 }), 0],
    [kmsRequest(5, { group: GROUP.office2013, requiredClientCount: 5 }), 0],
    [v6({ group: GROUP.win10Retail }), E_PRODUCT],
    [v6({ group: GROUP.win10, requiredClientCount: 1001 }), E_INVALID_DATA],
    [kmsRequest(6, { group: GROUP.win10 }, { outerMajor: 9 }), E_INVALID_DATA],
  ];
  const p = await boundNdr32(h.port);
  let callId = 2;
  for (const [sent, hresult] of plan) {
    const { stub } = await call(p, sent.message, { callId: callId++ });
    t.equal(stub.hresult, hresult);
  }
  // RPC-level faults are not KMS requests: no 12290 record for them.
  p.send(requestPdu({ callId: 50, ctx: 3, stub: requestStub(v6({ group: GROUP.win10 }).message, 'ndr32') }));
  t.equal(parseFault((await p.expect())!).status, 0x1c010003);
  p.destroy();
  // A request's record is written in the same turn as its reply is sent: all are in once the fault is.
  const records = h.logs.filter((l) => l['eventId'] === 12290);
  t.equal(records.length, plan.length, 'one record per request');
  t.equal(h.outcomes.length, plan.length, 'one outcome per request');
  records.forEach((r, i) => {
    const hresult = plan[i]![1];
    t.equal(r['errorCode'], `0x${hresult.toString(16).toUpperCase().padStart(8, '0')}`, `record ${i}: the HRESULT`);
    t.equal(r['result'] === 'refused', hresult !== 0, `record ${i}: the result (${String(r['result'])})`);
  });
  const first = records[0]!;
  t.equal(first['clientMachineId'], cmid, 'CMID');
  t.equal(first['clientFqdn'], 'pc-42.branch.test', 'client FQDN');
  t.equal(first['minimumCountNeeded'], 25, 'minimum count needed');
  t.equal(first['vm'], true, 'VM flag');
  t.equal(first['licenseState'], 5, 'license state');
  t.equal(first['timeToStateExpirationMinutes'], 1234, 'minutes to state expiry');
  t.equal(first['activationId'], GROUP.win10.sku, 'Activation ID');
  t.type(first['clientTimestamp'], 'string', 'client timestamp');
  t.equal(first['currentCount'], 1);
});

t.test('C33 hostile clients never crash the host or delay others beyond the idle timeout', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.idleTimeoutSeconds = 1;
  });
  const started = Date.now();
  const hostile: [string, Peer][] = [];
  const open = async (what: string, first?: Buffer): Promise<Peer> => {
    const p = await Peer.open(h.port);
    if (first) p.send(first);
    hostile.push([what, p]);
    return p;
  };
  const garbage = randomBytes(300);
  garbage[0] = 5;
  garbage[1] = 0;
  await open('garbage', garbage);
  await open('HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: kms\r\n\r\n'));
  const truncated = bind([ITEM.ndr32(0)]);
  await open('truncated PDU', truncated.subarray(0, 40));
  await open('oversize frag_length', hex('05 00 0b 03 10 00 00 00 00 f0 00 00 02 00 00 00'));
  await open('idle');
  const drip = await open('slow drip');
  const whole = windowsBind();
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < whole.length && !drip.isClosed) drip.send(whole.subarray(sent, ++sent));
  }, 100);
  t.teardown(() => clearInterval(timer));

  for (let i = 0; i < 3; i++) {
    const before = Date.now();
    const sentReq = v6({ group: GROUP.win10 });
    const r = await activateOnce(h.port, sentReq);
    t.same(clientProblems(sentReq, r.response!), [], `good client ${i} served`);
    t.ok(Date.now() - before < 1000, `good client ${i} served within the idle timeout (${Date.now() - before} ms)`);
    await delay(300); // the good clients spread over the hostile ones' lifetime
  }
  await Promise.all(hostile.map(([, p]) => p.closed));
  clearInterval(timer);
  for (const [what, p] of hostile) {
    t.ok(p.closedAt! - started < 2500, `${what}: closed after ${p.closedAt! - started} ms`);
    if (what === 'HTTP' || what === 'oversize frag_length' || what === 'idle' || what === 'truncated PDU') {
      t.equal(p.pending, 0, `${what}: no reply`);
    }
  }
  const after = v6({ group: GROUP.win10 });
  t.same(clientProblems(after, (await activateOnce(h.port, after)).response!), [], 'the host still serves afterwards');
});
