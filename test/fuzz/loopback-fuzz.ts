// `npm run test:fuzz`: a time-boxed, seeded fuzzer over loopback. It starts the appliance
// in-process, replays the captured client PDUs with random mutations (bit flips, truncation,
// lying lengths, spliced PDUs, random chunking) on many connections, and after every round checks
// that a well-behaved client is still served with a verified response. Prints the seed so that a
// failure can be replayed: node dist/test/fuzz/loopback-fuzz.js --seed N [--seconds S].
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startAppliance } from '../../src/cli/appliance';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { createLogger } from '../../src/logging/logger';
import { activate } from '../../src/client/kms-client';
import { chooseProduct } from '../../src/client/product-choice';
import { findPackageRoot, loadCatalog } from '../../src/catalog/load';

/** Small deterministic PRNG (mulberry32): the same seed replays the same run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function clientStreams(): Buffer[][] {
  const dir = path.join(findPackageRoot(), 'test', 'fixtures', 'exchanges');
  return fs.readdirSync(dir).map((f) => {
    const capture = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { pdus: { dir: string; hex: string }[] };
    return capture.pdus.filter((p) => p.dir === 'c2s').map((p) => Buffer.from(p.hex, 'hex'));
  });
}

function mutate(pdu: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(pdu);
  switch (Math.floor(rnd() * 6)) {
    case 0: // flip a few bits anywhere
      for (let i = 0, n = 1 + Math.floor(rnd() * 4); i < n; i++) b[Math.floor(rnd() * b.length)]! ^= 1 << Math.floor(rnd() * 8);
      return b;
    case 1: // truncate
      return b.subarray(0, Math.floor(rnd() * b.length));
    case 2: // lie about frag_length
      b.writeUInt16LE(Math.floor(rnd() * 0x10000), 8);
      return b;
    case 3: // a random byte in the header
      b[Math.floor(rnd() * Math.min(24, b.length))] = Math.floor(rnd() * 256);
      return b;
    case 4: // corrupt the stub (KMS body)
      for (let i = 24; i < b.length; i += 1 + Math.floor(rnd() * 40)) b[i] = Math.floor(rnd() * 256);
      return b;
    default:
      return b; // unchanged: keeps the state machine moving
  }
}

async function send(port: number, bytes: Buffer, rnd: () => number): Promise<void> {
  await new Promise<void>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.on('data', () => {});
    socket.once('connect', () => {
      let at = 0;
      while (at < bytes.length) {
        const n = 1 + Math.floor(rnd() * 200);
        socket.write(bytes.subarray(at, at + n));
        at += n;
      }
      setTimeout(() => socket.destroy(), 20 + Math.floor(rnd() * 50));
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seed: { type: 'string' }, seconds: { type: 'string' } } });
  const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));
  const seconds = Number(values.seconds ?? 30);
  const rnd = prng(seed);
  process.stdout.write(`fuzz: seed ${seed}, ${seconds} s (replay with --seed ${seed})\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-fuzz-'));
  const config = structuredClone(DEFAULTS) as { -readonly [K in keyof AppConfig]: any };
  config.kms.listen = ['127.0.0.1:0'];
  config.kms.idleTimeoutSeconds = 2;
  config.admin.listen = [];
  config.store.dataDir = dir;
  const appliance = await startAppliance(config as AppConfig, { log: createLogger({ level: 'silent' }) });
  const port = appliance.kmsAddresses[0]!.port;
  const product = chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise');
  const streams = clientStreams();
  const deadline = Date.now() + seconds * 1000;
  let rounds = 0;
  let sent = 0;
  try {
    while (Date.now() < deadline) {
      const batch: Promise<void>[] = [];
      for (let c = 0; c < 20; c++) {
        const stream = streams[Math.floor(rnd() * streams.length)]!;
        const pdus = stream.map((p) => mutate(p, rnd));
        if (rnd() < 0.2) pdus.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 400) }, () => Math.floor(rnd() * 256))));
        batch.push(send(port, Buffer.concat(pdus), rnd));
        sent++;
      }
      await Promise.all(batch);
      const [reply] = await activate({ host: '127.0.0.1', port, product, timeoutMs: 5000 });
      if (reply?.hresult !== 0 || !reply.verified) throw new Error(`round ${rounds}: a good client was not served`);
      rounds++;
    }
    process.stdout.write(`fuzz: ${sent} hostile connections in ${rounds} rounds; the host served a good client after every round\n1 passed, 0 failed\n`);
  } finally {
    await appliance.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`fuzz failed: ${(err as Error).stack ?? String(err)}\n0 passed, 1 failed\n`);
  process.exitCode = 1;
});
