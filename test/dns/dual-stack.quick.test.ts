// The listen addresses an admin writes for "everywhere": "0.0.0.0:P" and "[::]:P" together. dns2's
// UDPServer binds "[::]" dual-stack, so one pair of sockets answers both families; queries go to
// loopback only (127.0.0.1 and ::1), the sockets listen on the wildcards because that is the case.
import t, { type Test } from 'tap';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startDnsServer, type DnsServerHandle } from '../../src/dns/dns-server';
import type { DnsLog } from '../../src/dns/dns-responder';
import { ipv6WildcardIsDualStack } from '../../src/dns/listen-plan';
import { dig } from './dig';

const ZONE = 'dual.test';
const CONFIG: AppConfig['dns'] = {
  ...DEFAULTS.dns,
  zones: [{ domain: ZONE, ttlSeconds: 300, hosts: [] }],
  rateLimit: { responsesPerSecond: 0, burst: 1, slip: 0 },
};

function start(t: Test, listen: string[], log: DnsLog = silent()): Promise<DnsServerHandle> {
  return startDnsServer(CONFIG, { kmsPort: 1688, hostName: 'kms01', addresses: () => ['192.0.2.10'], log }, listen).then((h) => {
    t.teardown(() => h.close());
    return h;
  });
}

function silent(): DnsLog {
  return { info() {}, warn() {}, error() {}, debug() {} };
}

/**
 * Starts on a fixed port, as an admin would: the port is found with port 0 on `probe` and released,
 * and should another process take it before the real bind, another is found (a bounded retry).
 */
async function startOnFixedPort(t: Test, probe: string, listen: (port: number) => string[]): Promise<DnsServerHandle> {
  for (let attempt = 0; ; attempt++) {
    const p = await startDnsServer(CONFIG, { kmsPort: 1688, hostName: 'kms01', addresses: () => [], log: silent() }, [probe]);
    const port = p.addresses[0]!.port;
    await p.close();
    try {
      return await start(t, listen(port));
    } catch (err) {
      if ((err as { code?: string }).code !== 'KMS_ERR_DNS_LISTEN' || attempt >= 4) throw err;
    }
  }
}

async function answersEverywhere(t: Test, port: number): Promise<void> {
  for (const server of ['127.0.0.1', '::1']) {
    for (const tcp of [false, true]) {
      const r = await dig(server, port, ['SRV', `_vlmcs._tcp.${ZONE}`, ...(tcp ? ['+tcp'] : [])]);
      t.equal(r.status, 'NOERROR', `${server} over ${tcp ? 'TCP' : 'UDP'}`);
      t.same(
        r.answer.map((a) => a.slice(3).join(' ')),
        ['SRV 0 0 1688 kms01.dual.test.'],
        `${server} over ${tcp ? 'TCP' : 'UDP'}: the SRV`,
      );
    }
  }
}

t.test(
  'both wildcards on one port: answered over IPv4 and IPv6, UDP and TCP',
  { skip: !ipv6WildcardIsDualStack() && 'bindv6only=1' },
  async (t) => {
    const h = await startOnFixedPort(t, '[::]:0', (port) => [`0.0.0.0:${port}`, `[::]:${port}`]);
    const port = h.addresses[0]!.port;
    t.same(
      h.addresses.map((a) => `${a.host} ${a.port}`),
      [`0.0.0.0 ${port}`, `:: ${port}`],
      'both listed, in the order configured',
    );
    await answersEverywhere(t, port);
  },
);

t.test(
  'port 0 on both wildcards picks one port that both families reach',
  { skip: !ipv6WildcardIsDualStack() && 'bindv6only=1' },
  async (t) => {
    const h = await start(t, ['[::]:0', '0.0.0.0:0']);
    const [v6, v4] = h.addresses;
    t.ok(v6!.port > 0 && v6!.port === v4!.port, 'one port');
    await answersEverywhere(t, v6!.port);
  },
);

t.test(
  'an IPv4 client on the dual-stack socket is seen as its IPv4 address, as every policy and log line gets it',
  { skip: !ipv6WildcardIsDualStack() && 'bindv6only=1' },
  async (t) => {
    const clients: unknown[] = [];
    const log: DnsLog = { ...silent(), debug: (obj) => clients.push((obj as { client?: unknown }).client) };
    const h = await start(t, ['[::]:0'], log);
    const port = h.addresses[0]!.port;
    for (const tcp of [false, true]) {
      const r = await dig('127.0.0.1', port, ['A', 'www.elsewhere.invalid', ...(tcp ? ['+tcp'] : [])]);
      t.equal(r.status, 'REFUSED', `refused over ${tcp ? 'TCP' : 'UDP'}`);
    }
    await dig('::1', port, ['A', 'www.elsewhere.invalid']);
    t.same(clients, ['127.0.0.1', '127.0.0.1', '::1'], 'the refusals are logged for 127.0.0.1 (UDP, TCP) and ::1, never ::ffff:127.0.0.1');
  },
);

t.test('specific loopback addresses share a port side by side', async (t) => {
  const h = await startOnFixedPort(t, '127.0.0.1:0', (port) => [`127.0.0.1:${port}`, `[::1]:${port}`]);
  const port = h.addresses[0]!.port;
  t.same(
    h.addresses.map((a) => a.port),
    [port, port],
  );
  await answersEverywhere(t, port);
});

t.test(
  'a specific IPv4 address beside a dual-stack "[::]" on its port is refused before anything is bound',
  { skip: !ipv6WildcardIsDualStack() && 'bindv6only=1' },
  async (t) => {
    // Nothing listens on 53 here: the plan is refused before any socket is created.
    await t.rejects(start(t, ['[::]:53', '127.0.0.1:53']), { code: 'KMS_ERR_CONFIG_INVALID' });
  },
);
