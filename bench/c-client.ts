// The sequential loads of issue 14's table, driven by bench/c/kms-seq-client.c: a C client costs
// the 2-core machine far less CPU per request than a Node one, so the figure is the server's.
// The PDUs it replays are encoded here with the project's codecs. The C client counts only whole
// response PDUs (ptype and length checked; a fault or bind_nak is an error), and the bench's
// start has already checked one activation end to end with the project's client.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildRequestBase } from '../src/client/kms-client';
import type { ChosenProduct } from '../src/client/product-choice';
import { encodeKmsRequest } from '../src/protocol/kms';
import { encodeRequestStub } from '../src/protocol/ndr/stub';
import { encodeBind } from '../src/protocol/rpc/bind';
import { KMS_INTERFACE, NDR32_SYNTAX, OPNUM_REQUEST_ACTIVATION, PFC, PTYPE } from '../src/protocol/rpc/constants';
import { encodeRequestPdu } from '../src/protocol/rpc/request';

export interface SequentialResult {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  readonly errors: number;
}

/** Compiles the client into dir with the system's C compiler; undefined when there is none. */
export function buildCClient(root: string, dir: string): string | undefined {
  const out = path.join(dir, 'kms-seq-client');
  try {
    execFileSync('cc', ['-O2', '-o', out, path.join(root, 'bench', 'c', 'kms-seq-client.c')], { stdio: 'ignore' });
    return out;
  } catch {
    return undefined;
  }
}

/** The file the C client replays: a bind, then one NDR32 activation request per machine. */
export function writePduFile(file: string, product: ChosenProduct, machines: number): void {
  const pdus: Buffer[] = [
    encodeBind({
      ptype: PTYPE.BIND,
      callId: 2,
      flags: PFC.FIRST_FRAG | PFC.LAST_FRAG,
      maxXmitFrag: 5840,
      maxRecvFrag: 5840,
      assocGroupId: 0,
      contexts: [{ contextId: 0, abstractSyntax: KMS_INTERFACE, transferSyntaxes: [NDR32_SYNTAX] }],
    }),
  ];
  for (let i = 0; i < machines; i++) {
    const base = buildRequestBase(product, 6, { cmid: randomUUID(), workstation: `bench-${i}.branch.test`, nowMs: Date.now() });
    const stub = encodeRequestStub(encodeKmsRequest(6, base, randomBytes).message, 'ndr32');
    pdus.push(encodeRequestPdu({ callId: 3, contextId: 0, opnum: OPNUM_REQUEST_ACTIVATION, stub }));
  }
  const head = Buffer.alloc(4);
  head.writeUInt32LE(pdus.length);
  const parts: Buffer[] = [head];
  for (const pdu of pdus) {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(pdu.length);
    parts.push(length, pdu);
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

/** Runs `processes` C clients at once against 127.0.0.1:port, one request in flight each. */
export async function driveSequential(
  client: string,
  pduFile: string,
  o: { port: number; seconds: number; mode: 'keepalive' | 'newconn'; processes: number },
): Promise<SequentialResult> {
  const runs = await Promise.all(
    Array.from(
      { length: o.processes },
      () =>
        new Promise<number[]>((resolve, reject) => {
          const child = spawn(client, ['127.0.0.1', String(o.port), String(o.seconds), o.mode, pduFile], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let text = '';
          child.stdout.on('data', (c: Buffer) => (text += c.toString()));
          child.once('error', reject);
          // 'close', not 'exit': the line on stdout may still be unread when the process exits.
          child.once('close', (code) =>
            code === 0 ? resolve(text.trim().split(' ').map(Number)) : reject(new Error(`the C client exited with ${code}`)),
          );
        }),
    ),
  );
  const requests = runs.reduce((n, r) => n + r[0]!, 0);
  const elapsedS = Math.max(...runs.map((r) => r[2]!)) / 1e6;
  // Percentiles of the processes' own percentiles: the worst of them, which is the honest side.
  return {
    perSecond: requests / elapsedS,
    p50Ms: Math.max(...runs.map((r) => r[3]!)) / 1000,
    p99Ms: Math.max(...runs.map((r) => r[4]!)) / 1000,
    requests,
    errors: runs.reduce((n, r) => n + r[1]!, 0),
  };
}
