// The admin page and JSON API over loopback: counts and why, machines, escaping of what clients
// send (workstation names are attacker-controlled), read-only methods.
import t from 'tap';
import http from 'node:http';
import { activate } from '../../src/client/kms-client';
import { product, startHarness } from '../server/appliance-harness';

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('status JSON and page show the counts, what is missing, and escape client-sent names', async (t) => {
  const h = await startHarness(t, (c) => {
    c.admin.listen = ['127.0.0.1:0'];
  });
  const port = h.appliance.adminAddresses[0]!.port;
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), requests: 3 });
  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), workstation: '<script>alert(1)</script>' });

  const health = await get(port, '/healthz');
  t.equal(health.status, 200);
  t.equal(health.body, 'ok\n');

  const api = await get(port, '/api/status');
  t.equal(api.status, 200);
  t.match(api.type, /application\/json/);
  const status = JSON.parse(api.body) as { databaseFile: string; inventory: { summary: { applicationName: string; activeMachines: number; missing: number }[] } };
  t.equal(status.databaseFile, h.appliance.databaseFile);
  const windows = status.inventory.summary.find((a) => a.applicationName === 'Windows');
  t.equal(windows?.activeMachines, 4);
  t.equal(windows?.missing, 21, '25 needed, 4 seen');

  const page = await get(port, '/');
  t.equal(page.status, 200);
  t.match(page.type, /text\/html/);
  t.match(page.body, /21 more machines must contact this host/);
  t.match(page.body, /<h2>Host identity<\/h2>\n<p>HwId <code>[0-9A-F]{16}<\/code>/, 'the identity clients see');
  t.notMatch(page.body, /<script>alert/, 'a workstation name cannot inject markup');
  t.match(page.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);

  await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Home') });
  const refusedPage = await get(port, '/');
  t.match(refusedPage.body, /<td>0xC004F042<\/td><td>1<\/td>/, 'the refusal is listed with what the client saw');
  t.equal((await get(port, '/api/status', 'POST')).status, 405, 'read-only');
  t.equal((await get(port, '/nothing-here')).status, 404);
});
