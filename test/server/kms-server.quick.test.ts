// The KMS listener end to end over loopback: every protocol version with NDR64 and BTFN on and off
// through the verifying client, IPv6, counting across connections, and the per-connection policy
// (allowlist, connection limit, graceful shutdown).
import t from 'tap';
import { activate } from '../../src/client/kms-client';
import { KmsError, HRESULT } from '../../src/errors';
import { listenError } from '../../src/server/kms-server';
import { isPublicAddress } from '../../src/net/networks';
import { product, rawConnect, startHarness, type Harness } from './appliance-harness';
import { until } from '../wait';
import { kmsBindNdr32 } from './kms-bind';
import { decodeBindNak } from '../../src/protocol/rpc/bind';
import { PTYPE } from '../../src/protocol/rpc/constants';

const BIND = kmsBindNdr32(2);

const PRODUCTS = [
  { name: 'Windows 7 Enterprise', version: 4 },
  { name: 'Office Professional Plus 2010', version: 4 },
  { name: 'Windows 8.1 Enterprise', version: 6 },
  { name: 'Office Professional Plus 2013', version: 5 },
  { name: 'Windows 10/11 Enterprise', version: 6 },
  { name: 'Office LTSC Professional Plus 2021', version: 6 },
] as const;

t.test('every protocol version × NDR64 on/off × BTFN on/off is served and verifies', async (t) => {
  const h = await startHarness(t);
  for (const p of PRODUCTS) {
    const chosen = product(p.name);
    t.equal(chosen.protocol, p.version, `${p.name} speaks v${p.version} by default`);
    for (const ndr64 of [true, false]) {
      for (const btfn of [true, false]) {
        const replies = await activate({ host: h.host, port: h.port, product: chosen, ndr64, btfn, requests: 2 });
        t.equal(replies.length, 2);
        for (const r of replies) {
          t.equal(r.hresult, 0, `${p.name} ndr64=${ndr64} btfn=${btfn}`);
          t.equal(r.verified?.version, p.version);
          t.same(r.warnings, [], 'no client warnings');
        }
      }
    }
  }
  // Forced versions: a v6 product asking in v4 and v5 is answered in the request's version.
  for (const version of [4, 5] as const) {
    const [r] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), protocol: version });
    t.equal(r?.verified?.version, version);
  }
});

t.test('counts distinct machines per application across connections; the ePID is stable', async (t) => {
  const h = await startHarness(t);
  const win = product('Windows 10/11 Enterprise');
  const office = product('Office LTSC Professional Plus 2021');
  const counts: number[] = [];
  const epids = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const [r] = await activate({ host: h.host, port: h.port, product: win });
    counts.push(r!.verified!.base.currentCount);
    epids.add(r!.verified!.base.epid);
  }
  t.same(counts, [1, 2, 3]);
  t.equal(epids.size, 1, 'one ePID for the Windows host-key group');
  const same = await activate({ host: h.host, port: h.port, product: win, cmid: '7f2d1b56-3c4e-4a8b-9d10-112233445566', requests: 2 });
  t.same(
    same.map((r) => r.verified!.base.currentCount),
    [4, 4],
    'a repeated machine id does not raise the count',
  );
  const [o] = await activate({ host: h.host, port: h.port, product: office });
  t.equal(o!.verified!.base.currentCount, 1, 'Office 2013+ counts on its own');
  t.equal(h.outcomes.length, 6, 'one outcome per request (C32)');
  t.equal(h.logs.filter((l) => l['eventId'] === 12290).length, 6, 'one 12290 log line per request');
});

t.test('IPv6 loopback is served', async (t) => {
  const h = await startHarness(t, undefined, { host: '::1' });
  const [r] = await activate({ host: '::1', port: h.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r?.hresult, 0);
  t.equal(h.outcomes[0]?.clientAddress, '::1');
});

t.test('a refused product gets 0xC004F042 inside a normal response and is not counted', async (t) => {
  const h = await startHarness(t);
  const retail = product('Windows 10/11 Home');
  const [r] = await activate({ host: h.host, port: h.port, product: retail });
  t.equal(r?.hresult, HRESULT.PRODUCT_NOT_SERVED, 'a retail product');
  const [u] = await activate({ host: h.host, port: h.port, product: { ...retail, kmsCountedId: '00000000-1111-2222-3333-444444444444' } });
  t.equal(u?.hresult, HRESULT.PRODUCT_NOT_SERVED, 'an unknown product group');
  t.equal(h.outcomes[0]?.code, 'KMS_ERR_KMS_RETAIL_GROUP');
  t.equal(h.outcomes[1]?.code, 'KMS_ERR_KMS_UNKNOWN_GROUP');
  const [ok] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise') });
  t.equal(ok?.verified?.base.currentCount, 1, 'the refused machine did not count');
  const refusal = h.logs.find((l) => l['msg'] === '12290 refused');
  t.ok(refusal, 'the refusal is logged');
  t.equal(refusal?.['errorCode'], '0xC004F042');
});

t.test('client-network allowlist: outsiders are closed on, insiders served', async (t) => {
  const outside = await startHarness(t, (c) => {
    c.kms.clientNetworks = ['192.0.2.0/24'];
  });
  const err = await activate({
    host: outside.host,
    port: outside.port,
    product: product('Windows 10/11 Enterprise'),
    timeoutMs: 2000,
  }).catch((e: unknown) => e);
  t.ok(err instanceof KmsError, 'the client fails');
  t.match((err as KmsError).code, /KMS_ERR_CLIENT_(PROTOCOL|CONNECT)/);
  t.ok(
    outside.logs.some((l) => l['code'] === 'KMS_ERR_CONN_NOT_ALLOWED' && l['peer'] === '127.0.0.1'),
    'logged with the peer',
  );
  const inside = await startHarness(t, (c) => {
    c.kms.clientNetworks = ['10.0.0.0/8', '127.0.0.0/8'];
  });
  const [r] = await activate({ host: inside.host, port: inside.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r?.hresult, 0);
});

/** Our side closed first: waits until the host has seen the close too (its open-connection gauge). */
function hostSeesOpen(h: Harness, open: number): Promise<unknown> {
  const line = new RegExp(`^kms_appliance_kms_connections_open ${open}$`, 'm');
  return until(async () => line.test((await h.appliance.metrics.scrape()).body), `the host counting ${open} open connection(s)`, {
    everyMs: 5,
  });
}

t.test('connection limit: the bind over the limit gets bind_nak reason 2 and a close, the others are served', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.maxConnections = 2;
  });
  const a = await rawConnect(h.host, h.port);
  const b = await rawConnect(h.host, h.port);
  const c = await rawConnect(h.host, h.port);
  c.socket.write(BIND);
  await c.closed;
  t.equal(c.received()[2], PTYPE.BIND_NAK);
  t.equal(decodeBindNak(c.received()).reason, 2, 'local_limit_exceeded (§2.7)');
  t.ok(
    h.logs.some((l) => l['code'] === 'KMS_ERR_CONN_LIMIT'),
    'the refused connection is logged',
  );
  a.socket.destroy();
  await a.closed;
  await hostSeesOpen(h, 1);
  const [r] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r?.hresult, 0, 'served again once below the limit');
  b.socket.destroy();
});

t.test('per-address limit: one client address cannot take every connection', async (t) => {
  const h = await startHarness(t, (c) => {
    c.kms.maxConnectionsPerAddress = 2;
  });
  const a = await rawConnect(h.host, h.port);
  const b = await rawConnect(h.host, h.port);
  const third = await rawConnect(h.host, h.port);
  third.socket.write(BIND); // refused at once with a bind_nak, rather than after the wait for a bind
  await third.closed;
  t.equal(decodeBindNak(third.received()).reason, 2, 'bind_nak local_limit_exceeded');
  t.ok(
    h.logs.some((l) => l['code'] === 'KMS_ERR_CONN_LIMIT' && String(l['msg']).includes('maxConnectionsPerAddress')),
    'logged, naming the setting',
  );
  b.socket.destroy();
  await b.closed;
  await hostSeesOpen(h, 1);
  const [r] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r?.hresult, 0, 'a slot freed by a close is usable again');
  a.socket.destroy();
});

t.test('graceful stop: an idle keep-alive connection is closed, the listener is gone, data survives', async (t) => {
  const h = await startHarness(t);
  const [r] = await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r?.hresult, 0);
  const idle = await rawConnect(h.host, h.port);
  await h.appliance.stop();
  await idle.closed;
  const err = await rawConnect(h.host, h.port).catch((e: NodeJS.ErrnoException) => e);
  t.equal((err as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  const again = await startHarness(t, undefined, { dataDir: h.dataDir });
  const [r2] = await activate({ host: again.host, port: again.port, product: product('Windows 10/11 Enterprise') });
  t.equal(r2?.verified?.base.currentCount, 2, 'the count survived the restart');
  t.equal(r2?.verified?.base.epid, r?.verified?.base.epid, 'so did the ePID');
  t.same(r2?.verified?.hwid, r?.verified?.hwid, 'and the HwId (C20)');
});

t.test('listen failures read as what to change', async (t) => {
  const at = { host: '0.0.0.0', port: 53, family: 4 as const };
  const denied = listenError(Object.assign(new Error('listen EACCES'), { code: 'EACCES' }), at);
  t.equal(denied.code, 'KMS_ERR_LISTEN_PERMISSION');
  t.match(denied.message, /CAP_NET_BIND_SERVICE/);
  t.equal(listenError(Object.assign(new Error('x'), { code: 'EADDRINUSE' }), at).code, 'KMS_ERR_LISTEN_IN_USE');
  t.equal(
    listenError(Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL' }), { host: '192.0.2.1', port: 1688, family: 4 }).code,
    'KMS_ERR_LISTEN_ADDRESS',
  );
});

t.test('public client addresses are recognised for the exposure warning', async (t) => {
  for (const a of ['203.0.113.9', '8.8.8.8', '2001:4860::8888', '::ffff:198.51.100.1']) t.equal(isPublicAddress(a), true, `${a} is public`);
  for (const a of [
    '10.1.2.3',
    '172.20.0.1',
    '192.168.1.1',
    '127.0.0.1',
    '100.64.3.4',
    '169.254.1.1',
    '::1',
    'fe80::1',
    'fd00::5',
    '::ffff:10.0.0.1',
    undefined,
  ]) {
    t.equal(isPublicAddress(a), false, `${String(a)} is not public`);
  }
});
