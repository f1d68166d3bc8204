// A few seconds of the DNS fuzz target (test/fuzz/dns-target.ts) against the responder over
// loopback, seeded: after every round the server must still answer the SRV question over UDP
// and TCP, and its memory must stay bounded. `npm run test:fuzz` runs the long campaign.
import t from 'tap';
import { DEFAULTS } from '../../src/config/defaults';
import { startDnsServer } from '../../src/dns/dns-server';
import { dnsFuzzTarget } from '../fuzz/dns-target';
import { seededRandom as prng } from '../prng';

const SEED = Number(process.env.DNS_FUZZ_SEED ?? 20261204);
const SECONDS = 3;
const MAX_ROUNDS = 40;

t.test(`the DNS surface survives ${SECONDS} s of seeded fuzzing (seed ${SEED}) and still answers`, async (t) => {
  const warnings: string[] = [];
  const errors: string[] = [];
  const log = {
    info() {},
    debug() {},
    warn: (o: object) => void warnings.push(String((o as { code?: string }).code)),
    error: (o: object) => void errors.push(JSON.stringify(o)),
  };
  const zone = 'fuzz.test';
  const server = await startDnsServer(
    {
      ...DEFAULTS.dns,
      zones: [
        {
          domain: zone,
          ttlSeconds: 60,
          hosts: [{ target: `kms.${zone}`, port: 1688, priority: 0, weight: 0, addresses: ['192.0.2.1', '2001:db8::1'] }],
        },
      ],
      tcp: { ...DEFAULTS.dns.tcp, idleTimeoutSeconds: 1 },
    },
    { kmsPort: 1688, hostName: 'kms', addresses: () => ['192.0.2.1'], log },
    ['127.0.0.1:0'],
  );
  t.teardown(() => server.close());
  const target = dnsFuzzTarget({ host: '127.0.0.1', port: server.addresses[0]!.port, zone });
  t.ok(await target.healthy(), 'healthy before');
  const rnd = prng(SEED);
  const heapBefore = process.memoryUsage().heapUsed;
  const deadline = Date.now() + SECONDS * 1000;
  let inputs = 0;
  let rounds = 0;
  while (Date.now() < deadline && rounds < MAX_ROUNDS) {
    inputs += await target.round(rnd);
    rounds++;
    if (!(await target.healthy())) {
      t.fail(`not answering after round ${rounds} (seed ${SEED})`);
      return;
    }
  }
  const grown = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  t.comment(`${rounds} rounds, ${inputs} inputs, heap +${grown.toFixed(1)} MB, stats ${JSON.stringify(server.stats())}`);
  t.ok(rounds >= 3, `${rounds} rounds ran`);
  t.ok(grown < 100, 'heap growth bounded');
  t.same(errors, [], 'no responder failure (an exception escaping the codec) was logged');
  t.ok(warnings.includes('KMS_ERR_DNS_MALFORMED'), 'malformed input was seen and logged');
  t.ok(await target.healthy(), 'healthy after');
});
