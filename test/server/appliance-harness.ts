// Starts the whole appliance in-process on loopback with port 0 and a temporary data directory:
// the server tests' common setup. Not a test file (tap only runs *.test.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import type { Test } from 'tap';
import { DEFAULTS, type AppConfig } from '../../src/config/defaults';
import { startAppliance, type Appliance } from '../../src/cli/appliance';
import { createLogger } from '../../src/logging/logger';
import type { ActivationOutcome } from '../../src/host/outcome';
import { loadCatalog } from '../../src/catalog/load';
import { chooseProduct, type ChosenProduct } from '../../src/client/product-choice';
import { until } from '../wait';

const catalog = loadCatalog();

export function product(name: string): ChosenProduct {
  return chooseProduct(catalog, name);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] };
export type ConfigEdit = (c: Mutable<AppConfig>) => void;

export interface Harness {
  readonly appliance: Appliance;
  readonly port: number;
  readonly host: string;
  readonly outcomes: ActivationOutcome[];
  /** Parsed JSON log lines written so far. */
  readonly logs: Record<string, unknown>[];
  /** Emits 'line' after each log line is added to `logs`: what waits on the log listen to. */
  readonly logged: EventEmitter;
  readonly dataDir: string;
}

export function testConfig(edit?: ConfigEdit, host = '127.0.0.1'): AppConfig {
  const c = structuredClone(DEFAULTS) as Mutable<AppConfig>;
  c.kms.listen = [host.includes(':') ? `[${host}]:0` : `${host}:0`];
  c.admin.listen = [];
  c.log.level = 'debug';
  edit?.(c);
  return c as AppConfig;
}

export async function startHarness(t: Test, edit?: ConfigEdit, options: { host?: string; dataDir?: string } = {}): Promise<Harness> {
  const host = options.host ?? '127.0.0.1';
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'kms-test-'));
  const logs: Record<string, unknown>[] = [];
  const logged = new EventEmitter();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        logs.push(JSON.parse(line) as Record<string, unknown>);
        logged.emit('line');
      }
      cb();
    },
  });
  const outcomes: ActivationOutcome[] = [];
  const config = testConfig((c) => {
    c.store.dataDir = dataDir;
    edit?.(c);
  }, host);
  const appliance = await startAppliance(config, {
    log: createLogger({ level: 'debug', destination: sink }),
    onOutcome: (o) => outcomes.push(o),
  });
  t.teardown(async () => {
    await appliance.stop();
    if (!options.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return { appliance, port: appliance.kmsAddresses[0]!.port, host, outcomes, logs, logged, dataDir };
}

/** The first log line `match` accepts: already written, or when it is. */
export function logLine(
  h: Harness,
  match: (line: Record<string, unknown>) => boolean,
  what: string,
  ms?: number,
): Promise<Record<string, unknown>> {
  return until(() => h.logs.find(match), what, { on: [{ emitter: h.logged, events: ['line'] }], ...(ms === undefined ? {} : { ms }) });
}

/** A raw TCP peer for hostile-client tests: collects everything the host sends and the close. */
export interface RawPeer {
  readonly socket: net.Socket;
  received(): Buffer;
  closed: Promise<void>;
  /** Resolves once at least `n` bytes arrived (or the connection closed). */
  waitFor(n: number, timeoutMs?: number): Promise<Buffer>;
}

export function rawConnect(host: string, port: number): Promise<RawPeer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let waiters: (() => void)[] = [];
    let isClosed = false;
    const closed = new Promise<void>((r) =>
      socket.once('close', () => {
        isClosed = true;
        r();
        for (const w of waiters) w();
      }),
    );
    socket.on('data', (c) => {
      chunks.push(c);
      for (const w of waiters) w();
    });
    socket.on('error', () => {});
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => Buffer.concat(chunks),
        closed,
        waitFor(n, timeoutMs = 5000) {
          return new Promise((res) => {
            const timer = setTimeout(() => done(), timeoutMs);
            const done = (): void => {
              clearTimeout(timer);
              waiters = waiters.filter((w) => w !== check);
              res(Buffer.concat(chunks));
            };
            const check = (): void => {
              if (isClosed || Buffer.concat(chunks).length >= n) done();
            };
            waiters.push(check);
            check();
          });
        },
      }),
    );
    socket.once('error', reject);
  });
}
