// The admin router without sockets (inject-style requests into a running appliance): login by
// Basic and by form with a session cookie, the throttle after wrong passwords, /healthz without
// login, /metrics counters, and the machine list's keyset pages and search.
import t from 'tap';
import type { Test } from 'tap';
import { activate } from '../../src/client/kms-client';
import { product, startHarness, type Harness } from '../server/appliance-harness';
import { storeCheapPassword } from './cheap-password';
import type { AdminRequest, AdminResponse } from '../../src/admin/router';
import { SESSION_COOKIE } from '../../src/admin/login';
import { until } from '../wait';

const PASSWORD = 'correct horse battery';

function inject(h: Harness, o: Partial<AdminRequest> & { url: string }): Promise<AdminResponse> {
  return h.appliance.admin!.router.handle({
    method: 'GET',
    headers: { host: 'localhost', ...o.headers },
    remoteAddress: '127.0.0.1',
    localAddress: '127.0.0.1',
    tls: false,
    ...o,
  });
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function withPassword(t: Test): Promise<Harness> {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  // The running admin sees the new file at its next request.
  storeCheapPassword(h.dataDir, PASSWORD);
  return h;
}

t.test('without a password (loopback) every page opens; with one every request but /healthz needs it', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  t.equal((await inject(h, { url: '/api/status' })).status, 200, 'loopback, no password: first steps work');
  storeCheapPassword(h.dataDir, PASSWORD);
  t.equal((await inject(h, { url: '/healthz' })).status, 200, '/healthz needs no login');
  const page = await inject(h, { url: '/' });
  t.equal(page.status, 303, 'a browser is sent to the login form');
  t.equal(page.headers['location'], '/login');
  for (const url of ['/api/status', '/api/machines', '/metrics']) {
    const r = await inject(h, { url });
    t.equal(r.status, 401, `${url} without credentials`);
    t.match(String(r.headers['www-authenticate']), /^Basic realm="kms-appliance"/);
    t.notMatch(r.body, /Windows|cmid/i, 'nothing of the inventory');
  }
  t.equal((await inject(h, { url: '/api/status', headers: { host: 'localhost', authorization: basic('admin', PASSWORD) } })).status, 200);
  t.equal((await inject(h, { url: '/metrics', headers: { host: 'localhost', authorization: basic('admin', PASSWORD) } })).status, 200);
  t.equal(
    (await inject(h, { url: '/api/status', headers: { host: 'localhost', authorization: basic('root', PASSWORD) } })).status,
    401,
    'the user is admin',
  );
});

t.test('wrong passwords are logged with the address and then throttled; the right one waits too', async (t) => {
  const h = await withPassword(t);
  const from = (remoteAddress: string, password: string) =>
    inject(h, { url: '/api/status', remoteAddress, headers: { host: 'localhost', authorization: basic('admin', password) } });
  for (let i = 0; i < 5; i++) t.equal((await from('192.0.2.7', `guess-${i}`)).status, 401);
  const failures = h.logs.filter((l) => l['code'] === 'KMS_ERR_ADMIN_LOGIN_FAILED');
  t.equal(failures.length, 5, 'each failure logged');
  t.equal(failures[0]?.['clientAddress'], '192.0.2.7', 'with the address');
  t.notMatch(JSON.stringify(failures), /guess-/, 'never the password tried');
  const locked = await from('192.0.2.7', PASSWORD);
  t.equal(locked.status, 429, 'locked out, even with the right password');
  t.ok(Number(locked.headers['retry-after']) >= 1);
  t.equal((await from('192.0.2.8', PASSWORD)).status, 200, 'another address is not affected');
  // An IPv6 client is throttled by its /64: changing the interface id does not help.
  for (let i = 0; i < 5; i++) await from(`2001:db8:1:2::${i + 1}`, 'wrong');
  t.equal((await from('2001:db8:1:2::99', PASSWORD)).status, 429);
  t.equal((await from('2001:db8:1:3::1', PASSWORD)).status, 200);
  const metrics = await inject(h, { url: '/metrics', headers: { host: 'localhost', authorization: basic('admin', PASSWORD) } });
  t.match(metrics.body, /^kms_appliance_admin_login_failures_total 10$/m);
});

t.test('the login form sets a Secure, HttpOnly, SameSite=Strict session cookie; logout ends it', async (t) => {
  const h = await withPassword(t);
  const form = await inject(h, { url: '/login' });
  t.equal(form.status, 200);
  t.match(form.body, /<form method="post" action="\/login"/);
  const wrong = await inject(h, { url: '/login', method: 'POST', body: 'user=admin&password=nope' });
  t.equal(wrong.status, 401);
  t.match(wrong.body, /Wrong user or password/);
  const cross = await inject(h, {
    url: '/login',
    method: 'POST',
    body: `user=admin&password=${encodeURIComponent(PASSWORD)}`,
    headers: { host: 'localhost', origin: 'https://attacker.example' },
  });
  t.equal(cross.status, 403, 'a cross-site form post is refused');
  const ok = await inject(h, {
    url: '/login',
    method: 'POST',
    body: `user=admin&password=${encodeURIComponent(PASSWORD)}`,
    headers: { host: 'localhost', origin: 'http://localhost' },
  });
  t.equal(ok.status, 303);
  const cookie = String(ok.headers['set-cookie']);
  t.match(cookie, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{40,};`));
  for (const attr of ['Secure', 'HttpOnly', 'SameSite=Strict', 'Path=/']) t.match(cookie, attr);
  const session = cookie.split(';')[0]!;
  const page = await inject(h, { url: '/', headers: { host: 'localhost', cookie: session } });
  t.equal(page.status, 200);
  t.match(page.body, /action="\/logout"/);
  t.equal((await inject(h, { url: '/logout', method: 'POST', headers: { host: 'localhost', cookie: session } })).status, 303);
  t.equal((await inject(h, { url: '/', headers: { host: 'localhost', cookie: session } })).status, 303, 'the session is gone');
  t.equal((await inject(h, { url: '/', headers: { host: 'localhost', cookie: `${SESSION_COOKIE}=forged` } })).status, 303);
});

t.test('/metrics counts activations by application, result and protocol, refusals by HRESULT, and the counts', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), requests: 3 });
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), protocol: 4 });
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Home') });
  // Counts come from the snapshot worker; the first scrape starts the refresh.
  await inject(h, { url: '/metrics' });
  // The worker's refresh is in another thread: re-scrape until its counts are in.
  const m = await until(
    async () => {
      const r = await inject(h, { url: '/metrics' });
      return /^kms_appliance_application_count\{/m.test(r.body) ? r.body : undefined;
    },
    'the snapshot counts in /metrics',
    { everyMs: 20 },
  );
  t.match(m, /^kms_appliance_activations_total\{application="Windows",result="served",protocol="6"\} 3$/m);
  t.match(m, /^kms_appliance_activations_total\{application="Windows",result="served",protocol="4"\} 1$/m);
  t.match(m, /^kms_appliance_activations_total\{application="Windows",result="refused",protocol="6"\} 1$/m);
  t.match(m, /^kms_appliance_refusals_total\{hresult="0xC004F042",code="KMS_ERR_[A-Z_]+"\} 1$/m);
  t.match(m, /^kms_appliance_application_count\{application="Windows"\} 4$/m);
  t.match(m, /^kms_appliance_application_threshold\{application="Windows"\} 25$/m);
  t.match(m, /^kms_appliance_distinct_machines 4$/m);
  t.match(m, /^kms_appliance_store_pending_writes 0$/m);
  t.match(m, /^kms_appliance_kms_connections_open \d+$/m);
  t.match(m, /^kms_appliance_process_resident_memory_bytes \d+/m, 'process metrics');
  for (const line of m.split('\n')) if (line && !line.startsWith('#')) t.match(line, /^kms_appliance_/, 'every name prefixed');
});

t.test('machine list: keyset pages cover every machine once in each order; search by name, address, CMID', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  for (let i = 0; i < 7; i++)
    await activate({
      host: h.host,
      port: h.port,
      product: product('Windows 10/11 Enterprise'),
      workstation: `PC-${String(i).padStart(2, '0')}`,
    });
  await activate({
    host: h.host,
    port: h.port,
    product: product('Office LTSC Professional Plus 2021'),
    workstation: 'PC-03',
    cmid: '0a0a0a0a-1111-4111-8111-000000000001',
  });
  for (const sort of ['name', 'seen', 'application']) {
    const seen: string[] = [];
    let after = '';
    for (let pages = 0; pages < 10; pages++) {
      const r = await inject(h, { url: `/api/machines?sort=${sort}&limit=3${after ? `&after=${after}` : ''}` });
      t.equal(r.status, 200);
      const p = JSON.parse(r.body) as { rows: { cmid: string; applicationId: string; workstation: string }[]; next?: string };
      seen.push(...p.rows.map((x) => `${x.applicationId}/${x.cmid}`));
      if (!p.next) break;
      after = encodeURIComponent(p.next);
    }
    t.equal(seen.length, 8, `${sort}: every machine`);
    t.equal(new Set(seen).size, 8, `${sort}: none twice`);
  }
  const byName = JSON.parse((await inject(h, { url: '/api/machines?q=pc-03' })).body) as { rows: { workstation: string }[] };
  t.same(
    byName.rows.map((r) => r.workstation),
    ['PC-03', 'PC-03'],
    'part of a name, any case',
  );
  const byCmid = JSON.parse((await inject(h, { url: '/api/machines?q=0A0A0A0A' })).body) as { rows: { workstation: string }[] };
  t.equal(byCmid.rows.length, 1, 'the start of a CMID');
  const byAddress = JSON.parse((await inject(h, { url: '/api/machines?q=127.0.0.' })).body) as { rows: unknown[] };
  t.equal(byAddress.rows.length, 8, 'the start of an address');
  const wild = JSON.parse((await inject(h, { url: '/api/machines?q=%25' })).body) as { rows: unknown[] };
  t.equal(wild.rows.length, 0, 'LIKE wildcards are searched literally');
  const bad = await inject(h, { url: '/api/machines?after=not-a-cursor&sort=bogus' });
  t.equal(bad.status, 200, 'a bad cursor or sort falls back to the first page by name');
  const page = await inject(h, { url: '/?q=PC-0&sort=name' });
  t.match(page.body, /<input type="search" name="q" value="PC-0"/);
  t.match(page.body, /<strong class="name">PC-00<\/strong>/);
});

t.test('/metrics and /healthz see the DNS responder and registration', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
    c.dns.listen = ['127.0.0.1:0'];
    c.dns.registration = {
      ...c.dns.registration,
      enabled: true,
      server: '127.0.0.1:9', // nothing answers there: registration fails
      domains: [{ domain: 'branch.example', priority: 0, weight: 0 }],
      tsig: { keyName: 'kms-key', algorithm: 'hmac-sha256', secretBase64: Buffer.alloc(32, 7).toString('base64'), secretFile: '' },
    };
  });
  const { Resolver } = await import('node:dns/promises');
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${h.appliance.dnsAddresses[0]!.port}`]);
  await resolver.resolveSrv('_vlmcs._tcp.not-our-zone.example').catch(() => undefined);
  const m = await until(
    async () => {
      const body = (await inject(h, { url: '/metrics' })).body;
      return /^kms_appliance_dns_registration_failures_total [1-9]/m.test(body) ? body : undefined;
    },
    'a failed registration in /metrics',
    { everyMs: 20 },
  );
  t.match(m, /^kms_appliance_dns_responses_total\{rcode="REFUSED"\} [1-9]\d*$/m);
  t.match(m, /^kms_appliance_dns_refused_total [1-9]\d*$/m);
  t.match(m, /^kms_appliance_dns_rate_limited_total 0$/m);
  t.match(m, /^kms_appliance_dns_rate_limited_truncated_total 0$/m);
  t.match(m, /^kms_appliance_dns_registration_last_success_timestamp_seconds 0$/m);
  const health = await inject(h, { url: '/healthz' });
  t.equal(health.status, 503);
  t.match(health.body, /DNS registration of _vlmcs\._tcp has not succeeded since start/);
});
