// A site DNS server for the tests of the appliance as a DNS client (registration, dns check):
// UDP and TCP on one loopback port, each message answered by a test's function.
import dgram from 'node:dgram';
import net from 'node:net';
import type { Test } from 'tap';

export type Behave = (query: Buffer, transport: 'udp' | 'tcp') => Buffer | null;

/** A site DNS server on one loopback port, UDP and TCP, each message answered by `behave` (null: silence). */
export async function fakeDnsServer(t: Test, behave: Behave): Promise<{ address: string; port: number; readonly updates: number }> {
  let updates = 0;
  const isUpdate = (q: Buffer): boolean => q.length >= 4 && ((q[2]! >> 3) & 0xf) === 5;
  const tcp = net.createServer((s) => {
    let got = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
      const q = got.subarray(2, 2 + got.readUInt16BE(0));
      if (isUpdate(q)) updates++;
      const a = behave(Buffer.from(q), 'tcp');
      if (a) s.end(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
    });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (q, from) => {
    if (isUpdate(q)) updates++;
    const a = behave(Buffer.from(q), 'udp');
    if (a) udp.send(a, from.port, from.address);
  });
  await new Promise<void>((r) => udp.bind(port, '127.0.0.1', () => r()));
  t.teardown(() => {
    udp.close();
    return new Promise<void>((r) => tcp.close(() => r()));
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    get updates() {
      return updates;
    },
  };
}
