// Red team against what the appliance generates and reads at its edge: the `activate` client
// facing a hostile KMS host, a hand-edited product catalogue, entitlements, the client
// configuration files and the install script. Each case is an attack that once got through (a
// stack trace, a silently wrong value, a broken script) or a regression guard for one that held.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { buildCatalog } from '../../src/catalog/catalog';
import { loadCatalog, shippedCatalogPath } from '../../src/catalog/load';
import { command as reportCommand } from '../../src/cli/commands/report';
import { generateClientConfig } from '../../src/client-config/client-config';
import { entitlementProblems } from '../../src/cli/entitlements';
import { activate } from '../../src/client/kms-client';
import { chooseProduct } from '../../src/client/product-choice';
import { main } from '../../src/cli/main';
import { ConfigError, KmsError } from '../../src/errors';
import { captureIo } from './commands/io';
import { captureIo as captureInventoryIo, preparedDataDir, writeConfig } from './commands/inventory-fixture';
import { ROOT } from '../paths';
import { withoutTapRecorder } from '../plain-child';
import { seededRandom } from '../prng';
import { startHarness } from '../server/appliance-harness';
import { OFFICE_2019_GROUP } from '../store/observations';

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

t.test('activate through a host that corrupts one reply at random: every outcome is a reply or a coded KmsError', async (t) => {
  const seed = Number(process.env.RED_TEAM_SEED ?? 20261205);
  t.comment(`seed ${seed} (RED_TEAM_SEED replays it)`);
  const random = seededRandom(seed);
  const h = await startHarness(t);
  let corrupt = 0;
  // Between the client and a real host: forwards everything, corrupts the host's reply number `corrupt`.
  const port = await fakeHost(t, (client) => {
    const host = net.connect(h.port, '127.0.0.1');
    host.on('error', () => client.destroy());
    client.on('close', () => host.destroy());
    host.on('close', () => client.destroy());
    client.on('data', (d) => host.write(d));
    let replies = 0;
    host.on('data', (d: Buffer) => {
      let b = Buffer.from(d);
      if (replies++ === corrupt && b.length > 16) {
        const how = Math.floor(random() * 3);
        if (how === 0) for (let k = 0; k < 1 + random() * 4; k++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
        else if (how === 1) b = b.subarray(0, 16 + Math.floor(random() * (b.length - 16)));
        else b = Buffer.concat([b, Buffer.alloc(1 + Math.floor(random() * 64), Math.floor(random() * 256))]);
        // Half the time the length field is made to agree, so the corruption reaches the decoders.
        if (how !== 0 && random() < 0.5) b.writeUInt16LE(b.length, 8);
      }
      client.write(b);
    });
  });
  const seen = new Map<string, number>();
  for (let i = 0; i < 60; i++) {
    corrupt = i % 3;
    // A short bound: a reply cut short leaves the client waiting (a busy machine may time out a good one: allowed too).
    const options = { protocol: ([4, 5, 6] as const)[i % 3]!, ndr64: i % 2 === 0, timeoutMs: 150 };
    let outcome: string;
    try {
      const [r] = await activate({
        host: '127.0.0.1',
        port,
        product: chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise'),
        ...options,
      });
      outcome = r!.hresult === 0 ? 'served' : 'refused';
    } catch (err) {
      t.ok(err instanceof KmsError, `#${i}: ${(err as Error).name}: ${(err as Error).message}`);
      outcome = (err as KmsError).code;
    }
    seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
  }
  t.comment(JSON.stringify(Object.fromEntries(seen)));
  for (const code of seen.keys()) t.match(code, /^(served|refused|KMS_ERR_CLIENT_[A-Z_]+|KMS_ERR_KMS_RESPONSE_INVALID)$/);
  t.ok((seen.get('KMS_ERR_CLIENT_PROTOCOL') ?? 0) > 0, 'broken PDUs were among them');
});

t.test('activate --product: a pasted page is one usage line, without a search through it', async (t) => {
  const io = captureIo();
  const page = Array.from({ length: 50_000 }, (_, i) => `windows${i % 7}`).join(' ');
  t.equal(await main(['activate', '--host', '127.0.0.1', '--product', page], io), 2);
  t.match(io.err(), /^kms-appliance activate: --product is longer than any name in the catalogue \(\d+ characters\) \(see [^\n]+\)\n$/);
});

// ---- a product catalogue an administrator supplies (catalog.file) ----

// biome-ignore lint/suspicious/noExplicitAny: the catalogue edits reach anywhere into the parsed JSON
type Json = any;
const shipped = (): Json => JSON.parse(fs.readFileSync(shippedCatalogPath(), 'utf8'));

/** The ConfigError a catalogue gets, with the lines the CLI prints (each must name the file). */
function refusal(t: Test, raw: unknown, what: string): string {
  try {
    buildCatalog(raw, '/etc/kms-appliance/new-catalog.json');
  } catch (err) {
    t.ok(err instanceof ConfigError, `${what}: a ConfigError, not ${(err as Error).name}`);
    t.equal((err as ConfigError).code, 'KMS_ERR_CONFIG_INVALID', what);
    const lines = (err as ConfigError).errors;
    t.ok(
      lines.every((l) => l.startsWith('/etc/kms-appliance/new-catalog.json: ')),
      `${what}: every line names the file`,
    );
    t.notMatch(lines.join('\n'), UNSAFE_TEXT, `${what}: nothing in the message a terminal would obey`);
    return lines.join('\n');
  }
  t.fail(`${what}: accepted`);
  return '';
}

// eslint-disable-next-line no-control-regex
const UNSAFE_TEXT = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\p{Cf}]/u;

t.test('catalogue numbers that would become a wrong threshold or a malformed ePID are refused, naming the entry', async (t) => {
  const cases: [string, (c: Json) => void, RegExp][] = [
    ['threshold 0', (c) => (c.applications[0].kmsGroups[1].nCountPolicy = 0), /kmsGroups\[1\] \(".+"\)\.nCountPolicy: .*found 0$/m],
    ['threshold 10^9', (c) => (c.applications[0].kmsGroups[1].nCountPolicy = 1e9), /nCountPolicy: .*1 … 1000.*found 1000000000/],
    ['threshold -25', (c) => (c.applications[1].kmsGroups[0].nCountPolicy = -25), /applications\[1\]\.kmsGroups\[0\].*found -25/],
    ['threshold 25.5', (c) => (c.applications[0].kmsGroups[0].nCountPolicy = 25.5), /nCountPolicy: .*found 25\.5/],
    ['six-digit ePID group id', (c) => (c.hostKeyGroups[2].groupId = 123456), /hostKeyGroups\[2\] \(".+"\)\.groupId: .*found 123456/],
    ['negative key id', (c) => (c.hostKeyGroups[0].minKeyId = -1), /hostKeyGroups\[0\].*\.minKeyId: .*found -1/],
    ['ten-digit key id', (c) => (c.hostKeyGroups[0].maxKeyId = 1e10), /\.maxKeyId: .*found 10000000000/],
    ['six-digit platform id', (c) => (c.hostBuilds[3].platformId = 100000), /hostBuilds\[3\] \(".+"\)\.platformId: .*found 100000/],
    ['three-digit build', (c) => (c.hostBuilds[0].build = 999), /hostBuilds\[0\].*\.build: .*found 999/],
    [
      'a protocol that is no version',
      (c) => (c.applications[2].kmsGroups[0].protocol = 'banana'),
      /applications\[2\]\.kmsGroups\[0\].*\.protocol: .*found "banana"/,
    ],
    ['31 February', (c) => (c.hostKeyGroups[0].releaseDate = '2024-02-31'), /hostKeyGroups\[0\].*\.releaseDate: .*found "2024-02-31"/],
    ['an ePID date before 1990', (c) => (c.hostBuilds[5].releaseDate = '1985-06-01'), /hostBuilds\[5\].*\.releaseDate: .*from 1990/],
  ];
  for (const [what, edit, expected] of cases) {
    const c = shipped();
    edit(c);
    t.match(refusal(t, c, what), expected, what);
  }
});

t.test('catalogue names are printable lines: terminal escapes, bidi overrides, newlines and megabytes are refused', async (t) => {
  const names = ['Windows\u001b]0;owned\u0007 11', 'Office \u202e1202', 'Visio\n2021 Standard', 'x'.repeat(100_000), '   ', 'tag\u{e0041}'];
  for (const name of names) {
    const c = shipped();
    c.applications[0].kmsGroups[0].skus[0].name = name;
    const message = refusal(t, c, JSON.stringify(name.slice(0, 20)));
    t.match(message, /applications\[0\]\.kmsGroups\[0\]\.skus\[0\] \(".*"\)\.name: expected a name/);
    t.ok(message.length < 1000, 'the message stays a line, whatever the name');
    if (name.startsWith('tag')) t.match(message, '("tag\\u{e0041}")', 'an invisible tag character is shown by its code point');
  }
  const hk = shipped();
  hk.hostKeyGroups[1].name = 'Windows\u0085Server';
  t.match(refusal(t, hk, 'C1 control in a host-key group name'), /hostKeyGroups\[1\]/);
});

t.test('a hand-edited catalogue nesting 200,000 arrays deep gives a ConfigError or loads, never a stack overflow', async (t) => {
  const deep = '['.repeat(200_000) + ']'.repeat(200_000);
  const text = JSON.stringify(shipped());
  const dir = t.testdir({
    'unread-field.json': text.replace('"description":', `"notes": ${deep}, "description":`),
    'read-field.json': text.replace(/"name": ?"Windows Server 2025 Azure Core"/, `"name": ${deep}`),
  });
  const c = loadCatalog(path.join(dir, 'unread-field.json'));
  t.equal(c.applications.length, shipped().applications.length, 'a field the appliance does not read may nest deep');
  t.ok(Object.isFrozen(c.applications[0]), 'and the catalogue is still frozen');
  t.throws(() => loadCatalog(path.join(dir, 'read-field.json')), { code: 'KMS_ERR_CONFIG_INVALID' });
  t.match(refusal(t, JSON.parse(fs.readFileSync(path.join(dir, 'read-field.json'), 'utf8')), 'deep name'), /\.name: .*found an array of 1/);
});

t.test('conflicting ids and names are refused naming both entries; GUIDs in any letter case still work', async (t) => {
  const a = shipped();
  a.applications[1].kmsGroups[0].id = a.applications[0].kmsGroups[0].id.toUpperCase();
  t.match(
    refusal(t, a, 'one KMS group id in upper case in another application'),
    /applications\[1\]\.kmsGroups\[0\] \(".+"\): KMS group [0-9a-f-]{36} is already the KMS group at applications\[0\]\.kmsGroups\[0\]/,
  );
  const b = shipped();
  b.applications[1].kmsGroups[0].skus[0].id = b.applications[0].kmsGroups[0].id;
  t.match(
    refusal(t, b, 'a SKU with a KMS group id'),
    /skus\[0\] \(".+"\): SKU .* is already the KMS group at applications\[0\]\.kmsGroups\[0\]/,
  );
  const c = shipped();
  c.hostKeyGroups[3].name = ` ${c.hostKeyGroups[1].name.toUpperCase()}`;
  t.match(refusal(t, c, 'two host-key groups of one name'), /hostKeyGroups\[3\] \(".+"\): the name is already hostKeyGroups\[1\]'s/);
  const d = shipped();
  d.hostBuilds.push({ ...d.hostBuilds[0], name: 'again' });
  t.match(refusal(t, d, 'one build twice'), /hostBuilds\[\d+\]: build \d+ is already hostBuilds\[0\]/);

  // Every GUID of the file in upper case: the lookups and the host's policy are case-blind.
  const upper = JSON.parse(JSON.stringify(shipped()).replace(/"[0-9a-f]{8}-[0-9a-f-]{27}"/g, (g) => g.toUpperCase()));
  const u = buildCatalog(upper, 'upper.json');
  const s = loadCatalog();
  const group = s.applications[0]!.kmsGroups[0]!;
  t.equal(u.kmsGroupById(group.id)?.name, group.name);
  t.equal(u.skuById(group.skus[0]!.id)?.name, group.skus[0]!.name);
  t.equal(u.describeSku(group.skus[0]!.id, group.id), s.describeSku(group.skus[0]!.id, group.id));
  t.equal(u.applications[0]!.kmsGroups[0]!.id, group.id, 'every reader sees the GUIDs in lowercase');
  t.equal(u.hostKeyGroups[0]!.activatesKmsGroups[0], s.hostKeyGroups[0]!.activatesKmsGroups[0]);
  const product = chooseProduct(u, group.skus[0]!.id.toUpperCase());
  t.same(
    [product.activationId, product.kmsCountedId, product.applicationId],
    [group.skus[0]!.id, group.id, s.applications[0]!.id],
    'activate --product GUID finds the product, and sends its ids',
  );
  t.same(entitlementProblems(u, [{ product: group.id.toUpperCase(), licenses: 1 }]), [], 'an entitlement by id matches');
});

t.test('the host-key groups a KMS group names (activatedByHostKeyGroups) are checked like the others', async (t) => {
  const c = shipped();
  c.applications[0].kmsGroups[0].activatedByHostKeyGroups.push(null);
  t.match(refusal(t, c, 'null entry'), /kmsGroups\[0\]\.activatedByHostKeyGroups\[\d+\]: expected an object/);
  const d = shipped();
  d.applications[0].kmsGroups[0].activatedByHostKeyGroups[0].name = 42;
  t.match(refusal(t, d, 'a number for a name'), /activatedByHostKeyGroups\[0\]\.name: expected a name/);
});

t.test('a catalogue file: too large, not a file, a BOM, a thousand problems', async (t) => {
  const text = JSON.stringify(shipped());
  const broken = shipped();
  for (const g of broken.applications.flatMap((a: Json) => a.kmsGroups)) g.nCountPolicy = 0;
  const dir = t.testdir({
    'huge.json': text.replace('"description":', `"padding": "${'x'.repeat(5 * 1024 * 1024)}", "description":`),
    'bom.json': `\ufeff${text}`,
    'broken.json': JSON.stringify(broken),
  });
  t.throws(() => loadCatalog(path.join(dir, 'huge.json')), { code: 'KMS_ERR_CONFIG_INVALID', message: /huge\.json is larger than 4 MiB/ });
  t.equal(loadCatalog(path.join(dir, 'bom.json')).applications.length, broken.applications.length, 'a UTF-8 BOM is no error');
  const fifo = path.join(dir, 'fifo.json');
  const made = spawnSync('mkfifo', [fifo]);
  if (made.status === 0) {
    // Opening a FIFO for reading blocks until a writer comes: this would hang without O_NONBLOCK.
    t.throws(() => loadCatalog(fifo), {
      code: 'KMS_ERR_CONFIG_UNREADABLE',
      message: /fifo\.json cannot be read: it is not a regular file/,
    });
  }
  try {
    loadCatalog(path.join(dir, 'broken.json'));
    t.fail('accepted');
  } catch (err) {
    const lines = (err as ConfigError).errors;
    t.equal(lines.length, 21, 'twenty problems and a count of the rest');
    t.match(lines[20], /broken\.json: … and \d+ more problems$/);
  }
});

t.test('activate --catalog: a product added to an updated catalogue can be tried; a broken one is refused naming it', async (t) => {
  const raw = shipped();
  const group = structuredClone(raw.applications[0].kmsGroups.find((g: Json) => !g.isRetail && !g.isPreview));
  group.id = 'aaaaaaaa-0000-4000-8000-000000000001';
  group.name = 'Windows Server 2028';
  group.skus = [{ id: 'aaaaaaaa-0000-4000-8000-000000000002', name: 'Windows Server 2028 Standard' }];
  raw.applications[0].kmsGroups.push(group);
  const broken = shipped();
  broken.applications[0].kmsGroups[0].nCountPolicy = 0;
  const dir = t.testdir({ 'updated.json': JSON.stringify(raw), 'broken.json': JSON.stringify(broken) });
  const io = captureIo();
  t.equal(await main(['activate', '--list-products', '--catalog', path.join(dir, 'updated.json')], io), 0);
  t.match(io.out(), /^Windows Server 2028 Standard\tWindows Server 2028\tv6\.0\taaaaaaaa-0000-4000-8000-000000000002$/m);
  const bad = captureIo();
  t.equal(await main(['activate', '--list-products', '--catalog', path.join(dir, 'broken.json')], bad), 2);
  t.match(bad.err(), /^kms-appliance activate: .*broken\.json: applications\[0\]\.kmsGroups\[0\] .*nCountPolicy/m);
});

// ---- entitlements and `report` ----

async function report(t: Test, entitlements: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureInventoryIo();
  const code = await reportCommand.run(
    ['--config', writeConfig(t, `entitlements:\n${entitlements}`), '--data-dir', preparedDataDir(t)],
    c.io,
  );
  return { code, out: c.stdout(), err: c.stderr() };
}

t.test('entitlements: one product twice is pointed out (report warns, config check refuses), never silently over-used twice', async (t) => {
  const twice = '  - product: Office 2019\n    licenses: 4\n  - product: " office 2019 "\n    licenses: 3\n';
  const r = await report(t, twice);
  t.equal(r.code, 0);
  t.match(
    r.err,
    /^kms-appliance report: entitlements\[1\]\.product: "office 2019" names the same product group as entitlements\[0\] \("Office 2019"\)/,
  );
  t.match(r.err, /put the licences in one entry \(4 \+ 3 = 7\)\n$/);
  t.equal(r.err.split('\n').length, 2, 'one line');
  const byId = await report(
    t,
    `  - product: Office 2019\n    licenses: 4\n  - product: "${OFFICE_2019_GROUP.toUpperCase()}"\n    licenses: 1\n`,
  );
  t.match(byId.err, /entitlements\[1\]\.product: .* names the same product group as entitlements\[0\]/, 'by id, in any case');
  const distinct = await report(t, '  - product: Windows\n    licenses: 100\n  - product: Office 2019\n    licenses: 10\n');
  t.equal(distinct.err, '', 'different products: nothing to say');

  const io = captureIo();
  t.equal(await main(['config', 'check', writeConfig(t, `entitlements:\n${twice}`)], io), 2);
  t.match(io.err(), /config\.yaml: entitlements\[1\]\.product: "office 2019" names the same product group/);
});

t.test('entitlements: licence counts out of range are configuration errors; names are shown, never obeyed', async (t) => {
  for (const licenses of ['-1', '1e12', '2.5', '"10"', 'null']) {
    const r = await report(t, `  - product: Office 2019\n    licenses: ${licenses}\n`);
    t.equal(r.code, 2, `licenses: ${licenses}`);
    t.match(r.err, /config\.yaml:3: entitlements\[0\]\.licenses: .*must be/, `licenses: ${licenses}`);
    t.equal(r.out, '');
  }
  const escaped = await report(
    t,
    '  - product: "Visio \\e]0;owned\\a 2099"\n    licenses: 1\n  - product: "\\u2029Office 2019"\n    licenses: 1\n',
  );
  t.equal(escaped.code, 0);
  t.notMatch(escaped.err + escaped.out, UNSAFE_TEXT, 'no escape sequence, bidi or line separator reaches the terminal');
  t.match(escaped.err, 'entitlements[0].product: "Visio \\x1b]0;owned\\x07 2099" names no application');
  t.match(escaped.out, /Over-used: \\u2029Office 2019 \(6 machines, 1 licence\)\./);

  // A 1 MiB configuration fits a product "name" of 100,000 words: one short line, no fuzzy search over them.
  const words = Array.from({ length: 100_000 }, (_, i) => `office${i % 10}`).join(' ');
  const problems = entitlementProblems(loadCatalog(), [{ product: words, licenses: 1 }]);
  t.equal(problems.length, 1);
  t.match(
    problems[0],
    /^entitlements\[0\]\.product: "office0 office1 .{50,80}…" is longer than any name in the catalogue \(\d+ characters\)$/,
  );
});

// ---- the client configuration files (values that reach .cmd, .ps1 and .reg) ----

t.test('client-config: shell, batch, PowerShell and registry syntax in --host is refused in one inert line, nothing written', async (t) => {
  const dir = t.testdir({});
  const out = path.join(dir, 'out');
  const hostile = [
    'kms"&calc',
    "kms'; calc; '",
    'kms`calc`',
    'kms$(calc)',
    'kms%COMSPEC%',
    'kms^&calc',
    'kms\r\ncalc',
    'kms\ncalc',
    'kms|calc',
    'kms>C:\\x',
    'kms!x!',
    'kms"]\r\n[HKEY_LOCAL_MACHINE\\x',
    'kms\u0000.org',
    'kmś.example.org',
    'ｋｍｓ.example.org',
    'kms\u200b.example.org',
    'kms\u202e.gro',
    'fe80::1%eth0&calc',
    'fe80::1%%PATH%%',
    '[kms.example.org]',
    '0x7f000001',
    '0x7f.1',
    'kms.branch.1688',
    '10.1',
    'x'.repeat(300),
  ];
  for (const host of hostile) {
    const io = captureIo();
    const what = JSON.stringify(host.slice(0, 40));
    t.equal(await main(['client-config', '--host', host, '--out', out], io), 2, what);
    t.match(io.err(), /^kms-appliance client-config: --host: [^\n]+\n$/, `${what}: one line`);
    t.notMatch(io.err(), UNSAFE_TEXT, `${what}: shown inert`);
    t.ok(io.err().length < 500, `${what}: a line, not the value`);
  }
  t.notOk(fs.existsSync(out), 'nothing written');
});

t.test('client-config: addresses no client reaches a host at are refused; a loopback one is warned about', async (t) => {
  const out = path.join(t.testdir({}), 'out');
  for (const host of ['0.0.0.0', '255.255.255.255', '224.0.0.251', '239.1.2.3', '::', '[::]', 'ff02::1', 'ff02::fb%eth0']) {
    const io = captureIo();
    t.equal(await main(['client-config', '--host', host, '--out', out], io), 2, host);
    t.match(io.err(), /--host: ".+" is an unspecified, broadcast or multicast address/, host);
  }
  t.notOk(fs.existsSync(out));
  for (const host of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', 'localhost', 'LOCALHOST.']) {
    const io = captureIo();
    t.equal(await main(['client-config', '--host', host, '--out', out], io), 0, host);
    t.match(
      io.err(),
      /^kms-appliance client-config: warning: .+ is a loopback address: each client would look for the KMS host on itself\n$/,
    );
  }
  const io = captureIo();
  t.equal(await main(['client-config', '--host', '192.0.2.10', '--out', out], io), 0);
  t.equal(io.err(), '', 'an ordinary address: nothing to warn about');
});

t.test('client-config: an accepted host changes only its own places in the files', async (t) => {
  const baseline = generateClientConfig({ host: 'kms', port: 1688 });
  const text = (f: { name: string; content: Buffer }): string =>
    f.name.endsWith('.reg') ? f.content.subarray(2).toString('utf16le') : f.content.toString('latin1');
  for (const host of ['kms-01.branch.example.org.', `${'a'.repeat(63)}.${'b'.repeat(63)}.example`, 'xn--kms-9na.example', 'localhost']) {
    const files = generateClientConfig({ host, port: 1688 });
    files.forEach((f, i) => {
      t.equal(text(f).split(host).join('kms'), text(baseline[i]!), `${host}: ${f.name}`);
      t.ok(
        [...text(f)].every((c) => c === '\r' || c === '\n' || (c >= ' ' && c <= '~')),
        `${f.name}: printable ASCII and CRLF only`,
      );
    });
  }
  for (const port of [0, 65536, 1.5, -1, Number.NaN]) {
    t.throws(() => generateClientConfig({ host: 'kms', port }), { code: 'KMS_ERR_CLI_USAGE' }, `port ${port}`);
  }
});

t.test('client-config: an output directory with spaces, quotes and non-ASCII is written as given', async (t) => {
  const out = path.join(t.testdir({}), 'Client files "KMS" ñ & co');
  const io = captureIo();
  t.equal(await main(['client-config', '--host', 'kms.example.org', '--out', out], io), 0);
  t.equal(fs.readdirSync(out).length, 6);
  t.match(fs.readFileSync(path.join(out, 'kms-client-set.cmd'), 'latin1'), '/skms kms.example.org:1688\r\n');
});

// ---- scripts/install.sh with paths that have spaces and quotes ----

const FAKE_CLI = `const [cmd, sub] = process.argv.slice(2);
if (cmd === 'config' && sub === 'defaults') { process.stdout.write('log:\\n  level: info\\n'); process.exit(0); }
if (cmd === 'config' && sub === 'check') process.exit(0);
process.stdout.write('ran with ' + JSON.stringify(process.argv.slice(2)) + '\\n');
`;

t.test('install.sh: node, source and root in paths with spaces and quotes; the installed command runs', async (t) => {
  const top = path.join(t.testdir({}), "it's a dir");
  const source = path.join(top, 'built app');
  const root = path.join(top, 'staging root');
  const nodeDir = path.join(top, "Node JS 'current'", 'bin');
  const files: Record<string, string> = {
    'dist/src/cli/main.js': FAKE_CLI,
    'data/kms-catalog.json': '{}\n',
    'package.json': JSON.stringify({ name: 'kms-appliance', version: '0.0.1', engines: { node: '>=20' } }),
  };
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(source, name)), { recursive: true });
    fs.writeFileSync(path.join(source, name), content);
  }
  fs.mkdirSync(nodeDir, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(nodeDir, 'node'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', DESTDIR: root, KMS_APPLIANCE_SOURCE: source };
  const run = (command: string, args: string[], extra: Record<string, string>) => {
    const [c, a] = withoutTapRecorder(command, args);
    return spawnSync(c, a, { env: { ...env, ...extra }, encoding: 'utf8', cwd: top });
  };
  // The scripts themselves in a checkout whose path has a space and a quote too.
  const repo = path.join(top, "the repo's copy");
  for (const f of ['scripts/install.sh', 'scripts/uninstall.sh', 'systemd/kms-appliance.service']) {
    fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(repo, f));
  }
  const installed = path.join(root, 'usr', 'lib', 'kms-appliance', 'bin', 'kms-appliance');
  for (const [what, node] of [
    ['absolute, with spaces and a quote', path.join(nodeDir, 'node')],
    ['relative to the directory install.sh ran in', path.join(`Node JS 'current'`, 'bin', 'node')],
  ] as const) {
    const r = run('bash', [path.join(repo, 'scripts', 'install.sh'), '--no-start'], { NODE: node });
    t.equal(r.status, 0, `${what}: installed (${r.stderr.trim()})`);
    // Run from elsewhere, as systemd and an administrator do.
    const [c, a] = withoutTapRecorder(installed, ['status', '--json']);
    const ran = spawnSync(c, a, { env: { PATH: env.PATH }, encoding: 'utf8', cwd: '/' });
    t.equal(ran.status, 0, `${what}: the installed command starts node (${ran.stderr.trim()})`);
    t.equal(ran.stdout, 'ran with ["status","--json"]\n', what);
  }
  const removed = run('bash', [path.join(repo, 'scripts', 'uninstall.sh'), '--purge'], {});
  t.equal(removed.status, 0, `uninstall.sh below a root with spaces (${removed.stderr.trim()})`);
  t.notOk(fs.existsSync(installed), 'the program is gone');
  t.notOk(fs.existsSync(path.join(root, 'etc', 'kms-appliance')), 'and, with --purge, the configuration');
  t.ok(fs.existsSync(source), 'nothing outside the root touched');
});

t.test('a catalogue reference to an undefined KMS group is said (config check, serve log), not left silent', async (t) => {
  const raw = shipped();
  const typo = '00000000-1111-2222-3333-444444444444';
  raw.hostKeyGroups[0].activatesKmsGroups.push(typo);
  const dir = t.testdir({ 'catalog.json': JSON.stringify(raw) });
  const file = path.join(dir, 'catalog.json');
  fs.writeFileSync(path.join(dir, 'config.yaml'), `catalog:\n  file: ${JSON.stringify(file)}\n`);
  const io = captureIo();
  t.equal(await main(['config', 'check', path.join(dir, 'config.yaml')], io), 0, 'a warning, not an error');
  t.match(
    io.err(),
    new RegExp(`catalog\\.json: warning: host-key group ".+" lists KMS group ${typo}, which the catalogue does not define`),
  );

  const h = await startHarness(t, (c) => {
    c.catalog.file = file;
  });
  const line = h.logs.find((l) => l.event === 'catalog-warning');
  t.equal(line?.level, 'warn', 'serve logs it as a warning');
  t.equal(line?.catalog, file);
  t.match(String(line?.msg), typo);
});

t.test('a catalogue without host-key groups loads, and says that nothing can be served', async (t) => {
  const raw = shipped();
  raw.hostKeyGroups = [];
  for (const g of raw.applications.flatMap((a: Json) => a.kmsGroups)) g.activatedByHostKeyGroups = [];
  t.match(buildCatalog(raw).warnings, [/no host-key groups .* can serve none of its products/]);
  t.same(buildCatalog(shipped()).warnings, [], 'the shipped catalogue has nothing to warn about');
});

t.test('install.sh: a unit copied to /etc/systemd/system, which would override the new one, is pointed out', async (t) => {
  const dir = t.testdir({
    app: {
      dist: { src: { cli: { 'main.js': FAKE_CLI } } },
      'package.json': JSON.stringify({ name: 'kms-appliance', version: '0.0.1' }),
    },
    root: { etc: { systemd: { system: { 'kms-appliance.service': '[Service]\nExecStart=/opt/old/kms-appliance serve\n' } } } },
  });
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', DESTDIR: path.join(dir, 'root'), KMS_APPLIANCE_SOURCE: path.join(dir, 'app') };
  const [c, a] = withoutTapRecorder('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--no-start']);
  const r = spawnSync(c, a, { env: { ...env, NODE: process.execPath }, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /warning: \/etc\/systemd\/system\/kms-appliance\.service overrides the unit just installed/);
  fs.rmSync(path.join(dir, 'root', 'etc', 'systemd'), { recursive: true });
  const again = spawnSync(c, a, { env: { ...env, NODE: process.execPath }, encoding: 'utf8' });
  t.equal(again.status, 0, again.stderr);
  t.notMatch(again.stdout, /overrides/, 'without a copy, nothing to say');
});
