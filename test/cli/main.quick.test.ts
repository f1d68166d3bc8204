// The CLI edge: dispatch, exit codes (0 ok, 1 failure, 2 usage/configuration) and one-line errors
// without stack traces, for `activate` against a live host and `serve` start-up failures.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { main, findCommand } from '../../src/cli/main';
import { captureIo } from './commands/io';
import { startHarness } from '../server/appliance-harness';

t.test('dispatch: overview, version, unknown commands, two-word commands', async (t) => {
  let io = captureIo();
  t.equal(await main(['--help'], io), 0);
  t.match(io.out(), /dns check/);
  io = captureIo();
  t.equal(await main([], io), 2, 'no command is a usage error');
  io = captureIo();
  t.equal(await main(['--version'], io), 0);
  t.match(io.out(), /^kms-appliance \d+\.\d+\.\d+\n$/);
  io = captureIo();
  t.equal(await main(['frobnicate'], io), 2);
  t.match(io.err(), /unknown command "frobnicate"/);
  io = captureIo();
  t.equal(await main(['clinets'], io), 2);
  t.match(io.err(), /unknown command "clinets" \(did you mean "clients"\?\)/);
  io = captureIo();
  t.equal(await main(['dns', '--help'], io), 0, 'dns --help names its sub-command');
  t.match(io.out(), /sub-commands: check/);
  io = captureIo();
  t.equal(await main(['status', '--jsn'], io), 2);
  t.match(io.err(), /unknown option --jsn \(did you mean --json\?\)/);
  t.equal(findCommand(['dns', 'check', '--domain', 'x'])?.command.name, 'dns check');
  t.same(findCommand(['dns', 'check', '--domain', 'x'])?.rest, ['--domain', 'x']);
  for (const name of ['serve', 'activate', 'status', 'clients', 'report', 'client-config', 'config']) {
    io = captureIo();
    t.equal(await main([name, '--help'], io), 0, `${name} --help`);
    t.match(io.out(), /^Usage: kms-appliance /);
  }
});

t.test('activate: usage errors exit 2, a served request exits 0, an unreachable host exits 1', async (t) => {
  let io = captureIo();
  t.equal(await main(['activate', '--product', 'Windows 10/11 Enterprise'], io), 2);
  t.match(io.err(), /--host is required/);
  io = captureIo();
  t.equal(await main(['activate', '--host', '127.0.0.1', '--product', 'no such thing'], io), 2);
  t.match(io.err(), /no product named like/);
  io = captureIo();
  t.equal(await main(['activate', '--host', '127.0.0.1', '--product', 'Enterprise'], io), 2, 'ambiguous names are refused');
  t.match(io.err(), /matches \d+ names/);
  io = captureIo();
  t.equal(await main(['activate', '--host', '127.0.0.1', '--product', 'Windows 10/11 Enterprise', '--protocol', '7'], io), 2);

  const h = await startHarness(t);
  io = captureIo();
  const code = await main(
    ['activate', '--host', '127.0.0.1', '--port', String(h.port), '--product', 'Windows 10/11 Enterprise', '--requests', '2', '--json'],
    io,
  );
  t.equal(code, 0);
  const replies = JSON.parse(io.out()) as { count: number; hresult: string; epid: string }[];
  t.same(
    replies.map((r) => r.count),
    [1, 2],
  );
  t.equal(replies[0]?.hresult, '0x00000000');

  io = captureIo();
  t.equal(
    await main(['activate', '--host', '127.0.0.1', '--port', String(h.port), '--product', 'Windows 10/11 Home'], io),
    1,
    'a refusal exits 1',
  );
  t.match(io.out(), /0xC004F042/);

  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  io = captureIo();
  t.equal(await main(['activate', '--host', '127.0.0.1', '--port', String(closed), '--product', 'Windows 10/11 Enterprise'], io), 1);
  t.match(io.err(), /0x800706BA/, 'names the code a Windows client would show');
  t.match(io.err(), `127.0.0.1:${closed}`, 'and the port it tried');
  t.notMatch(io.err(), /1688/, 'not the default port');
  io = captureIo();
  t.equal(await main(['activate', '--host', '127.0.0.1', '--product', 'Windows 11 Enterprise', '--cmid', 'notaguid'], io), 2);
  t.match(io.err(), /^kms-appliance activate: --cmid "notaguid" is not a GUID/);
  t.notMatch(io.err(), /TypeError|\n\s+at /);
  t.equal(io.err().split('\n').length, 2, 'one line');
  t.notMatch(io.err(), /\n\s+at /, 'no stack trace');
});

t.test('serve: a broken configuration exits 2 with the line, a port in use exits 1', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bad = path.join(dir, 'config.yaml');
  fs.writeFileSync(bad, 'kms:\n  activationIntervalMinutes: 5\n  colour: blue\n');
  let io = captureIo();
  t.equal(await main(['serve', '--config', bad, '--data-dir', dir], io), 2);
  t.match(io.err(), /config\.yaml:2: kms\.activationIntervalMinutes: must be between 15 and 43200/);
  t.match(io.err(), /config\.yaml:3: kms\.colour/);
  io = captureIo();
  t.equal(await main(['serve', '--listen', 'not-an-address', '--data-dir', dir], io), 2);
  t.match(io.err(), /kms\.listen: "not-an-address" is not ADDR:PORT/);

  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const ok = path.join(dir, 'ok.yaml');
  fs.writeFileSync(ok, 'admin:\n  listen: []\nlog:\n  level: fatal\n');
  io = captureIo();
  t.equal(await main(['serve', '--config', ok, '--listen', `127.0.0.1:${port}`, '--data-dir', dir], io), 1);
  t.match(io.err(), /already in use/);
  t.notMatch(io.err(), /\n\s+at /, 'no stack trace');
});
