// SRV queries per second over UDP on loopback: starts the DNS responder on 127.0.0.1 (rate
// limiting off) and keeps a fixed window of queries in flight from one socket, bounded by time
// and count. The load generator shares the process, so the figure is a floor for the server.
// Run alone: node dist/bench/dns-bench.js [--seconds S] [--max N] [--window W]
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { DEFAULTS } from '../src/config/defaults';
import { encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE } from '../src/protocol/dns/message';
import { startDnsServer } from '../src/dns/dns-server';

export interface DnsBenchOptions {
  readonly seconds?: number;
  /** Upper bound on queries sent, whatever the time. */
  readonly maxQueries?: number;
  /** Queries kept in flight. */
  readonly window?: number;
}

export interface DnsBenchResult {
  readonly queries: number;
  readonly answered: number;
  readonly lost: number;
  readonly seconds: number;
  readonly queriesPerSecond: number;
  readonly answerBytes: number;
}

const SILENT = { info() {}, warn() {}, error() {}, debug() {} };
const LOSS_TIMEOUT_MS = 1000;

export async function benchDns(options: DnsBenchOptions = {}): Promise<DnsBenchResult> {
  const seconds = Math.min(Math.max(options.seconds ?? 5, 0.5), 60);
  const maxQueries = options.maxQueries ?? 2_000_000;
  const window = options.window ?? 64;
  const server = await startDnsServer(
    {
      ...DEFAULTS.dns,
      rateLimit: { responsesPerSecond: 0, burst: 1, slip: 0 },
      zones: [
        {
          domain: 'bench.test',
          ttlSeconds: 900,
          hosts: [
            { target: 'kms1.bench.test', port: 1688, priority: 0, weight: 50, addresses: ['192.0.2.1', '2001:db8::1'] },
            { target: 'kms2.bench.test', port: 1688, priority: 0, weight: 50, addresses: ['192.0.2.2', '2001:db8::2'] },
          ],
        },
      ],
    },
    { kmsPort: 1688, hostName: 'bench', addresses: () => ['192.0.2.1'], log: SILENT },
    ['127.0.0.1:0'],
  );
  const port = server.addresses[0]!.port;
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  // One query per ID, encoded once; the ID in the answer says which one came back.
  const template = encodeMessage({
    header: { ...EMPTY_HEADER, id: 0 },
    questions: [{ name: '_vlmcs._tcp.bench.test', type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [{ name: '', type: RR_TYPE.OPT, class: 1232, ttl: 0, data: { kind: 'raw', bytes: Buffer.alloc(0) } }],
  });
  let sent = 0;
  let answered = 0;
  let answerBytes = 0;
  let inFlight = 0;
  const start = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  let stopSending = false;

  const result = await new Promise<DnsBenchResult>((resolve) => {
    let lastProgress = Date.now();
    const finish = (): void => {
      clearInterval(watchdog);
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      resolve({ queries: sent, answered, lost: sent - answered, seconds: elapsed, queriesPerSecond: answered / elapsed, answerBytes });
    };
    const sendOne = (): void => {
      if (stopSending || sent >= maxQueries || Date.now() >= deadline) {
        stopSending = true;
        if (inFlight === 0) finish();
        return;
      }
      const q = Buffer.from(template);
      q.writeUInt16BE(sent & 0xffff, 0);
      sent++;
      inFlight++;
      socket.send(q, port, '127.0.0.1');
    };
    socket.on('message', (m) => {
      answered++;
      answerBytes += m.length;
      inFlight--;
      lastProgress = Date.now();
      sendOne();
    });
    // A lost datagram would shrink the window for good: refill it when nothing arrives.
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress < LOSS_TIMEOUT_MS) return;
      if (stopSending) {
        inFlight = 0;
        return finish();
      }
      inFlight = 0;
      for (let i = 0; i < window; i++) sendOne();
    }, LOSS_TIMEOUT_MS / 2);
    for (let i = 0; i < window; i++) sendOne();
  });
  socket.close();
  await server.close();
  return result;
}

if (require.main === module) {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, max: { type: 'string' }, window: { type: 'string' } } });
  benchDns({
    ...(values.seconds !== undefined ? { seconds: Number(values.seconds) } : {}),
    ...(values.max !== undefined ? { maxQueries: Number(values.max) } : {}),
    ...(values.window !== undefined ? { window: Number(values.window) } : {}),
  }).then(
    (r) =>
      process.stdout.write(
        `DNS: ${Math.round(r.queriesPerSecond)} SRV queries/s over UDP (loopback), ` +
          `${r.answered} answered, ${r.lost} lost in ${r.seconds.toFixed(1)} s\n`,
      ),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
