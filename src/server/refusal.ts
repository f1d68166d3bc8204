// A connection the host cannot take (a connection limit is reached and no idle connection can make
// way) is not simply dropped: PROTOCOL.md §2.7 answers its bind with bind_nak reason 2
// (local_limit_exceeded), so the client reports a busy host rather than a network failure. The
// refused socket is read for one PDU only, for a short time, and never counts as a connection.
import type net from 'node:net';
import { specOf } from '../errors';
import { encodeBindNak } from '../protocol/rpc/bind';
import { PTYPE } from '../protocol/rpc/constants';
import { FragmentAssembler } from '../protocol/rpc/fragment-assembler';

/** How long a refused connection may take to send its bind. */
const REFUSAL_TIMEOUT_MS = 2000;

const NAK_REASON = specOf('KMS_ERR_BIND_CONNECTION_LIMIT').nakReason!;

/** Reads the first PDU; a bind or alter_context gets bind_nak reason 2, anything else a close. `done` runs once, at close. */
export function refuseWithBindNak(socket: net.Socket, maxPduBytes: number, done: (naked: boolean) => void): void {
  const assembler = new FragmentAssembler(maxPduBytes);
  let naked = false;
  const timer = setTimeout(() => socket.destroy(), REFUSAL_TIMEOUT_MS);
  socket.on('error', () => {});
  // The listener is half-open: a peer that leaves before its bind is closed here.
  socket.on('end', () => {
    if (!naked) socket.destroy();
  });
  socket.once('close', () => {
    clearTimeout(timer);
    done(naked);
  });
  socket.on('data', (chunk: Buffer) => {
    if (naked) return;
    let pdus: Buffer[];
    try {
      pdus = assembler.push(chunk);
    } catch {
      socket.destroy();
      return;
    }
    const first = pdus[0];
    if (!first) return;
    const ptype = first[2];
    if (ptype === PTYPE.BIND || ptype === PTYPE.ALTER_CONTEXT) {
      naked = true;
      socket.end(encodeBindNak(first.readUInt32LE(12), NAK_REASON));
      // end() waits for the peer's FIN; a peer that never sends one must not keep the socket.
      timer.refresh();
    } else {
      socket.destroy();
    }
  });
}
