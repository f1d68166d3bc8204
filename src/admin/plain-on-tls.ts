// An admin who types http:// for an HTTPS admin page used to get a bare connection reset. The
// first byte tells the two apart before TLS sees the socket: a TLS record starts with 0x16
// (handshake), an HTTP request with a method's letter. A plain request gets one short plain answer
// and the connection closes; everything else goes to TLS with its bytes put back, as if never read.
import type net from 'node:net';

const TLS_HANDSHAKE_RECORD = 0x16;
/** Bytes a plain client may send after its answer before the connection is dropped (it should close). */
const MAX_DISCARDED_BYTES = 65_536;

/** The parts of a plain request head that decide its answer. */
export interface PlainRequestHead {
  readonly method: string;
  readonly target: string;
  /** Every Host line's value: exactly one is a request the router can redirect. */
  readonly hosts: readonly string[];
}

export interface PlainOnTlsOptions {
  /** A connection that sends nothing is closed after this (the TLS handshake's own limit). */
  readonly silentMs: number;
  /** The whole plain request head must arrive within this, counted from the connection. */
  readonly headersTimeoutMs: number;
  readonly maxHeaderBytes: number;
  /** Hands the socket, its first bytes put back, to the TLS server. */
  toTls(socket: net.Socket): void;
  /** The full plain HTTP response for a request head (undefined: not a readable request). */
  answer(head: PlainRequestHead | undefined, socket: net.Socket): string;
  /** Why a connection was closed without an answer (for the log). */
  dropped(socket: net.Socket, reason: 'silent' | 'slow'): void;
}

/**
 * Waits for the socket's first bytes, then either gives it to TLS or answers it as plain HTTP.
 * Every path is bounded in time and bytes: the silent one by `silentMs`, the plain one by
 * `headersTimeoutMs` from the connection and `maxHeaderBytes`.
 */
export function sortPlainFromTls(socket: net.Socket, o: PlainOnTlsOptions): void {
  const connectedAt = Date.now();
  let timer = setTimeout(() => {
    o.dropped(socket, 'silent');
    socket.destroy();
  }, o.silentMs);
  const stop = (): void => clearTimeout(timer);
  // Until TLS has the socket nobody else listens for its errors: a reset must not become an uncaught exception.
  const onError = (): void => {
    stop();
    socket.destroy();
  };
  socket.on('error', onError);
  socket.once('close', stop);
  socket.once('data', (first: Buffer) => {
    // Paused before anything else: no byte may be emitted with no one listening.
    socket.pause();
    stop();
    if (first[0] === TLS_HANDSHAKE_RECORD || !isMethodLetter(first[0])) {
      socket.off('close', stop);
      socket.off('error', onError);
      socket.unshift(first);
      o.toTls(socket);
      return;
    }
    timer = setTimeout(
      () => {
        // An answered client that has not closed yet goes quietly; one still sending its head is slow.
        if (!socket.writableEnded) o.dropped(socket, 'slow');
        socket.destroy();
      },
      Math.max(0, o.headersTimeoutMs - (Date.now() - connectedAt)),
    );
    readPlainHead(socket, first, o);
  });
}

/** HTTP methods are tokens (RFC 9110 §9.1); every one in use starts with a letter. */
function isMethodLetter(b: number | undefined): boolean {
  return b !== undefined && ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a));
}

function readPlainHead(socket: net.Socket, first: Buffer, o: PlainOnTlsOptions): void {
  let head = '';
  let answered = false;
  let discarded = 0;
  const onData = (chunk: Buffer): void => {
    if (answered) {
      // The answer is on its way; read on only to see the client close, and not for long.
      discarded += chunk.length;
      if (discarded > MAX_DISCARDED_BYTES) socket.destroy();
      return;
    }
    // Only the new bytes and the three before them can complete the blank line: a client sending
    // its head a byte at a time must not make each byte cost a search of everything before it.
    const from = Math.max(0, head.length - 3);
    head += chunk.toString('latin1');
    const found = head.slice(from).search(/\r?\n\r?\n/);
    const end = found < 0 ? -1 : from + found;
    if (end < 0 && head.length <= o.maxHeaderBytes) return;
    answered = true;
    socket.end(o.answer(end < 0 || end > o.maxHeaderBytes ? undefined : parseHead(head.slice(0, end)), socket));
  };
  socket.on('data', onData);
  onData(first);
  socket.resume();
}

/** The request line and Host lines of a head (RFC 9112 §3, §5); undefined when the line is not a request line. */
export function parseHead(head: string): PlainRequestHead | undefined {
  const lines = head.split(/\r?\n/);
  const line = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
  if (!line) return undefined;
  const hosts: string[] = [];
  for (const l of lines.slice(1)) {
    const field = /^host:[ \t]*(.*?)[ \t]*$/i.exec(l);
    if (field) hosts.push(field[1]!);
  }
  return { method: line[1]!, target: line[2]!, hosts };
}
