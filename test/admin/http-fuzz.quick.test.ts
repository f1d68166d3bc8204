// A short seeded run of the admin HTTP fuzz target (test/fuzz/http-target.ts) against the real
// listener, plain and TLS with a password: after every round /healthz and /api/status still answer
// and a KMS client is still served. `npm run test:fuzz` runs it for as long as asked.
import t from 'tap';
import { httpFuzzTarget } from '../fuzz/http-target';
import { activate } from '../../src/client/kms-client';
import { product, startHarness } from '../server/appliance-harness';
import { storeCheapPassword } from './cheap-password';
import { seededRandom as prng } from '../prng';

for (const tls of [false, true]) {
  t.test(`hostile HTTP${tls ? 'S' : ''} rounds leave the admin listener and KMS serving`, async (t) => {
    const PASSWORD = 'correct horse battery';
    const h = await startHarness(t, (c) => {
      c.admin.listen = ['127.0.0.1:0'];
      c.admin.tls.enabled = tls;
    });
    if (tls) {
      storeCheapPassword(h.dataDir, PASSWORD);
    }
    const target = httpFuzzTarget({
      host: '127.0.0.1',
      port: h.appliance.adminAddresses[0]!.port,
      tls,
      ...(tls ? { credentials: `admin:${PASSWORD}` } : {}),
    });
    const seed = 1234 + (tls ? 1 : 0);
    t.comment(`seed ${seed}`);
    const rnd = prng(seed);
    let sent = 0;
    const rounds = 2; // 24 hostile inputs each; npm run test:fuzz runs as many as asked
    for (let round = 0; round < rounds; round++) {
      sent += await target.round(rnd);
      t.ok(await target.healthy(), `round ${round}: /healthz${tls ? ' and /api/status' : ''} answered`);
    }
    t.ok(sent >= rounds * 20, `${sent} hostile inputs sent`);
    const [reply] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise') });
    t.equal(reply?.hresult, 0, 'KMS still serves');
  });
}
