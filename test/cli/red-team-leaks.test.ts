// Leaks over years of uptime: state that grows with what peers send, with reloads or with time,
// in the parts of the appliance that live as long as the process.
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import t, { type Test } from 'tap';
import { memoizeNames, type NameResolver } from '../../src/catalog/name-resolver';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startAppliance } from '../../src/cli/appliance';
import { activate } from '../../src/client/kms-client';
import { createLogger } from '../../src/logging/logger';
import { product } from '../server/appliance-harness';
import { until } from '../wait';

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] };

/** Every listener on loopback: the KMS service, the DNS responder (UDP and TCP) and the plain admin page. */
function loopbackConfig(dataDir: string, variant: 0 | 1): AppConfig {
  const c = structuredClone(DEFAULTS) as Mutable<AppConfig>;
  c.store.dataDir = dataDir;
  c.kms.listen = ['127.0.0.1:0'];
  c.dns.listen = ['127.0.0.1:0'];
  c.admin.listen = ['127.0.0.1:0'];
  // Reloadable: KMS intervals, limits and the log level; needing a restart: the zone's TTL, the mDNS name.
  c.kms.activationIntervalMinutes = variant ? 240 : 120;
  c.kms.idleTimeoutSeconds = variant ? 60 : 30;
  c.kms.maxConnectionsPerAddress = variant ? 32 : 64;
  c.log.level = variant ? 'warn' : 'info';
  c.dns.zones = [{ domain: 'leaks.example.org', ttlSeconds: variant ? 301 : 300, hosts: [] }];
  c.dns.mdns.instanceName = variant ? 'leaks-b' : 'leaks-a';
  return c as AppConfig;
}

/** The process's open resources by kind (handles and timers), in a form two snapshots compare by. */
function resources(): Record<string, number> {
  const by: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo().sort()) by[r] = (by[r] ?? 0) + 1;
  return by;
}

function openFds(): number | undefined {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return undefined; // not Linux: the handle counts still tell
  }
}

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-leaks-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A resolver that counts how often each id had to be resolved. */
function countingResolver(): { names: NameResolver; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const note = (key: string, name: string): string => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    return name;
  };
  return {
    calls,
    names: {
      applicationName: (id) => note(`app ${id}`, `application ${id}`),
      groupName: (id) => note(`group ${id}`, `group ${id}`),
      skuName: (activationId, groupId) => note(`sku ${activationId}/${groupId}`, `unknown edition (${activationId})`),
    },
  };
}

function guidOf(i: number): string {
  return `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
}

// Hosts serve Activation IDs they do not know (PROTOCOL.md §4.2), so the ids in the database are
// whatever clients sent. The snapshot worker and the fleet forwarder keep one memo for the life of
// the process: one that remembers every id it was ever asked for grows with every id a client invents.
t.test('the name memo is bounded: ids invented by clients do not accumulate for the life of the process', async (t) => {
  const { names, calls } = countingResolver();
  const memo = memoizeNames(names);
  const group = guidOf(0xffff);
  memo.skuName(guidOf(0), group);
  memo.skuName(guidOf(0), group);
  t.equal(calls.get(`sku ${guidOf(0)}/${group}`), 1, 'an id asked for again is answered from the memo');
  for (let i = 1; i <= 100_000; i++) {
    memo.skuName(guidOf(i), group);
    memo.applicationName(guidOf(i));
    memo.groupName(guidOf(i));
  }
  memo.skuName(guidOf(0), group);
  memo.applicationName(guidOf(1));
  memo.groupName(guidOf(1));
  t.equal(calls.get(`sku ${guidOf(0)}/${group}`), 2, 'after 100,000 other SKU ids the first one was forgotten');
  t.equal(calls.get(`app ${guidOf(1)}`), 2, 'after 100,000 application ids the first one was forgotten');
  t.equal(calls.get(`group ${guidOf(1)}`), 2, 'after 100,000 group ids the first one was forgotten');
  t.equal(memo.skuName(guidOf(0), group), `unknown edition (${guidOf(0)})`, 'a forgotten id is resolved again, with the same name');
});

// A SIGHUP reload (serve.ts calls appliance.reload with the file just loaded) rebuilds the KMS
// handler, the host identity and the settings: none of it may leave a timer, socket or listener behind.
t.test('hundreds of reloads leave no handle, timer or signal listener behind', async (t) => {
  const dataDir = tempDir(t);
  const appliance = await startAppliance(loopbackConfig(dataDir, 0), { log: createLogger({ level: 'silent' }) });
  t.teardown(() => appliance.stop());
  const before = resources();
  const signals = ['SIGHUP', 'SIGTERM', 'exit', 'warning'].map((e) => process.listenerCount(e));
  const fds = openFds();
  for (let i = 1; i <= 300; i++) {
    const report = appliance.reload(loopbackConfig(dataDir, (i % 2) as 0 | 1));
    if (i === 1) t.same(report.needsRestart, ['dns.zones', 'dns.mdns.instanceName'], 'the restart-only changes are named, not applied');
  }
  t.equal(appliance.config.kms.activationIntervalMinutes, 120, 'the last configuration reloaded is in force');
  t.same(resources(), before, 'the same handles and timers after 300 reloads');
  t.same(
    ['SIGHUP', 'SIGTERM', 'exit', 'warning'].map((e) => process.listenerCount(e)),
    signals,
    'no listener added to the process',
  );
  if (fds !== undefined) t.equal(openFds(), fds, 'the same number of open file descriptors');
});

/** A short KMS exchange that breaks off: a bind cut short, or bytes that are no PDU at all. */
function brokenKmsConnection(port: number, localAddress: string, i: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.on('connect', () => {
      s.write(i % 2 ? Buffer.from([5, 0, 11, 3, 16, 0, 0, 0, 0x48, 0]) : Buffer.alloc(20, i));
      setImmediate(() => s.destroy());
    });
  });
}

function srvQuery(id: number): Buffer {
  const name = '_vlmcs._tcp.leaks.example.org'.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  return Buffer.concat([Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...name, Buffer.from([0, 0, 33, 0, 1])]);
}

function udpQuery(port: number, localAddress: string, id: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (answered: boolean): void => {
      clearTimeout(timer);
      s.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), 2000);
    s.on('error', () => done(false));
    s.on('message', () => done(true));
    s.bind(0, localAddress, () => s.send(srvQuery(id), port, '127.0.0.1'));
  });
}

function tcpQuery(port: number, localAddress: string, id: number): Promise<boolean> {
  return new Promise((resolve) => {
    let answered = false;
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => resolve(answered));
    s.on('close', () => resolve(answered));
    s.on('connect', () => {
      const q = srvQuery(id);
      const framed = Buffer.alloc(2 + q.length);
      framed.writeUInt16BE(q.length);
      q.copy(framed, 2);
      // Every other client half-closes at once (a query and its FIN together).
      if (id % 2) s.end(framed);
      else s.write(framed);
    });
    s.on('data', () => {
      answered = true;
      s.destroy();
    });
  });
}

function adminRequest(port: number, localAddress: string, i: number): Promise<number> {
  const paths = ['/', '/api/status', '/metrics', '/healthz', '/login'];
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        path: paths[i % paths.length],
        agent: false,
        headers: i % 2 ? { authorization: `Basic ${Buffer.from(`admin:guess${i}`).toString('base64')}` } : {},
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.end();
  });
}

// Many short-lived peers on every listener, from many addresses: once they are gone, the
// appliance holds what it held before (per-address tables and timers are released with them).
t.test('connections from many addresses on every listener are all released once the peers leave', async (t) => {
  const dataDir = tempDir(t);
  const appliance = await startAppliance(loopbackConfig(dataDir, 0), { log: createLogger({ level: 'silent' }) });
  t.teardown(() => appliance.stop());
  const kmsPort = appliance.kmsAddresses[0]!.port;
  const dnsPort = appliance.dnsAddresses[0]!.port;
  const adminPort = appliance.adminAddresses[0]!.port;
  // The admin page's snapshot worker starts on the first request and stays: started before the baseline.
  t.equal(await adminRequest(adminPort, '127.0.0.1', 1), 200, 'the admin page answers');
  const settled = (): boolean => !Object.keys(resources()).some((kind) => kind.startsWith('TCPSocket') || kind.includes('Shutdown'));
  await until(settled, 'the first admin connection closed', { everyMs: 20 });
  const before = resources();
  const fds = openFds();
  const win = product('Windows 10/11 Enterprise');
  let udpAnswered = 0;
  let tcpAnswered = 0;
  let adminAnswered = 0;
  let served = 0;
  for (let round = 0; round < 5; round++) {
    const work: Promise<unknown>[] = [];
    for (let k = 0; k < 40; k++) {
      const i = round * 40 + k;
      const from = `127.0.${1 + (i >> 6)}.${1 + (i & 63)}`;
      work.push(brokenKmsConnection(kmsPort, from, i));
      work.push(udpQuery(dnsPort, from, i).then((ok) => void (udpAnswered += ok ? 1 : 0)));
      work.push(tcpQuery(dnsPort, from, i).then((ok) => void (tcpAnswered += ok ? 1 : 0)));
      work.push(adminRequest(adminPort, from, i).then((status) => void (adminAnswered += status === 200 ? 1 : 0)));
    }
    work.push(activate({ host: '127.0.0.1', port: kmsPort, product: win, requests: 3 }).then((r) => void (served += r.length)));
    await Promise.all(work);
  }
  t.equal(served, 15, 'the KMS clients were served while the others came and went');
  t.equal(udpAnswered, 200, 'every UDP query was answered');
  t.equal(tcpAnswered, 200, 'every TCP query was answered');
  t.equal(adminAnswered, 200, 'every admin request was answered');
  // Polled with a timer that has fired by the time of each look (a waiting helper's own timers would count).
  const same = (): boolean => isDeepStrictEqual(resources(), before) && (fds === undefined || openFds() === fds);
  for (let look = 0; look < 250 && !same(); look++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.same(resources(), before, 'the same handles and timers once the peers left');
  if (fds !== undefined) t.equal(openFds(), fds, 'the same number of open file descriptors');
});
