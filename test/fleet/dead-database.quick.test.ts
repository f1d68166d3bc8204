// A fleet database that accepts connections and then never answers (a half-dead WAN link, a
// hung server): clients keep being served while the forwarder waits, the wait ends at
// fleet.postgres.connectTimeoutSeconds, the problem shows in fleetHealth(), and the appliance
// stops promptly. No PostgreSQL is needed: a loopback socket that swallows everything plays it.

import * as net from 'node:net';
import * as path from 'node:path';
import * as fs from 'node:fs';
import t from 'tap';
import { DEFAULTS } from '../../src/config/defaults';
import { activate } from '../../src/client/kms-client';
import { startHarness, product } from '../server/appliance-harness';
import { until } from '../wait';

t.test('a database that never answers costs the clients nothing', async (t) => {
  const held: net.Socket[] = [];
  const hole = net.createServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of held) s.destroy();
    hole.close();
  });
  const port = (hole.address() as net.AddressInfo).port;
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'kms-fleet-dead-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const passwordFile = path.join(dir, 'fleet.pw');
  fs.writeFileSync(passwordFile, 'never-sent\n', { mode: 0o600 });
  const caFile = path.join(dir, 'ca.pem');
  fs.writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTEST\n-----END CERTIFICATE-----\n');

  const h = await startHarness(t, (c) => {
    c.fleet = {
      ...DEFAULTS.fleet,
      siteName: 'Dead link',
      postgres: {
        ...DEFAULTS.fleet.postgres,
        enabled: true,
        host: '127.0.0.1',
        port,
        passwordFile,
        caFile,
        connectTimeoutSeconds: 0.5, // below the schema's minimum (the harness takes it as given): waiting it out is the test
        sendIntervalSeconds: 5,
      },
    } as typeof c.fleet;
  });
  const win = product('Windows 10/11 Enterprise');
  // The forwarder's first attempt starts one second after start and hangs in the black hole.
  await until(() => held.length > 0, 'the forwarder connecting to the black hole', { on: [{ emitter: hole, events: ['connection'] }] });
  t.ok(held.length > 0, 'the forwarder is connected to the black hole');
  const replies = [];
  for (let i = 0; i < 5; i++)
    replies.push(...(await activate({ host: h.host, port: h.port, product: win, workstation: `pc-${i}`, timeoutMs: 2000 })));
  t.same(
    replies.map((r) => r.hresult),
    [0, 0, 0, 0, 0],
    'clients are served while the forwarder waits',
  );

  // The give-up is logged (KMS_ERR_FLEET_SEND_FAILED): health is re-read at each log line.
  const health = await until(
    () => {
      const now = h.appliance.fleetHealth();
      return now?.failingSinceMs === null ? undefined : now;
    },
    'the forwarder giving up on the black hole',
    { on: [{ emitter: h.logged, events: ['line'] }] },
  );
  t.ok(health?.failingSinceMs !== null, 'the attempt gave up at the connect timeout');
  t.match(health?.lastError ?? '', /did not answer in time|was cut/, 'and says why in words');
  t.equal(health?.backlogEvents, 5, 'the activations wait in the outbox');
  t.ok(
    h.logs.some((l) => l.code === 'KMS_ERR_FLEET_SEND_FAILED'),
    'a warning was logged',
  );
  t.notMatch(JSON.stringify(h.logs), /never-sent/, 'the password is in no log line');
});
