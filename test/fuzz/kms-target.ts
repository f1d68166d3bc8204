// The KMS listener as a fuzz target: the captured client PDUs mutated (bit flips, truncation, lying
// lengths, spliced and re-chunked streams), and the attacks of issue 10: alter_context floods with
// ever new contexts, binds with many contexts, drips, clients that never read their replies,
// fragment sequences gone wrong and connection churn. Attack connections come from 127.0.1.x (other
// client addresses than the health check's 127.0.0.1). Every input ends by itself (a timer destroys
// its socket), so a round is bounded whatever the host does.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { activate } from '../../src/client/kms-client';
import { chooseProduct } from '../../src/client/product-choice';
import { findPackageRoot, loadCatalog } from '../../src/catalog/load';
import { encodeBind, type PresentationContextItem } from '../../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, PTYPE, btfnSyntax } from '../../src/protocol/rpc/constants';
import { encodeRequestPdu } from '../../src/protocol/rpc/request';
import { UNKNOWN_GUID } from '../ids';
import type { FuzzTarget } from './target';
import { seededRandom } from '../prng';

export interface KmsFuzzOptions {
  readonly host: string;
  readonly port: number;
  /** Hostile inputs (connections) per round. */
  readonly inputsPerRound?: number;
}

const MAX_INPUT_MS = 400;

/** One hostile connection's script: writes PDUs (returning how many) until told to stop. */
type Attack = (rnd: () => number, s: net.Socket, stopped: () => boolean) => Promise<number>;

const pick = <T>(rnd: () => number, list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function capturedStreams(): Buffer[][] {
  const dir = path.join(findPackageRoot(), 'test', 'fixtures', 'exchanges');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const capture = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { pdus: { dir: string; hex: string }[] };
      return capture.pdus.filter((p) => p.dir === 'c2s').map((p) => Buffer.from(p.hex, 'hex'));
    });
}

function mutatePdu(pdu: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(pdu);
  switch (int(rnd, 8)) {
    case 0: // flip a few bits anywhere
      for (let i = 0, n = 1 + int(rnd, 4); i < n; i++) b[int(rnd, b.length)]! ^= 1 << int(rnd, 8);
      return b;
    case 1: // truncate
      return b.subarray(0, int(rnd, b.length));
    case 2: // lie about frag_length
      b.writeUInt16LE(int(rnd, 0x10000), 8);
      return b;
    case 3: // a random byte in the header
      b[int(rnd, Math.min(24, b.length))] = int(rnd, 256);
      return b;
    case 4: // corrupt the stub (KMS body)
      for (let i = 24; i < b.length; i += 1 + int(rnd, 40)) b[i] = int(rnd, 256);
      return b;
    case 5: // another PDU type with the same body
      b[2] = pick(rnd, [0, 2, 3, 11, 12, 13, 14, 15, 16, 17, 18, 19, int(rnd, 256)]);
      return b;
    case 6: // fragment flags and call id shuffled
      b[3] = int(rnd, 256);
      b.writeUInt32LE(int(rnd, 4), 12);
      return b;
    default:
      return b; // unchanged: keeps the state machine moving
  }
}

const BIND3 = encodeBind({
  ptype: PTYPE.BIND,
  callId: 2,
  flags: 0x13,
  maxXmitFrag: 5840,
  maxRecvFrag: 5840,
  assocGroupId: 0,
  contexts: [
    { contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] },
    { contextId: 1, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR64_SYNTAX] },
    { contextId: 2, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [btfnSyntax(3)] },
  ],
});

function contexts(rnd: () => number, first: number, n: number): PresentationContextItem[] {
  const syntaxes = [NDR32_SYNTAX, NDR64_SYNTAX, btfnSyntax(int(rnd, 256)), { uuid: UNKNOWN_GUID, version: int(rnd, 4) }];
  return Array.from({ length: n }, (_, i) => ({
    contextId: (first + i) & 0xffff,
    abstractSyntax: rnd() < 0.8 ? KMS_INTERFACE : { uuid: 'fedcba98-7654-3210-fedc-ba9876543210', major: int(rnd, 3), minor: int(rnd, 3) },
    transferSyntaxes: Array.from({ length: 1 + int(rnd, 3) }, () => pick(rnd, syntaxes)),
  }));
}

function alter(rnd: () => number, callId: number, first: number, n: number): Buffer {
  return encodeBind({
    ptype: PTYPE.ALTER_CONTEXT,
    callId,
    flags: 0x03,
    maxXmitFrag: 5840,
    maxRecvFrag: 5840,
    assocGroupId: 0,
    contexts: contexts(rnd, first, n),
  });
}

/** Until the socket can take more (or is gone): the fuzzer's own buffers stay small. */
function drained(s: net.Socket): Promise<void> {
  return new Promise((r) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      r();
    };
    s.once('drain', done);
    s.once('close', done);
  });
}

/** Writes `bytes` in random pieces, waiting for the socket to drain when it must. */
async function writeChunked(s: net.Socket, bytes: Buffer, rnd: () => number, stopped: () => boolean): Promise<void> {
  for (let at = 0; at < bytes.length && !stopped(); ) {
    const n = 1 + int(rnd, 300);
    if (!s.write(bytes.subarray(at, at + n))) await drained(s);
    at += n;
  }
}

function attacks(streams: Buffer[][]): readonly Attack[] {
  return [
    // Mutated captures, spliced with garbage and cut anywhere.
    async (rnd, s, stopped) => {
      const stream = pick(rnd, streams).map((p) => mutatePdu(p, rnd));
      if (rnd() < 0.2) stream.push(Buffer.from(Array.from({ length: int(rnd, 400) }, () => int(rnd, 256))));
      if (rnd() < 0.2) stream.splice(int(rnd, stream.length), 0, ...pick(rnd, streams));
      await writeChunked(s, Buffer.concat(stream), rnd, stopped);
      return stream.length;
    },
    // alter_context flood with ever new context ids (the context limit closes it).
    async (rnd, s, stopped) => {
      s.write(BIND3);
      let n = 1;
      for (let i = 0; i < 400 && !stopped() && !s.destroyed; i++, n++) {
        if (!s.write(alter(rnd, i, 3 + i * 20, 1 + int(rnd, 60)))) await drained(s);
      }
      return n;
    },
    // One bind with many contexts, sometimes claiming more than it carries.
    async (rnd, s) => {
      const bind = encodeBind({
        ptype: PTYPE.BIND,
        callId: 2,
        flags: 0x13,
        maxXmitFrag: int(rnd, 0x10000),
        maxRecvFrag: int(rnd, 0x10000),
        assocGroupId: int(rnd, 2 ** 32),
        contexts: contexts(rnd, 0, 1 + int(rnd, 90)),
      });
      if (rnd() < 0.3) bind[24] = int(rnd, 256); // n_context_elem lies
      s.write(bind);
      s.write(encodeRequestPdu({ callId: 3, contextId: int(rnd, 90), opnum: 0, stub: Buffer.alloc(int(rnd, 300)) }));
      return 2;
    },
    // A drip: a valid bind a byte or two at a time.
    async (rnd, s, stopped) => {
      let n = 0;
      for (let at = 0; at < BIND3.length && !stopped() && !s.destroyed; n++) {
        const k = 1 + int(rnd, 2);
        s.write(BIND3.subarray(at, at + k));
        at += k;
        await sleep(5 + int(rnd, 30));
      }
      return n;
    },
    // A client that never reads: a bind, then requests on an unknown context as fast as it can.
    async (rnd, s, stopped) => {
      s.pause();
      s.write(BIND3);
      const burst = Buffer.concat(
        Array.from({ length: 500 }, (_, i) => encodeRequestPdu({ callId: i, contextId: 7, opnum: int(rnd, 2), stub: Buffer.alloc(0) })),
      );
      let n = 1;
      while (!stopped() && !s.destroyed && n < 20_000) {
        n += 500;
        if (!s.write(burst)) await drained(s);
      }
      return n;
    },
    // Fragmented requests gone wrong: interleaved call ids, missing first or last fragments, oversize.
    async (rnd, s, stopped) => {
      s.write(BIND3);
      let n = 1;
      for (let i = 0; i < 60 && !stopped() && !s.destroyed; i++, n++) {
        const flags = pick(rnd, [0x01, 0x00, 0x02, 0x03, 0x81, 0x00]);
        s.write(
          encodeRequestPdu({
            callId: int(rnd, 3),
            contextId: int(rnd, 3),
            opnum: 0,
            flags,
            stub: Buffer.alloc(int(rnd, 3000), int(rnd, 256)),
          }),
        );
      }
      return n;
    },
    // Keep-alive abuse: co_cancel, orphaned and second binds, which are not progress.
    async (rnd, s, stopped) => {
      s.write(BIND3);
      const cancel = Buffer.from(BIND3.subarray(0, 16));
      cancel.writeUInt16LE(16, 8);
      let n = 1;
      for (; !stopped() && !s.destroyed && n < 50; n++) {
        cancel[2] = pick(rnd, [PTYPE.CO_CANCEL, PTYPE.ORPHANED]);
        s.write(rnd() < 0.5 ? cancel : BIND3);
        await sleep(int(rnd, 20));
      }
      return n;
    },
    // Churn: connect and go away at once (sometimes with a half-sent PDU).
    async (rnd, s) => {
      if (rnd() < 0.5) s.write(BIND3.subarray(0, int(rnd, BIND3.length)));
      s.destroy();
      return 1;
    },
  ];
}

function connectFrom(host: string, port: number, localAddress: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress });
    s.on('error', () => resolve(undefined));
    s.on('data', () => {});
    s.once('connect', () => resolve(s));
  });
}

export function kmsFuzzTarget(opts: KmsFuzzOptions): FuzzTarget {
  const streams = capturedStreams();
  const list = attacks(streams);
  const product = chooseProduct(loadCatalog(), 'Windows 10/11 Enterprise');
  const perRound = opts.inputsPerRound ?? 24;
  const one = async (rnd: () => number): Promise<number> => {
    const attack = pick(rnd, list);
    // Attack-local randomness: concurrent attacks must not make the shared sequence depend on timing.
    const seed = int(rnd, 2 ** 32);
    const local = seededRandom(seed);
    const socket = await connectFrom(opts.host, opts.port, `127.0.1.${1 + int(local, 200)}`);
    if (!socket) return 0;
    let stop = false;
    const timer = setTimeout(() => {
      stop = true;
      socket.destroy();
    }, 50 + int(local, MAX_INPUT_MS));
    try {
      return await attack(local, socket, () => stop);
    } finally {
      await new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r())));
      clearTimeout(timer);
    }
  };
  return {
    name: 'kms',
    async round(rnd) {
      const sent = await Promise.all(Array.from({ length: perRound }, () => one(rnd)));
      return sent.reduce((a, b) => a + b, 0);
    },
    async healthy() {
      try {
        const [reply] = await activate({ host: opts.host, port: opts.port, product, timeoutMs: 5000 });
        return reply?.hresult === 0 && reply.verified !== undefined;
      } catch {
        return false;
      }
    },
  };
}
