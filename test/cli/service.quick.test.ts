// The service shape: a stack starts services in order, closes them in reverse (a failing close
// does not stop the rest), cleans up after a failed start, and joins each service's own reload
// outcome; the appliance built from it reports per-service reload outcomes.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { startAppliance } from '../../src/cli/appliance';
import { changedKeys, ServiceStack, type ReloadOutcome, type Service } from '../../src/cli/service';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { createLogger } from '../../src/logging/logger';
import { startHarness, testConfig, type ConfigEdit } from '../server/appliance-harness';

function capturedLog(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination: sink }), lines };
}

function fake(
  name: string,
  events: string[],
  options: { closeFails?: boolean; reload?: (next: AppConfig) => ReloadOutcome } = {},
): Service {
  events.push(`start ${name}`);
  return {
    name,
    reload: (next) => options.reload?.(next) ?? { applied: [`${name} applied`], needsRestart: [] },
    close: async () => {
      events.push(`close ${name}`);
      if (options.closeFails) throw new Error(`${name} would not close`);
    },
  };
}

function edited(edit: ConfigEdit, from: AppConfig = DEFAULTS): AppConfig {
  const c = structuredClone(from) as Parameters<ConfigEdit>[0];
  edit(c);
  return c as AppConfig;
}

t.test('services start in order and close in reverse; a failing close is logged and the rest still close', async (t) => {
  const { log, lines } = capturedLog();
  const stack = new ServiceStack(DEFAULTS, log);
  const events: string[] = [];
  await stack.start(() => fake('a', events));
  await stack.start(async () => fake('b', events, { closeFails: true }));
  await stack.start(() => fake('c', events));
  await stack.close();
  t.same(events, ['start a', 'start b', 'start c', 'close c', 'close b', 'close a']);
  t.equal(lines.filter((l) => l['msg'] === 'error while stopping').length, 1, 'the failed close is logged once');
  await stack.close();
  t.equal(events.length, 6, 'a second close closes nothing twice');
});

t.test('a start that fails: what already started closes, in reverse, quietly; the failed one is not closed', async (t) => {
  const { log, lines } = capturedLog();
  const stack = new ServiceStack(DEFAULTS, log);
  const events: string[] = [];
  await stack.start(() => fake('a', events));
  await stack.start(() => fake('b', events, { closeFails: true }));
  await t.rejects(
    stack.start(() => {
      throw new Error('port in use');
    }),
    { message: 'port in use' },
  );
  await stack.abandon();
  t.same(events, ['start a', 'start b', 'close b', 'close a']);
  t.equal(lines.length, 0, 'nothing logged: the start error is the one reported');
});

t.test('reload joins each service outcome in start order; a refused reload changes nothing', async (t) => {
  const { log } = capturedLog();
  const stack = new ServiceStack(DEFAULTS, log);
  const events: string[] = [];
  const seen: string[] = [];
  await stack.start(() =>
    fake('a', events, {
      reload: (next) => {
        seen.push(`a ${next.kms.renewalIntervalMinutes}`);
        return { applied: ['a applied'], needsRestart: ['a.key'] };
      },
    }),
  );
  await stack.start(() => {
    const s = fake('b', events);
    return {
      ...s,
      reload: (next, running) => {
        if (next.kms.renewalIntervalMinutes === 15) throw new Error('refused');
        return { applied: [], needsRestart: changedKeys('kms', running.kms, next.kms) };
      },
    };
  });
  const next = edited((c) => (c.kms.renewalIntervalMinutes = 1440));
  t.same(stack.reload(next), { applied: ['a applied'], needsRestart: ['a.key', 'kms.renewalIntervalMinutes'] });
  t.equal(stack.config, next, 'the new configuration is in force');
  const refused = edited((c) => (c.kms.renewalIntervalMinutes = 15), next);
  t.throws(() => stack.reload(refused), { message: 'refused' });
  t.equal(stack.config, next, 'a refused reload leaves the running configuration');
  const again = edited((c) => (c.kms.activationIntervalMinutes = 60), next);
  t.same(
    stack.reload(again).needsRestart,
    ['a.key', 'kms.activationIntervalMinutes'],
    'diffed against what is in force, not the refused file',
  );
  t.same(seen, ['a 1440', 'a 15', 'a 1440']);
});

t.test('changedKeys names the keys of a section that differ, by value', async (t) => {
  t.same(changedKeys('dns', DEFAULTS.dns, structuredClone(DEFAULTS.dns)), [], 'a copy is no change');
  const next = edited((c) => {
    c.dns.zones = [{ domain: 'example.test', ttlSeconds: 60, hosts: [] }];
    c.dns.mdns.enabled = true;
  });
  t.same(changedKeys('dns', DEFAULTS.dns, next.dns), ['dns.zones', 'dns.mdns']);
  t.same(changedKeys('dns', DEFAULTS.dns, next.dns, ['listen', 'zones']), ['dns.zones'], 'limited to the keys asked for');
});

t.test('the appliance reload: each service applies or names its own keys', async (t) => {
  const h = await startHarness(t);
  const running = h.appliance.config;
  t.same(h.appliance.reload(running), {
    applied: ['kms (intervals, checks, limits, allowlist, NDR64/BTFN for new connections)', 'host', 'entitlements', 'log.level'],
    needsRestart: [],
  });
  const next = edited((c) => {
    c.kms.renewalIntervalMinutes = 1440;
    c.kms.listen = ['127.0.0.1:1'];
    c.store.maxEvents = running.store.maxEvents + 1;
    c.catalog.file = '/nowhere/catalog.json';
    c.dns.zones = [{ domain: 'example.test', ttlSeconds: 60, hosts: [] }];
    c.dns.registration.refreshMinutes = running.dns.registration.refreshMinutes + 1;
    c.dns.mdns.instanceName = 'other';
    c.fleet.siteName = 'branch';
    c.admin.maxConnections = running.admin.maxConnections + 1;
    c.log.level = 'warn';
  }, running);
  const report = h.appliance.reload(next);
  t.same(report.needsRestart, [
    'store.maxEvents',
    'kms.listen',
    'catalog.file',
    'dns.zones',
    'dns.registration.refreshMinutes',
    'dns.mdns.instanceName',
    'fleet.siteName',
    'admin.maxConnections',
  ]);
  t.ok(report.applied.includes('log.level'));
  t.equal(h.appliance.config, next);
  t.equal(h.appliance.config.kms.renewalIntervalMinutes, 1440);

  const refused = edited((c) => (c.host.hostKeyGroups = ['no such host-key group']), next);
  t.throws(() => h.appliance.reload(refused), 'an unusable host-key group refuses the whole reload');
  t.equal(h.appliance.config, next, 'and the running configuration stays');
});

t.test('a failure while starting closes what already started (the KMS listener frees its port)', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-service-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const kmsPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));

  const { log } = capturedLog();
  const config = testConfig((c) => {
    c.store.dataDir = dataDir;
    c.kms.listen = [`127.0.0.1:${kmsPort}`];
    // Refused by the exposure rule (beyond loopback without TLS and a password) before it binds
    // anything: the last service fails after every other one started.
    c.admin.listen = ['0.0.0.0:0'];
  });
  await t.rejects(startAppliance(config, { log }), { code: 'KMS_ERR_CONFIG_ADMIN_EXPOSED' });
  const again = net.createServer();
  await t.resolves(
    new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(kmsPort, '127.0.0.1', resolve);
    }),
    'the KMS port is free again (EADDRINUSE here means the listener was left open)',
  );
  t.equal((again.address() as net.AddressInfo).port, kmsPort);
  await new Promise<void>((r) => again.close(() => r()));
});
