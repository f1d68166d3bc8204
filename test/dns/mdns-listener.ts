// The loopback side of the mDNS tests: a socket that collects every datagram it receives, decoded
// with our own codec, and a log that records what the responder says.
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { decodeMessage, type DecodedMessage } from '../../src/protocol/dns/message';
import type { DnsLog } from '../../src/dns/dns-responder';
import { settledWithin } from '../wait';

export interface LoggedLine {
  readonly level: string;
  readonly obj: Record<string, unknown>;
  readonly msg?: string;
}

export function captureLog(): { log: DnsLog; lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

export interface Listener {
  readonly port: number;
  readonly socket: dgram.Socket;
  readonly got: DecodedMessage[];
  /** The next datagram, or undefined after `ms` (default `waitMs`) without one. */
  next(ms?: number): Promise<DecodedMessage | undefined>;
}

/**
 * Binds `address`:`port` (0: any free port; a fixed port shares it, as mDNS queriers on 5353 do).
 * undefined when that address cannot be bound here.
 */
export async function listener(t: Test, address = '127.0.0.1', port = 0, waitMs = 2000): Promise<Listener | undefined> {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: port !== 0 });
  const got: DecodedMessage[] = [];
  const waiters: ((m: DecodedMessage) => void)[] = [];
  socket.on('message', (m) => {
    const d = decodeMessage(m);
    got.push(d);
    waiters.shift()?.(d);
  });
  const bound = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind(port, address, () => resolve(true));
  });
  if (!bound) {
    socket.close();
    return undefined;
  }
  t.teardown(() => socket.close());
  return {
    port: socket.address().port,
    socket,
    got,
    next: (ms = waitMs) => {
      let waiter: ((m: DecodedMessage) => void) | undefined;
      const seen = new Promise<DecodedMessage>((resolve) => {
        waiter = resolve;
        waiters.push(resolve);
      });
      // A wait that ended unanswered must not take the next datagram from a later wait.
      return settledWithin(seen, ms, undefined).finally(() => {
        const i = waiters.indexOf(waiter!);
        if (i >= 0) waiters.splice(i, 1);
      });
    },
  };
}
