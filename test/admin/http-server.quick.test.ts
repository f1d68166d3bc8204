// The admin page and JSON API over loopback: counts and why, escaping of what clients send
// (workstation names are attacker-controlled), the security headers, the Host check (DNS
// rebinding) and read-only methods.
import t from 'tap';
import { activate } from '../../src/client/kms-client';
import { product, startHarness } from '../server/appliance-harness';
import { request } from './http-client';

t.test('status JSON and page show the counts, what is missing, and escape client-sent names', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  const port = h.appliance.adminAddresses[0]!.port;
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), requests: 3 });
  await activate({
    host: h.host,
    port: h.port,
    product: product('Windows 10/11 Enterprise'),
    workstation: '<script>alert(1)</script>\u202e\u001b[2J',
  });

  const health = await request(port, '/healthz');
  t.equal(health.status, 200);
  t.equal(health.body, 'ok\n');

  const api = await request(port, '/api/status');
  t.equal(api.status, 200);
  t.match(api.headers['content-type'], /application\/json/);
  const status = JSON.parse(api.body) as {
    databaseFile: string;
    health: { ok: boolean };
    inventory: { summary: { applicationName: string; activeMachines: number; missing: number }[]; activity: { served: number }[] };
  };
  t.equal(status.databaseFile, h.appliance.databaseFile);
  t.equal(status.health.ok, true);
  const windows = status.inventory.summary.find((a) => a.applicationName === 'Windows');
  t.equal(windows?.activeMachines, 4);
  t.equal(windows?.missing, 21, '25 needed, 4 seen');
  t.equal(status.inventory.activity.length, 30, '30 days of activity');
  t.equal(status.inventory.activity.at(-1)?.served, 4, 'today: four requests answered');

  const page = await request(port, '/');
  t.equal(page.status, 200);
  t.match(page.headers['content-type'], /text\/html/);
  t.match(page.body, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
  t.match(page.body, /21 more machines needed/);
  t.match(page.body, /<svg class="chart"/, 'the 30-day chart');
  t.match(page.body, /<h2>Host identity<\/h2>\n<p>HwId <code>[0-9A-F]{16}<\/code>/, 'the identity clients see');
  t.notMatch(page.body, /<script/i, 'a workstation name cannot inject markup, and the page has no script');
  t.match(page.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;\\u202e\\x1b\[2J/, 'markup escaped, bidi and control characters shown');
  t.notMatch(page.body, /[\u202e\u001b]/);

  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Home') });
  const refused = await request(port, '/api/status');
  const r = JSON.parse(refused.body) as { inventory: { refusals: { hresult: number; count: number }[] } };
  // The status is kept for a few seconds: the refusal may show on the next refresh.
  t.ok(r.inventory.refusals.length <= 1);
  t.equal((await request(port, '/api/status', { method: 'POST' })).status, 405, 'read-only');
  t.equal((await request(port, '/nothing-here')).status, 404);
});

t.test('every answer carries the strict headers; a foreign Host gets 421 and no inventory', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
    c.admin.hostNames = ['kms.branch.example'];
  });
  const port = h.appliance.adminAddresses[0]!.port;
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), workstation: 'SECRET-PC' });
  for (const path of ['/', '/api/status', '/healthz', '/metrics', '/nothing']) {
    const r = await request(port, path);
    t.match(r.headers['content-security-policy'], /default-src 'none'/, `${path}: CSP`);
    t.match(r.headers['content-security-policy'], /frame-ancestors 'none'/);
    t.notMatch(r.headers['content-security-policy'], /unsafe-inline|script-src/);
    t.equal(r.headers['cache-control'], 'no-store');
    t.equal(r.headers['x-frame-options'], 'DENY');
    t.equal(r.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP');
  }
  for (const host of [
    'attacker.example',
    'attacker.example:80',
    '127.0.0.2',
    '[::1]',
    'kms.branch.example.attacker.example',
    'localhost.attacker.example',
    'a b',
  ]) {
    const r = await request(port, '/api/status', { headers: { host } });
    t.ok(r.status === 421 || ((host === '' || host === 'a b') && r.status === 400), `Host "${host}" refused (${r.status})`);
    t.notMatch(r.body, /SECRET-PC/);
  }
  for (const host of ['localhost', `localhost:${port}`, `127.0.0.1:${port}`, 'kms.branch.example', 'KMS.Branch.Example.']) {
    t.equal((await request(port, '/healthz', { headers: { host } })).status, 200, `Host "${host}" accepted`);
  }
});

t.test('oversized headers and bodies are refused, and the page keeps answering', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  const port = h.appliance.adminAddresses[0]!.port;
  const big = await request(port, '/healthz', { headers: { 'x-filler': 'a'.repeat(20_000) } }).catch((e: Error) => ({
    status: 0,
    body: e.message,
  }));
  t.ok(big.status === 431 || big.status === 0, `huge header refused (${big.status})`);
  const body = await request(port, '/login', {
    method: 'POST',
    body: 'x'.repeat(10_000),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(body.status, 413);
  t.equal((await request(port, '/healthz')).status, 200, 'still serving');
});
