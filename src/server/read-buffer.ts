// Reads into one buffer shared by every connection, instead of a fresh 64 KiB allocation per
// read (Node's default for a socket: malloc, shrink, an ArrayBuffer with external-memory
// accounting, then the stream's push machinery). net.Socket offers this as its `onread` option,
// but only to sockets it creates; a server's accepted sockets get it through the same fields.
import net from 'node:net';

const SHARED = Buffer.allocUnsafe(64 * 1024);

interface ReadFields {
  readonly buffer: symbol;
  readonly callback: symbol;
}

let fields: ReadFields | null | undefined;

function findFields(): ReadFields | null {
  // `onread` is in the constructor's options since Node 12 (@types/node lists it for connect only).
  const options = { onread: { buffer: Buffer.alloc(1), callback: () => true } } as net.SocketConstructorOpts;
  const probe = new net.Socket(options);
  const symbols = Object.getOwnPropertySymbols(probe);
  const buffer = symbols.find((s) => s.description === 'kBuffer');
  const callback = symbols.find((s) => s.description === 'kBufferCb');
  probe.destroy();
  return buffer !== undefined && callback !== undefined ? { buffer, callback } : null;
}

/**
 * Makes `socket` deliver each read to `onChunk` as its own copy (the shared buffer is overwritten
 * by the next read). false when this Node does not expose the fields: use 'data' events then.
 */
export function readIntoSharedBuffer(socket: net.Socket, onChunk: (chunk: Buffer) => void): boolean {
  if (fields === undefined) fields = findFields();
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (fields === null || typeof handle?.useUserBuffer !== 'function') return false;
  const record = socket as unknown as Record<symbol, unknown>;
  record[fields.buffer] = SHARED;
  record[fields.callback] = (nread: number): void => {
    const chunk = Buffer.allocUnsafe(nread);
    SHARED.copy(chunk, 0, 0, nread);
    onChunk(chunk);
  };
  handle.useUserBuffer(SHARED);
  return true;
}
