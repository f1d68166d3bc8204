// The whole appliance registers itself in a real BIND 9 `named` (RFC 2136 UPDATE signed with TSIG
// HMAC-SHA256) with the port its KMS listener really uses, and removes the records when it stops.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { dig } from '../dns/dig';
import { startNamed } from '../dns/named';
import { logLine, startHarness } from './appliance-harness';

const ZONE = 'branch.test';
const KEY = 'kms-appliance-update';
const SECRET = randomBytes(32).toString('base64');

t.test('the appliance publishes _vlmcs._tcp in named on start and withdraws it on stop', async (t) => {
  const named = await startNamed(ZONE, KEY, SECRET);
  t.teardown(() => named.stop());
  const h = await startHarness(t, (c) => {
    const r = c.dns.registration as Record<string, unknown>;
    r['enabled'] = true;
    r['server'] = `127.0.0.1:${named.port}`;
    r['domains'] = [{ domain: ZONE, priority: 0, weight: 0 }];
    r['hostName'] = 'kms1';
    r['addresses'] = ['192.0.2.10'];
    r['tsig'] = { keyName: KEY, algorithm: 'hmac-sha256', secretBase64: SECRET, secretFile: '' };
  });
  const srvName = `_vlmcs._tcp.${ZONE}`;
  // The success line is written once named acknowledged the update.
  await logLine(h, (l) => l['eventId'] === 12294, 'the registration succeeding (event 12294)');
  const answer = (await dig('127.0.0.1', named.port, [srvName, 'SRV'])).answer.map((a) => [...a]);
  t.equal(answer.length, 1, 'named serves the SRV record');
  t.same(answer[0]?.slice(4), ['0', '0', String(h.port), `kms1.${ZONE}.`], 'priority 0, weight 0, the real KMS port, the target');
  t.ok(
    h.logs.some((l) => l['eventId'] === 12294),
    'success logged as event 12294',
  );

  await h.appliance.stop();
  const after = await dig('127.0.0.1', named.port, [srvName, 'SRV']);
  t.same(after.answer, [], 'removed on shutdown');
});
