import t, { type Test } from 'tap';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { DEFAULTS } from '../../src/config/defaults';
import { HRESULT } from '../../src/errors';
import { startDnsServer } from '../../src/dns/dns-server';
import {
  checkDiscovery,
  createSystemResolver,
  orderSrvRecords,
  type DiscoveryResolver,
  type ProbeResult,
  type SrvRecord,
} from '../../src/dns/dns-check';
import { command, defaultDomain } from '../../src/cli/commands/dns-check';
import { freePort } from './named';

const SILENT = { info() {}, warn() {}, error() {}, debug() {} };

/** A TCP listener standing in for a KMS host: the stub probe only needs it to accept. */
async function fakeKmsHost(t: Test): Promise<number> {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** Probe stub that does the real TCP connect and nothing more. */
function connectProbe(calls: string[]): (host: string, port: number) => Promise<ProbeResult> {
  return (host, port) =>
    new Promise((resolve) => {
      calls.push(`${host}:${port}`);
      const s = net.connect({ host, port });
      s.setTimeout(2000, () => s.destroy(new Error('timeout')));
      s.once('connect', () => {
        s.destroy();
        resolve({ ok: true, epid: '06401-00206-271-000000-03-1033-20348.0000-0000000', count: 25 });
      });
      s.once('error', (err: NodeJS.ErrnoException) =>
        resolve({ ok: false, code: 'KMS_ERR_CLIENT_CONNECT', hresult: HRESULT.RPC_SERVER_UNAVAILABLE, message: err.code ?? err.message }),
      );
    });
}

async function setup(t: Test): Promise<{ dnsPort: number; kmsPort: number; deadPort: number; resolver: DiscoveryResolver }> {
  const kmsPort = await fakeKmsHost(t);
  const deadPort = await freePort(); // nothing listens there
  const host = (target: string, port: number, priority = 0, weight = 0) => ({ target, port, priority, weight, addresses: ['127.0.0.1'] });
  const h = await startDnsServer(
    {
      ...DEFAULTS.dns,
      rateLimit: { responsesPerSecond: 0, burst: 1, slip: 0 },
      zones: [
        { domain: 'works.test', ttlSeconds: 60, hosts: [host('kms.works.test', kmsPort)] },
        { domain: 'down.test', ttlSeconds: 60, hosts: [host('kms.down.test', kmsPort)] },
        { domain: 'wrongport.test', ttlSeconds: 60, hosts: [host('kms.wrongport.test', deadPort)] },
        {
          domain: 'fallback.test',
          ttlSeconds: 60,
          hosts: [host('first.fallback.test', deadPort, 0), host('second.fallback.test', kmsPort, 10)],
        },
        {
          domain: 'dangling.test',
          ttlSeconds: 60,
          hosts: [{ target: 'gone.elsewhere.test', port: kmsPort, priority: 0, weight: 0, addresses: [] }],
        },
      ],
    },
    { kmsPort, hostName: 'appliance', addresses: () => [], log: SILENT },
    ['127.0.0.1:0'],
  );
  t.teardown(() => h.close());
  const dnsPort = h.addresses[0]!.port;
  return { dnsPort, kmsPort, deadPort, resolver: createSystemResolver({ server: { host: '127.0.0.1', port: dnsPort }, timeoutMs: 2000 }) };
}

t.test("dns check against the appliance's own DNS responder", async (t) => {
  const { resolver, kmsPort, deadPort } = await setup(t);

  await t.test('working: SRV found, target resolved, host probed', async (t) => {
    const calls: string[] = [];
    const r = await checkDiscovery({ domain: 'works.test' }, { resolver, probe: connectProbe(calls) });
    t.equal(r.ok, true);
    t.same(r.records, [{ priority: 0, weight: 0, port: kmsPort, target: 'kms.works.test' }]);
    t.same(calls, [`127.0.0.1:${kmsPort}`]);
    t.equal(r.attempts.length, 1);
    t.match(r.explain, /would activate against kms\.works\.test/);
  });

  await t.test('missing SRV: 0x8007232B, what to do', async (t) => {
    const calls: string[] = [];
    const r = await checkDiscovery({ domain: 'nothing.works.test' }, { resolver, probe: connectProbe(calls) });
    t.equal(r.ok, false);
    t.equal(r.code, 'KMS_ERR_DNS_NO_SRV');
    t.equal(r.hresult, 0x8007232b);
    t.same(calls, [], 'nothing probed');
  });

  await t.test('unreachable host: the probe fails, 0x800706BA per attempt, 0xC004F074 overall', async (t) => {
    const probe = async (): Promise<ProbeResult> => ({
      ok: false,
      code: 'KMS_ERR_CLIENT_CONNECT',
      hresult: HRESULT.RPC_SERVER_UNAVAILABLE,
      message: 'EHOSTUNREACH',
    });
    const r = await checkDiscovery({ domain: 'down.test' }, { resolver, probe });
    t.equal(r.ok, false);
    t.equal(r.code, 'KMS_ERR_DNS_NO_HOST_REACHED');
    t.equal(r.hresult, 0xc004f074);
    t.equal(r.attempts[0]!.hresult, 0x800706ba);
    t.equal(r.attempts[0]!.code, 'KMS_ERR_CLIENT_CONNECT');
  });

  await t.test('wrong port: SRV names a port where nothing listens', async (t) => {
    const calls: string[] = [];
    const r = await checkDiscovery({ domain: 'wrongport.test', expectedPort: kmsPort }, { resolver, probe: connectProbe(calls) });
    t.equal(r.ok, false);
    t.same(calls, [`127.0.0.1:${deadPort}`], 'the real connect went to the published port');
    t.equal(r.hresult, HRESULT.NO_KMS_HOST);
    t.equal(r.attempts[0]!.hresult, HRESULT.RPC_SERVER_UNAVAILABLE);
    t.match(r.attempts[0]!.explain, new RegExp(`names port ${deadPort}, but the KMS host listens on ${kmsPort}`));
    t.equal(r.warnings.length, 1, 'the port mismatch is a warning too');
  });

  await t.test('falls back to the next record, as a client does', async (t) => {
    const calls: string[] = [];
    const r = await checkDiscovery({ domain: 'fallback.test' }, { resolver, probe: connectProbe(calls) });
    t.equal(r.ok, true);
    t.same(calls, [`127.0.0.1:${deadPort}`, `127.0.0.1:${kmsPort}`], 'priority 0 first, then priority 10');
    t.same(
      r.attempts.map((a) => a.ok),
      [false, true],
    );
  });

  await t.test('a target without addresses is skipped with 0x8007251D', async (t) => {
    const r = await checkDiscovery({ domain: 'dangling.test' }, { resolver, probe: connectProbe([]) });
    t.equal(r.ok, false);
    t.equal(r.attempts[0]!.hresult, 0x8007251d);
    t.equal(r.attempts[0]!.code, 'KMS_ERR_DNS_NO_RECORDS');
  });

  await t.test("a domain outside the responder's zones is refused", async (t) => {
    const r = await checkDiscovery({ domain: 'example.com' }, { resolver, probe: connectProbe([]) });
    t.equal(r.code, 'KMS_ERR_DNS_SERVER_UNREACHABLE');
    t.match(r.explain, /refused/);
  });
});

t.test('a DNS server that does not answer', async (t) => {
  const port = await freePort();
  const resolver = createSystemResolver({ server: { host: '127.0.0.1', port }, timeoutMs: 300 });
  const r = await checkDiscovery({ domain: 'works.test' }, { resolver, probe: connectProbe([]) });
  t.equal(r.code, 'KMS_ERR_DNS_SERVER_UNREACHABLE');
  t.equal(r.hresult, 0x8007232b);
});

t.test('NODATA from the resolver is 0x8007251D', async (t) => {
  const resolver: DiscoveryResolver = {
    description: 'stub',
    srv: async () => ({ ok: false, kind: 'nodata', detail: 'ENODATA' }),
    addresses: async () => ({ ok: true, value: [] }),
  };
  const r = await checkDiscovery({ domain: 'x.test' }, { resolver, probe: connectProbe([]) });
  t.equal(r.code, 'KMS_ERR_DNS_NO_RECORDS');
  t.equal(r.hresult, 0x8007251d);
});

t.test('RFC 2782 order: priority first, weight-proportional choice inside a priority', async (t) => {
  const recs: SrvRecord[] = [
    { priority: 10, weight: 0, port: 1, target: 'low' },
    { priority: 0, weight: 75, port: 1, target: 'a' },
    { priority: 0, weight: 25, port: 1, target: 'b' },
    { priority: 0, weight: 0, port: 1, target: 'zero' },
  ];
  // A fixed sequence instead of Math.random: 0.0 picks the zero-weight record (sorted first).
  t.same(
    orderSrvRecords(recs, () => 0).map((r) => r.target),
    ['zero', 'a', 'b', 'low'],
  );
  t.same(
    orderSrvRecords(recs, () => 0.99)
      .map((r) => r.target)
      .slice(-1),
    ['low'],
    'priority 10 always last',
  );
  let seed = 1;
  const lcg = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const firsts = { a: 0, b: 0 } as Record<string, number>;
  const N = 4000;
  for (let i = 0; i < N; i++) {
    const first = orderSrvRecords(recs.slice(1, 3), lcg)[0]!.target;
    firsts[first] = (firsts[first] ?? 0) + 1;
  }
  t.ok(Math.abs(firsts.a! / N - 0.75) < 0.05, `weight 75 of 100 chosen first about 75% (${firsts.a})`);
});

t.test('the dns check command: usage, report and exit codes', async (t) => {
  const { dnsPort } = await setup(t);
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d) => (out += d));
    stderr.on('data', (d) => (err += d));
    const code = await command.run(args, { stdout, stderr, env: {} });
    return { code, out, err };
  };
  t.equal(command.name, 'dns check');
  const missing = await run(['--domain', 'nothing.works.test', '--server', `127.0.0.1:${dnsPort}`, '--timeout', '2']);
  t.equal(missing.code, 1);
  t.match(missing.out, /0x8007232B/);
  const json = await run(['--domain', 'nothing.works.test', '--server', `127.0.0.1:${dnsPort}`, '--json']);
  t.equal(JSON.parse(json.out).code, 'KMS_ERR_DNS_NO_SRV');
  // The real probe against a port where nothing listens: a connect failure a client would see.
  const wrong = await run(['--domain', 'wrongport.test', '--server', `127.0.0.1:${dnsPort}`, '--timeout', '2', '--json']);
  t.equal(wrong.code, 1);
  const report = JSON.parse(wrong.out);
  t.equal(report.hresult, HRESULT.NO_KMS_HOST);
  t.equal(report.attempts[0].hresult, HRESULT.RPC_SERVER_UNAVAILABLE);
  t.equal((await run(['--server', 'not-an-ip'])).code, 2);
  t.equal((await run(['--port', '70000', '--domain', 'x'])).code, 2);
  t.equal((await run(['--bogus'])).code, 2);
  const help = await run(['--help']);
  t.equal(help.code, 0);
  t.match(help.out, /_vlmcs\._tcp/);
});

t.test('default domain: from the host name, else resolv.conf', async (t) => {
  t.equal(defaultDomain('kms01.corp.example', '/nonexistent'), 'corp.example');
  const dir = t.testdir({ 'resolv.conf': 'nameserver 192.0.2.53\nsearch branch.example other.example\n' });
  t.equal(defaultDomain('kms01', `${dir}/resolv.conf`), 'branch.example');
  t.equal(defaultDomain('kms01', '/nonexistent'), undefined);
});

t.test('a zone listing hundreds of records or addresses is checked up to a bound, and says so', async (t) => {
  const records: SrvRecord[] = Array.from({ length: 300 }, (_, i) => ({ priority: i, weight: 0, port: 1688, target: `kms${i}.big.test` }));
  const probed: string[] = [];
  const resolver: DiscoveryResolver = {
    description: 'stub',
    srv: async () => ({ ok: true, value: records }),
    addresses: async (host) => ({
      ok: true,
      value: Array.from({ length: host === 'kms0.big.test' ? 50 : 1 }, (_, i) => `192.0.2.${i + 1}`),
    }),
  };
  const probe = async (host: string, port: number): Promise<ProbeResult> => {
    probed.push(`${host}:${port}`);
    return { ok: false, code: 'KMS_ERR_CLIENT_CONNECT', hresult: HRESULT.RPC_SERVER_UNAVAILABLE, message: 'ECONNREFUSED' };
  };
  const r = await checkDiscovery({ domain: 'big.test' }, { resolver, probe });
  t.notOk(r.ok);
  t.equal(r.attempts.length, 16, 'sixteen records tried, in client order');
  t.equal(r.attempts[0]!.record.target, 'kms0.big.test');
  t.equal(probed.length, 8 + 15, 'eight addresses of the first target, one of each other');
  t.match(r.warnings.join('\n'), /DNS lists 300 KMS host records; only the first 16/);
  t.match(r.warnings.join('\n'), /kms0\.big\.test has 50 addresses; only the first 8/);
  t.equal(r.records.length, 300, 'the report still names every record DNS gave');
  t.match(r.warnings.join('\n'), /kms5\.big\.test and 294 more \(meant as backup\)/, 'the backups named, up to five');
});
