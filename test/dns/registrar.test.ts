import t from 'tap';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { DEFAULTS, type DnsRegistrationConfig } from '../../src/config/defaults';
import { startRegistrar, publishableAddresses, EVENT_PUBLISH_FAILED, EVENT_PUBLISH_OK } from '../../src/dns/registrar';
import type { DnsLog } from '../../src/dns/dns-responder';
import { dig } from './dig';
import { startNamed, type NamedInstance } from './named';
import { until } from '../wait';

const ZONE = 'site.test';
const KEY = 'kms-update';
const SECRET = randomBytes(32).toString('base64');

/** The registrar's log lines, kept and announced ('line' on `logged`) so a test can wait for one. */
function captureLog(): { log: DnsLog; lines: { level: string; obj: Record<string, unknown>; msg?: string }[]; logged: EventEmitter } {
  const lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  const logged = new EventEmitter();
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
    logged.emit('line');
  };
  return { lines, logged, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

function registration(named: NamedInstance, over: Partial<DnsRegistrationConfig> = {}): DnsRegistrationConfig {
  return {
    ...DEFAULTS.dns.registration,
    enabled: true,
    server: `127.0.0.1:${named.port}`,
    domains: [{ domain: ZONE, priority: 0, weight: 0 }],
    hostName: 'kms-appliance',
    addresses: ['192.0.2.77', '2001:db8::77'],
    ttlSeconds: 300,
    tsig: { keyName: KEY, algorithm: 'hmac-sha256', secretBase64: SECRET, secretFile: '' },
    removeOnShutdown: true,
    ...over,
  };
}

const srvOf = (r: { answer: readonly string[][] }) => r.answer.map((a) => a.slice(4).join(' ')).sort();

t.test('registers in a real BIND 9 named with TSIG, and removes the records on shutdown', async (t) => {
  const named = await startNamed(ZONE, KEY, SECRET);
  t.teardown(() => named.stop());
  const { log, lines } = captureLog();
  const reg = startRegistrar(registration(named), { kmsPort: 1688, hostName: 'ignored', addresses: () => [], log }, { addressPollMs: 0 });
  const results = await reg.ready;
  t.match(results, [{ domain: ZONE, ok: true, event: EVENT_PUBLISH_OK, target: 'kms-appliance.site.test', port: 1688 }]);
  const st = reg.status();
  t.ok(st.lastSuccessMs !== null && Math.abs(st.lastSuccessMs - Date.now()) < 60_000, 'status: last success recorded');
  t.equal(st.failures, 0, 'status: no failures');
  t.equal(st.lastError, null);
  t.equal(st.refreshMs, registration(named).refreshMinutes * 60_000, 'status: refresh interval');
  const okLine = lines.find((l) => l.obj.event === EVENT_PUBLISH_OK);
  t.ok(okLine, 'event 12294 logged');
  t.equal(okLine?.obj.domain, ZONE);

  const srv = await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`]);
  t.equal(srv.status, 'NOERROR');
  t.same(srvOf(srv), ['0 0 1688 kms-appliance.site.test.'], 'named serves our SRV');
  const a = await dig('127.0.0.1', named.port, ['A', `kms-appliance.${ZONE}`]);
  t.same(
    a.answer.map((x) => x[4]),
    ['192.0.2.77'],
  );
  const aaaa = await dig('127.0.0.1', named.port, ['AAAA', `kms-appliance.${ZONE}`]);
  t.same(
    aaaa.answer.map((x) => x[4]),
    ['2001:db8::77'],
  );

  // A second appliance in the same domain, on another port with another priority.
  const other = startRegistrar(
    registration(named, { hostName: 'kms-second', addresses: ['192.0.2.78'], domains: [{ domain: ZONE, priority: 10, weight: 5 }] }),
    { kmsPort: 11688, hostName: 'x', addresses: () => [], log },
    { addressPollMs: 0 },
  );
  t.match(await other.ready, [{ ok: true }]);
  t.same(
    srvOf(await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`])),
    ['0 0 1688 kms-appliance.site.test.', '10 5 11688 kms-second.site.test.'],
    'both hosts published',
  );

  // Re-registering is idempotent: still one record for us.
  t.match(await reg.registerNow(), [{ ok: true }]);
  t.same(srvOf(await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`])), [
    '0 0 1688 kms-appliance.site.test.',
    '10 5 11688 kms-second.site.test.',
  ]);

  const removed = await reg.stop();
  t.match(removed, [{ action: 'remove', ok: true }]);
  t.same(
    srvOf(await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`])),
    ['10 5 11688 kms-second.site.test.'],
    'only our record is gone',
  );
  const gone = await dig('127.0.0.1', named.port, ['A', `kms-appliance.${ZONE}`]);
  t.equal(gone.status, 'NXDOMAIN', 'our address records are gone');

  await other.stop();
  const none = await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`]);
  t.equal(none.status, 'NXDOMAIN', 'no SRV left after both shut down');
});

t.test('a changed port replaces our stale SRV; address changes trigger a new registration', async (t) => {
  const named = await startNamed(ZONE, KEY, SECRET);
  t.teardown(() => named.stop());
  const { log, lines, logged } = captureLog();
  const first = startRegistrar(
    registration(named, { removeOnShutdown: false }),
    { kmsPort: 1688, hostName: 'x', addresses: () => [], log },
    { addressPollMs: 0 },
  );
  t.match(await first.ready, [{ ok: true }]);
  await first.stop();
  let addrs = ['192.0.2.90'];
  const second = startRegistrar(
    registration(named, { addresses: [] }),
    { kmsPort: 2688, hostName: 'x', addresses: () => [...addrs, '127.0.0.1', 'fe80::1'], log },
    { addressPollMs: 50 },
  );
  t.teardown(() => second.stop());
  t.match(await second.ready, [{ ok: true, port: 2688, addresses: ['192.0.2.90'] }]);
  t.same(
    srvOf(await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`])),
    ['0 0 2688 kms-appliance.site.test.'],
    'the record for the old port is gone',
  );
  addrs = ['192.0.2.91'];
  // The registrar notices the change on its next address poll and says when named took the update.
  await until(
    () => lines.some((l) => l.obj.event === EVENT_PUBLISH_OK && String(l.obj.addresses) === '192.0.2.91'),
    'the registrar publishing the new address',
    { on: [{ emitter: logged, events: ['line'] }] },
  );
  const seen = (await dig('127.0.0.1', named.port, ['A', `kms-appliance.${ZONE}`])).answer.map((x) => x[4]!);
  t.same(seen, ['192.0.2.91'], 'new address published, loopback and link-local never');
});

t.test('a wrong TSIG secret or key name is reported as KMS_ERR_DNS_TSIG_BAD with event 12293', async (t) => {
  const named = await startNamed(ZONE, KEY, SECRET);
  t.teardown(() => named.stop());
  for (const [what, over] of [
    [
      'wrong secret',
      { tsig: { keyName: KEY, algorithm: 'hmac-sha256' as const, secretBase64: randomBytes(32).toString('base64'), secretFile: '' } },
    ],
    ['unknown key name', { tsig: { keyName: 'nobody', algorithm: 'hmac-sha256' as const, secretBase64: SECRET, secretFile: '' } }],
  ] as const) {
    const { log, lines } = captureLog();
    // BIND's refusals here are unsigned, so the registrar waits out its timeout for a signed answer (RFC 8945 §5.4).
    const reg = startRegistrar(
      registration(named, over),
      { kmsPort: 1688, hostName: 'x', addresses: () => [], log },
      { addressPollMs: 0, timeoutMs: 500 },
    );
    const [r] = await reg.ready;
    t.equal(r?.ok, false, what);
    t.equal(r?.code, 'KMS_ERR_DNS_TSIG_BAD', `${what}: code`);
    t.equal(r?.event, EVENT_PUBLISH_FAILED, `${what}: event 12293`);
    const line = lines.find((l) => l.obj.event === EVENT_PUBLISH_FAILED);
    t.equal(line?.obj.domain, ZONE, `${what}: the failure names the domain`);
    t.equal(line?.level, 'warn');
    await reg.stop();
  }
  const srv = await dig('127.0.0.1', named.port, ['SRV', `_vlmcs._tcp.${ZONE}`]);
  t.equal(srv.status, 'NXDOMAIN', 'nothing was published');
});

t.test('a zone the server does not serve, and a server that does not answer, are 12293 failures', async (t) => {
  const named = await startNamed(ZONE, KEY, SECRET);
  t.teardown(() => named.stop());
  const { log } = captureLog();
  const wrongZone = startRegistrar(
    registration(named, { domains: [{ domain: 'other.test', priority: 0, weight: 0 }] }),
    { kmsPort: 1688, hostName: 'x', addresses: () => [], log },
    { addressPollMs: 0, timeoutMs: 500 },
  );
  const [r] = await wrongZone.ready;
  t.equal(r?.ok, false);
  t.ok(r?.code === 'KMS_ERR_DNS_UPDATE_FAILED' || r?.code === 'KMS_ERR_DNS_TSIG_BAD', `zone not served: ${r?.code} (${r?.reason})`);
  await wrongZone.stop();
  const dead = startRegistrar(
    registration(named, { server: '127.0.0.1:9' }),
    { kmsPort: 1688, hostName: 'x', addresses: () => [], log },
    { addressPollMs: 0, timeoutMs: 300 },
  );
  const [d] = await dead.ready;
  t.equal(d?.code, 'KMS_ERR_DNS_SERVER_UNREACHABLE');
  t.match(dead.status(), { lastSuccessMs: null, failures: 1, lastError: /did not answer/ }, 'status: the failure counted, with its reason');
  t.equal(d?.event, EVENT_PUBLISH_FAILED);
  await dead.stop();
});

t.test('configuration problems are ConfigErrors; addresses worth publishing', async (t) => {
  const { log } = captureLog();
  const base = {
    ...DEFAULTS.dns.registration,
    server: '127.0.0.1',
    domains: [{ domain: ZONE, priority: 0, weight: 0 }],
    tsig: { keyName: KEY, algorithm: 'hmac-sha256' as const, secretBase64: SECRET, secretFile: '' },
  };
  const ctx = { kmsPort: 1688, hostName: 'x', addresses: () => [], log };
  t.throws(() => startRegistrar({ ...base, tsig: { ...base.tsig, secretBase64: '' } }, ctx), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.throws(() => startRegistrar({ ...base, tsig: { ...base.tsig, secretBase64: '', secretFile: '/nonexistent/key' } }, ctx), {
    code: 'KMS_ERR_CONFIG_UNREADABLE',
  });
  t.throws(() => startRegistrar({ ...base, server: 'dns.example' }, ctx), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.throws(() => startRegistrar({ ...base, domains: [] }, ctx), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.same(publishableAddresses(['127.0.0.1', '::1', 'fe80::1%eth0', '10.1.2.3', '2001:DB8::5', '169.254.1.1']), ['10.1.2.3', '2001:db8::5']);
});
