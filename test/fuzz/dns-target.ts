// The DNS surface for the loopback fuzzer: mutated and random messages over UDP, and over TCP
// hostile framing (length prefixes that lie, drips, pipelined floods that never read) beside
// well-framed mutated queries. healthy() asks the SRV question over UDP and TCP and checks the
// answer. When the target is 127.0.0.1 the attack comes from other 127/8 addresses, so the
// per-address limits it trips do not silence the health check.
import dgram from 'node:dgram';
import net from 'node:net';
import { decodeMessage, encodeMessage, EMPTY_HEADER, RR_CLASS, RR_TYPE, type DnsRecord } from '../../src/protocol/dns/message';
import { frameDnsMessage } from '../../src/protocol/dns/tcp-framing';
import type { FuzzTarget } from './target';

const UDP_PER_ROUND = 150;
const HEALTH_TIMEOUT_MS = 1500;

function pick<T>(rnd: () => number, list: readonly T[]): T {
  return list[Math.floor(rnd() * list.length)]!;
}

/** Well-formed queries the mutations start from. */
function seedQueries(zone: string): Buffer[] {
  const names = [
    `_vlmcs._tcp.${zone}`,
    zone,
    `kms.${zone}`,
    `nothere.${zone}`,
    `_VLMCS._TCP.${zone.toUpperCase()}`,
    'www.example.com',
    `a.b.c.d.e.${zone}`,
  ];
  const types = [RR_TYPE.SRV, RR_TYPE.A, RR_TYPE.AAAA, RR_TYPE.SOA, RR_TYPE.NS, RR_TYPE.ANY, RR_TYPE.AXFR, RR_TYPE.TXT, 65280];
  const out: Buffer[] = [];
  for (const name of names) {
    for (const type of types) {
      for (const edns of [undefined, 512, 1232, 65535]) {
        const additionals: DnsRecord[] =
          edns === undefined ? [] : [{ name: '', type: RR_TYPE.OPT, class: edns, ttl: 0, data: { kind: 'raw', bytes: Buffer.alloc(0) } }];
        out.push(
          encodeMessage({
            header: { ...EMPTY_HEADER, id: out.length, rd: out.length % 2 === 0 },
            questions: [{ name, type, class: RR_CLASS.IN }],
            answers: [],
            authorities: [],
            additionals,
          }),
        );
      }
    }
  }
  return out;
}

function randomBytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function mutate(seed: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(seed);
  switch (Math.floor(rnd() * 10)) {
    case 0: // bit flips anywhere
      for (let i = 0, n = 1 + Math.floor(rnd() * 6); i < n; i++) b[Math.floor(rnd() * b.length)]! ^= 1 << Math.floor(rnd() * 8);
      return b;
    case 1: // truncated
      return b.subarray(0, Math.floor(rnd() * b.length));
    case 2: // section counts that lie
      b.writeUInt16BE(Math.floor(rnd() * 0x10000), 4 + 2 * Math.floor(rnd() * 4));
      return b;
    case 3: // a random header
      randomBytes(rnd, 12).copy(b, 0);
      return b;
    case 4: // a compression pointer somewhere in the name
      if (b.length > 14) b.writeUInt16BE(0xc000 | Math.floor(rnd() * b.length), 12 + Math.floor(rnd() * (b.length - 14)));
      return b;
    case 5: // a label length that lies
      b[12] = Math.floor(rnd() * 256);
      return b;
    case 6: // trailing garbage
      return Buffer.concat([b, randomBytes(rnd, 1 + Math.floor(rnd() * 64))]);
    case 7: // entirely random
      return randomBytes(rnd, Math.floor(rnd() * 600));
    case 8: // opcode, QR or rcode bits
      b[2] = Math.floor(rnd() * 256);
      return b;
    default:
      return b; // unchanged: the server must keep answering real queries too
  }
}

/** Source addresses for the attack: other 127/8 addresses when the target is 127.0.0.1. */
function attackerAddress(host: string, rnd: () => number): string | undefined {
  return host === '127.0.0.1' ? `127.0.${1 + Math.floor(rnd() * 250)}.${1 + Math.floor(rnd() * 250)}` : undefined;
}

function udpBurst(host: string, port: number, datagrams: Buffer[], from: string | undefined): Promise<void> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    s.on('error', () => undefined);
    s.on('message', () => undefined);
    s.bind(0, from, () => {
      for (const d of datagrams) s.send(d, port, host);
      // A short grace for the replies, then the socket goes (replies to a closed port are fine).
      setTimeout(() => s.close(() => resolve()), 30);
    });
  });
}

type TcpAttack = 'lying-length' | 'drip' | 'flood-unread' | 'mutated-frames' | 'random-chunks';

/** One hostile TCP connection; resolves with the messages (or fragments) it sent. */
function tcpAttack(
  host: string,
  port: number,
  kind: TcpAttack,
  seeds: Buffer[],
  rnd: () => number,
  from: string | undefined,
): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, ...(from ? { localAddress: from } : {}) });
    let sent = 0;
    const timers: NodeJS.Timeout[] = [];
    const finish = (): void => {
      for (const t of timers) clearTimeout(t);
      s.destroy();
      resolve(sent);
    };
    s.on('error', finish);
    s.on('close', finish);
    timers.push(setTimeout(finish, 250 + Math.floor(rnd() * 250)));
    s.on('connect', () => {
      switch (kind) {
        case 'lying-length': {
          // Announces more than it sends (up to 0xFFFF), then waits.
          const body = mutate(pick(rnd, seeds), rnd);
          const head = Buffer.alloc(2);
          head.writeUInt16BE(Math.min(0xffff, body.length + 1 + Math.floor(rnd() * 0xffff)));
          s.write(Buffer.concat([head, body]));
          sent = 1;
          break;
        }
        case 'drip': {
          const stream = Buffer.concat([Buffer.from([0xff, 0xff]), randomBytes(rnd, 8)]);
          let i = 0;
          const next = (): void => {
            if (i >= stream.length || s.destroyed) return;
            s.write(stream.subarray(i, ++i));
            sent++;
            timers.push(setTimeout(next, 20 + Math.floor(rnd() * 40)));
          };
          next();
          break;
        }
        case 'flood-unread': {
          s.pause(); // never reads its replies
          const batch = Buffer.concat(Array.from({ length: 200 }, () => frameDnsMessage(pick(rnd, seeds))));
          for (let i = 0; i < 40 && s.write(batch); i++) sent += 200;
          sent += 200;
          break;
        }
        case 'mutated-frames': {
          s.on('data', () => undefined);
          const frames = Array.from({ length: 20 + Math.floor(rnd() * 60) }, () => frameDnsMessage(mutate(pick(rnd, seeds), rnd)));
          s.write(Buffer.concat(frames));
          sent = frames.length;
          break;
        }
        case 'random-chunks': {
          s.on('data', () => undefined);
          const stream = Buffer.concat(Array.from({ length: 30 }, () => frameDnsMessage(pick(rnd, seeds))));
          for (let at = 0; at < stream.length; ) {
            const n = 1 + Math.floor(rnd() * 40);
            s.write(stream.subarray(at, at + n));
            at += n;
          }
          s.end();
          sent = 30;
          break;
        }
      }
    });
  });
}

function srvQuery(zone: string, id: number): Buffer {
  return encodeMessage({
    header: { ...EMPTY_HEADER, id, rd: true },
    questions: [{ name: `_vlmcs._tcp.${zone}`, type: RR_TYPE.SRV, class: RR_CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}

/** True when `reply` answers query `id` with NOERROR and at least one SRV record for the zone. */
function goodAnswer(reply: Buffer, id: number, zone: string): boolean {
  try {
    const m = decodeMessage(reply);
    return (
      m.header.id === id &&
      m.header.qr &&
      m.header.rcode === 0 &&
      m.answers.some((a) => a.type === RR_TYPE.SRV && a.name.toLowerCase() === `_vlmcs._tcp.${zone}`.toLowerCase())
    );
  } catch {
    return false;
  }
}

function askUdp(host: string, port: number, zone: string, id: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), HEALTH_TIMEOUT_MS);
    s.on('error', () => done(false));
    s.on('message', (m) => {
      if (m.length >= 2 && m.readUInt16BE(0) === id) done(goodAnswer(m, id, zone));
    });
    s.send(srvQuery(zone, id), port, host);
  });
}

function askTcp(host: string, port: number, zone: string, id: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let got = Buffer.alloc(0);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), HEALTH_TIMEOUT_MS * 2);
    s.on('error', () => done(false));
    s.on('connect', () => s.write(frameDnsMessage(srvQuery(zone, id))));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) done(goodAnswer(got.subarray(2, 2 + got.readUInt16BE(0)), id, zone));
    });
  });
}

export function dnsFuzzTarget(opts: { host: string; port: number; zone: string }): FuzzTarget {
  const seeds = seedQueries(opts.zone);
  const attacks: TcpAttack[] = ['lying-length', 'drip', 'flood-unread', 'mutated-frames', 'random-chunks'];
  let healthId = 0;
  return {
    name: 'dns',
    async round(rnd) {
      const from = attackerAddress(opts.host, rnd);
      const datagrams = Array.from({ length: UDP_PER_ROUND }, () => mutate(pick(rnd, seeds), rnd));
      const tcp = Array.from({ length: 3 + Math.floor(rnd() * 4) }, () =>
        tcpAttack(opts.host, opts.port, pick(rnd, attacks), seeds, rnd, attackerAddress(opts.host, rnd)),
      );
      const [, ...tcpSent] = await Promise.all([udpBurst(opts.host, opts.port, datagrams, from), ...tcp]);
      return datagrams.length + tcpSent.reduce((a, b) => a + b, 0);
    },
    async healthy() {
      // Two tries each: a single UDP datagram may be lost on a loaded machine.
      for (let i = 0; i < 2; i++) {
        healthId = (healthId + 1) & 0xffff;
        if (await askUdp(opts.host, opts.port, opts.zone, healthId)) break;
        if (i === 1) return false;
      }
      for (let i = 0; i < 2; i++) {
        healthId = (healthId + 1) & 0xffff;
        if (await askTcp(opts.host, opts.port, opts.zone, healthId)) return true;
      }
      return false;
    },
  };
}
