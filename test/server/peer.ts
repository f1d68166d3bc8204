// A raw TCP client bound to a chosen loopback source address (127.0.0.x stands for another
// client's address), collecting what the host sends.
import net from 'node:net';

export interface Peer {
  readonly socket: net.Socket;
  /** Everything received so far. */
  data(): Buffer;
  readonly closed: Promise<void>;
}

export function connectPeer(port: number, localAddress = '127.0.0.1'): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => resolve({ socket, data: () => Buffer.concat(chunks), closed }));
    socket.once('error', reject);
  });
}
