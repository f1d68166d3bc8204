// A WAN outage: the fleet database goes away, activations go on, the outbox keeps everything,
// and when the database is back every machine and every request arrives exactly once, including
// a batch PostgreSQL committed whose acknowledgement never reached the box.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import type { Command } from '../../src/cli/command';
import { fleetStatus } from '../../src/cli/commands/fleet';
import { command as statusCommand } from '../../src/cli/commands/status';
import { WINDOW, obs } from '../store/observations';
import { FLEET_SETTING } from '../../src/store/fleet-outbox';
import { connectionOf } from '../../src/store/testing';
import { backoffMs } from '../../src/fleet/forwarder';
import { appliance, fleetDatabase, postgresForFile, rows, type PgServer } from './fleet-fixture';
import { until } from '../wait';

const NOW = Date.now();

async function runCommand(c: Command, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await c.run(argv, { stdout, stderr, env: {} });
  return { code, out, err };
}
let pg: PgServer;
t.before(async () => {
  pg = await postgresForFile(t);
});

async function remoteCounts(
  fleet: Awaited<ReturnType<typeof fleetDatabase>>,
): Promise<{ machines: number; events: number; distinctEvents: number }> {
  const db = await fleet.connectAs('superuser');
  try {
    const [r] = await rows<{ m: string; e: string; d: string }>(
      db,
      `SELECT (SELECT count(*) FROM kms_fleet.machines) AS m,
      (SELECT count(*) FROM kms_fleet.events) AS e, (SELECT count(DISTINCT (appliance_id, event_id)) FROM kms_fleet.events) AS d`,
    );
    return { machines: Number(r!.m), events: Number(r!.e), distinctEvents: Number(r!.d) };
  } finally {
    await db.end();
  }
}

t.test('database down, activations go on, database back: everything arrives once', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Outage'));
  for (let n = 1; n <= 20; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  await site.forwarder.syncNow();
  t.same(await remoteCounts(fleet), { machines: 20, events: 20, distinctEvents: 20 });

  pg.stop();
  // The outage: new machines, renewals and refusals keep being answered and stored locally.
  for (let n = 15; n <= 60; n++) site.store.recordActivation(obs(n), NOW + 60_000, WINDOW);
  site.store.recordRefusal(obs(500), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', NOW + 60_000);
  await t.rejects(site.forwarder.syncNow(), 'sending fails while the database is down');
  await t.rejects(site.forwarder.syncNow(), 'and again');
  const health = site.forwarder.health();
  t.equal(health.backlogEvents, 47, 'the 47 requests of the outage wait in the outbox');
  t.match(health.lastError ?? '', /refused the connection|was cut|did not answer/, 'the failure in words');
  t.ok(health.failingSinceMs !== null);
  t.match(health.problems.join('\n'), /fails since .* 47 events/, 'health names the problem and the backlog after repeated failures');
  t.ok(
    site.log.lines.some((l) => l.level === 'warn' && l.obj.code === 'KMS_ERR_FLEET_SEND_FAILED'),
    'one warning was logged',
  );
  const warnings = site.log.lines.filter((l) => l.level === 'warn').length;
  await t.rejects(site.forwarder.syncNow());
  t.equal(site.log.lines.filter((l) => l.level === 'warn').length, warnings, 'the same failure is not repeated at warn level');
  t.equal(site.log.lines.at(-1)!.level, 'debug', 'but logged at debug');

  // `fleet status` (and `status`) read the same from the box's database, without PostgreSQL.
  const p = site.forwarder.health();
  const config = path.join(site.dataDir, 'config.yaml');
  const fc = fleet.fleetConfig('Outage').postgres;
  fs.writeFileSync(
    config,
    `fleet:\n  postgres:\n    enabled: true\n    host: ${fc.host}\n    port: ${fc.port}\n    database: ${fc.database}\n` +
      `    passwordFile: ${fc.passwordFile}\n    caFile: ${fc.caFile}\n`,
  );
  const out = await runCommand(fleetStatus, ['--config', config, '--data-dir', site.dataDir]);
  t.equal(out.code, 0, out.err);
  t.match(out.out, /Fleet reporting: on, to kms_appliance@127\.0\.0\.1:\d+\/kms_fleet_\d+; appliance id [0-9a-f-]{36}/);
  t.match(out.out, /waiting in the outbox: 47 events/);
  t.match(out.out, /failing since .*refused the connection/);
  const json = JSON.parse((await runCommand(fleetStatus, ['--config', config, '--data-dir', site.dataDir, '--json'])).out) as {
    backlogEvents: number;
    applianceId: string;
  };
  t.same([json.backlogEvents, json.applianceId], [47, p.applianceId]);
  const status = await runCommand(statusCommand, ['--config', config, '--data-dir', site.dataDir]);
  t.match(
    status.out,
    /Fleet reporting: on.*\n.*last successful send: .*\n.*waiting in the outbox: 47 events/,
    '`status` shows the last successful send and the backlog',
  );

  pg.start();
  const sent = await site.forwarder.syncNow();
  t.same([sent.machines, sent.events], [47, 47], '41 new machines, 5 renewed, 1 refused; 47 requests');
  t.same(await remoteCounts(fleet), { machines: 61, events: 67, distinctEvents: 67 }, 'every record exactly once');
  t.same(site.forwarder.health().backlogEvents, 0);

  // The commit went through but the box never learned it (connection lost before the reply,
  // or the box crashed): it sends the same rows again, and the database keeps one copy.
  const local = connectionOf(site.store);
  local.prepare('DELETE FROM fleet_sent').run();
  local.prepare('UPDATE settings SET value = ? WHERE key = ?').run('0', FLEET_SETTING.eventsAcked);
  const resent = await site.forwarder.syncNow();
  t.same([resent.machines, resent.events], [61, 67], 'the whole outbox was delivered a second time');
  t.same(await remoteCounts(fleet), { machines: 61, events: 67, distinctEvents: 67 }, 'and nothing is there twice');
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const [m] = await rows<{ requests: number; last_seen: Date }>(db, 'SELECT requests, last_seen FROM kms_fleet.machines WHERE cmid = $1', [
    obs(16).clientMachineId,
  ]);
  t.same([m!.requests, m!.last_seen.getTime()], [2, NOW + 60_000], 'a machine keeps its latest state');
});

t.test('the timer retries with backoff and delivers once the database is back', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Timer', { sendIntervalSeconds: 5 }), { firstRetryMs: 50, maxBackoffMs: 200 });
  pg.stop();
  for (let n = 1; n <= 30; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  site.forwarder.start(0);
  // The forwarder's timer runs on its own: its health is re-read every few ms (no event to wait on).
  await until(() => site.forwarder.health().failingSinceMs !== null, 'the forwarder noticing the outage', { everyMs: 10 });
  pg.start();
  const counts = await until(
    async () => {
      const c = await remoteCounts(fleet);
      return c.events >= 30 ? c : undefined;
    },
    'the outbox arriving in the fleet database',
    { everyMs: 50 },
  );
  t.same(counts, { machines: 30, events: 30, distinctEvents: 30 }, 'the outbox was sent without anyone asking');
  await until(() => site.forwarder.health().failingSinceMs === null, 'the forwarder seeing it works again', { everyMs: 10 });
  t.equal(site.forwarder.health().failingSinceMs, null, 'and the forwarder knows it works again');
  t.ok(
    site.log.lines.some((l) => l.obj.event === 'fleet-recovered'),
    'recovery is logged',
  );
  await site.forwarder.stop();
});

t.test('a full outbox drops the oldest events with one warning; machines are still sent', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Full', { maxBacklogEvents: 1000 }));
  for (let n = 1; n <= 1300; n++) site.store.recordActivation(obs(n % 400), NOW + n, WINDOW);
  const sent = await site.forwarder.syncNow();
  t.equal(sent.events, 1000, 'the newest 1000 events were sent');
  t.equal(sent.machines, 400, 'every machine was sent');
  const warn = site.log.lines.filter((l) => l.obj.code === 'KMS_ERR_FLEET_OUTBOX_FULL');
  t.equal(warn.length, 1, 'one warning');
  t.match(warn[0]!.msg, /oldest 300 .*events.*machine inventory is still sent in full and local counting is unaffected/);
  t.equal(site.forwarder.health().droppedEvents, 300);
  t.match(site.forwarder.health().problems.join('\n'), /300 activation\/refusal events were never sent/);
  const db = await fleet.connectAs('superuser');
  t.teardown(() => db.end());
  const [r] = await rows<{ lo: string; n: string }>(db, 'SELECT min(event_id) AS lo, count(*) AS n FROM kms_fleet.events');
  t.same([Number(r!.lo), Number(r!.n)], [301, 1000], 'the oldest were dropped, not the newest');
});

t.test('event ids that start again after the whole log was pruned are not taken for duplicates', async (t) => {
  const fleet = await fleetDatabase(pg);
  const site = appliance(t, fleet.fleetConfig('Restart'));
  for (let n = 1; n <= 5; n++) site.store.recordActivation(obs(n), NOW, WINDOW);
  await site.forwarder.syncNow();
  connectionOf(site.store).prepare('DELETE FROM events').run(); // retention pruned everything
  for (let n = 6; n <= 8; n++) site.store.recordActivation(obs(n), NOW + 1000, WINDOW);
  const sent = await site.forwarder.syncNow();
  t.equal(sent.events, 3);
  t.same((await remoteCounts(fleet)).events, 8, 'the new events 1..3 did not collide with the old 1..3');
});

t.test('backoff grows, is capped and jittered', async (t) => {
  t.equal(
    backoffMs(1, 5000, 600_000, () => 1),
    5000,
  );
  t.equal(
    backoffMs(4, 5000, 600_000, () => 1),
    40_000,
  );
  t.equal(
    backoffMs(40, 5000, 600_000, () => 1),
    600_000,
    'capped',
  );
  t.equal(
    backoffMs(4, 5000, 600_000, () => 0),
    20_000,
    'jitter takes up to half off',
  );
});
