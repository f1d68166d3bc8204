// Red team against what the appliance generates and reads at its edge: the `activate` client
// facing a hostile KMS host, a hand-edited product catalogue, entitlements, the client
// configuration files and the install script. Each case is an attack that once got through (a
// stack trace, a silently wrong value, a broken script) or a regression guard for one that held.
import net from 'node:net';
import t, { type Test } from 'tap';
import { main } from '../../src/cli/main';
import { captureIo } from './commands/io';

// ---- the activate client against a hostile host (127.0.0.1, port 0) ----

/** A fake KMS host: `onConnection` plays the host's side of every connection. */
async function fakeHost(t: Test, onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

async function activateAgainst(port: number): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo();
  const args = ['activate', '--host', '127.0.0.1', '--port', String(port), '--product', 'Windows 10/11 Enterprise', '--timeout', '1'];
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

/** A DCE/RPC common header claiming `fragLength` bytes: a response PDU, call id 2. */
function rpcHeader(fragLength: number): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 5; // version
  h[2] = 12; // bind_ack
  h[3] = 3; // first and last fragment
  h[4] = 0x10; // little-endian
  h.writeUInt16LE(fragLength, 8);
  h.writeUInt32LE(2, 12);
  return h;
}

const HOSTILE_HOSTS: Record<string, (s: net.Socket) => void> = {
  'resets the connection after the bind (ECONNRESET)': (s) => s.once('data', () => s.resetAndDestroy()),
  'closes the connection after the bind': (s) => s.once('data', () => s.end()),
  'answers HTTP': (s) => s.once('data', () => s.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')),
  'announces a 65535-byte PDU': (s) => s.once('data', () => s.write(Buffer.concat([rpcHeader(65535), Buffer.alloc(4000, 0x41)]))),
  'announces a PDU shorter than its header': (s) => s.once('data', () => s.write(rpcHeader(10))),
  'sends a bare header as the whole bind_ack': (s) => s.once('data', () => s.write(rpcHeader(16))),
  'accepts and never answers': () => {},
  'drips a byte at a time, never a whole PDU': (s) => {
    const header = rpcHeader(200);
    let i = 0;
    const timer = setInterval(() => {
      if (s.destroyed || i >= header.length + 150) clearInterval(timer);
      else s.write(Buffer.from([header[i++] ?? 0]));
    }, 20);
    s.on('close', () => clearInterval(timer));
  },
  'floods garbage without being asked': (s) => {
    const chunk = Buffer.alloc(64 * 1024, 0xff);
    // Bounded: at most 64 MiB, and only while the client keeps the connection.
    let sent = 0;
    const more = (): void => {
      while (!s.destroyed && sent < 1024 && s.write(chunk)) sent++;
      if (!s.destroyed && sent < 1024) s.once('drain', more);
    };
    more();
  },
};

t.test('activate against a hostile host: one coded line and exit 1, never a stack trace', async (t) => {
  for (const [what, play] of Object.entries(HOSTILE_HOSTS)) {
    const port = await fakeHost(t, play);
    const r = await activateAgainst(port);
    t.equal(r.code, 1, `${what}: exit 1`);
    t.match(r.err, /^kms-appliance activate: .+\n {2}a Windows client would show 0x[0-9A-F]{8} .*\[KMS_ERR_CLIENT_[A-Z_]+\]\n$/, what);
    t.notMatch(r.err, /internal error|\n\s+at /, `${what}: no stack trace`);
    t.equal(r.out, '', `${what}: nothing claimed on stdout`);
  }
});
