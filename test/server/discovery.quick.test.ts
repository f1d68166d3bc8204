// Discovery end to end on loopback: the appliance's own DNS responder publishes _vlmcs._tcp with
// the port the KMS listener really uses and an address it really serves (C34, C35), and
// `kms-appliance dns check` finds the host through it and activates like a client would.
import t from 'tap';
import { Resolver } from 'node:dns/promises';
import { main } from '../../src/cli/main';
import { captureIo } from '../cli/commands/io';
import { startHarness } from './appliance-harness';
import { kmsAddressesToPublish } from '../../src/cli/appliance';

t.test('SRV answers name the real KMS port and a served address; dns check succeeds through them', async (t) => {
  const h = await startHarness(t, (c) => {
    c.dns.listen = ['127.0.0.1:0'];
    (c.dns as { zones: unknown[] }).zones = [{ domain: 'branch.test', ttlSeconds: 60, hosts: [] }];
  });
  const dnsPort = h.appliance.dnsAddresses[0]!.port;
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dnsPort}`]);
  const srv = await resolver.resolveSrv('_vlmcs._tcp.branch.test');
  t.equal(srv.length, 1);
  t.equal(srv[0]?.port, h.port, 'the SRV port is the port the KMS listener uses (C35)');
  t.same(await resolver.resolve4(srv[0]!.name), ['127.0.0.1'], 'the target resolves to the address the listener serves');

  const io = captureIo();
  const code = await main(['dns', 'check', '--domain', 'branch.test', '--server', `127.0.0.1:${dnsPort}`, '--port', String(h.port)], io);
  t.equal(code, 0, io.out() + io.err());
  t.match(io.out(), /0[0-9]{4}-[0-9]{5}-/, 'the report shows the host ePID');
  t.ok(
    h.outcomes.some((o) => o.workstationName === 'kms-appliance-dns-check'),
    'the probe reached the host as a real request',
  );

  const missing = captureIo();
  t.equal(await main(['dns', 'check', '--domain', 'elsewhere.test', '--server', `127.0.0.1:${dnsPort}`], missing), 1);
  t.match(missing.out() + missing.err(), /0x8007232B|0x8007251D|REFUSED/i, 'a domain without the record is explained');
});

t.test('published addresses follow the listen addresses', async (t) => {
  const machine = () => ['192.0.2.7', '2001:db8::7', 'fe80::1'];
  t.same(kmsAddressesToPublish([{ host: '127.0.0.1', family: 4 }], machine)(), ['127.0.0.1']);
  t.same(kmsAddressesToPublish([{ host: '0.0.0.0', family: 4 }], machine)(), ['192.0.2.7']);
  t.same(
    kmsAddressesToPublish(
      [
        { host: '0.0.0.0', family: 4 },
        { host: '::', family: 6 },
      ],
      machine,
    )(),
    ['192.0.2.7', '2001:db8::7'],
    'never link-local',
  );
});
