// Whatever answers on fleet.postgres.host:port is a peer like any other, even with a trusted
// certificate (a misconfigured server, a proxy, a bug). pg's protocol parser throws from inside the
// socket's 'data' event on an authentication method it does not know or a malformed message, and
// nothing catches that: the whole appliance would stop. It also buffers whatever length a message
// announces and keeps every row of a reply. The guard reads the message framing ahead of pg,
// hangs up on a malformed, oversized or endless reply with the reason in the admin's words, and
// turns a parser exception into the same kind of failed send, which the forwarder retries.

import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Client } from 'pg';
import { KmsError } from '../errors';

export interface ReplyLimits {
  /** Largest single backend message accepted. */
  readonly maxMessageBytes: number;
  /** Largest reply to one statement (everything between two ReadyForQuery messages). */
  readonly maxReplyBytes: number;
}

/**
 * The forwarder reads a schema version and one host name; its statements' replies are a few
 * hundred bytes. 1 MiB each is far above that and far below what would matter to the ≤ 80 MB box.
 */
const FORWARDER_LIMITS: ReplyLimits = { maxMessageBytes: 1 << 20, maxReplyBytes: 1 << 20 };
/** `fleet report` reads whole views of an organisation: bounded, but with room for many sites. */
export const REPORT_LIMITS: ReplyLimits = { maxMessageBytes: 16 << 20, maxReplyBytes: 256 << 20 };

const HEADER = 5; // type byte + int32 length (which counts itself, not the type byte)
const AUTHENTICATION = 0x52; // 'R'
const READY_FOR_QUERY = 0x5a; // 'Z'
/** The methods pg can answer: ok, cleartext, MD5, SASL (SCRAM) start, continue, final. */
const AUTH_SUPPORTED = new Set([0, 3, 5, 10, 11, 12]);
const AUTH_NAMES: Readonly<Record<number, string>> = {
  2: 'Kerberos V5',
  6: 'SCM credentials',
  7: 'GSSAPI',
  8: 'GSSAPI',
  9: 'SSPI',
};

/** Follows the backend message framing byte by byte, without copying or keeping messages. */
export class BackendFrameWatch {
  private readonly header = Buffer.alloc(HEADER);
  private headerHave = 0;
  private bodyLeft = 0;
  /** The first four body bytes (an authentication request's method). */
  private readonly lead = Buffer.alloc(4);
  private leadHave = 0;
  private replyBytes = 0;

  constructor(private readonly limits: ReplyLimits) {}

  /** Why these bytes break the protocol or a bound, or null while they do not. */
  feed(chunk: Buffer): string | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.headerHave < HEADER) {
        this.header[this.headerHave++] = chunk[i++]!;
        this.replyBytes++;
        if (this.headerHave < HEADER) continue;
        const length = this.header.readUInt32BE(1);
        if (length < 4) return `sent a malformed message (type 0x${this.header[0]!.toString(16)}, length ${length})`;
        if (length - 4 > this.limits.maxMessageBytes) {
          const type = this.header[0]!.toString(16);
          return `announced a message of ${length - 4} bytes (type 0x${type}), more than the ${this.limits.maxMessageBytes} accepted`;
        }
        this.bodyLeft = length - 4;
        this.leadHave = 0;
      } else {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        for (let k = 0; this.leadHave < 4 && k < n; k++) this.lead[this.leadHave++] = chunk[i + k]!;
        i += n;
        this.bodyLeft -= n;
        this.replyBytes += n;
      }
      if (this.bodyLeft === 0) {
        const why = this.messageEnded();
        if (why !== null) return why;
      }
    }
    if (this.replyBytes > this.limits.maxReplyBytes) {
      return `sent more than ${this.limits.maxReplyBytes} bytes in reply to one statement (an endless reply)`;
    }
    return null;
  }

  private messageEnded(): string | null {
    this.headerHave = 0;
    const type = this.header[0];
    if (type === READY_FOR_QUERY) this.replyBytes = 0;
    if (type !== AUTHENTICATION) return null;
    if (this.leadHave < 4) return 'sent a malformed authentication request';
    const method = this.lead.readUInt32BE(0);
    if (AUTH_SUPPORTED.has(method)) return null;
    const name = AUTH_NAMES[method] ?? 'an unknown method';
    return (
      `asks for ${name} authentication (method ${method}), which the appliance does not do: give the role a ` +
      'hostssl … scram-sha-256 line in pg_hba.conf (see "Fleet reporting" in the README)'
    );
  }
}

/**
 * Puts the watch in front of pg's parser on the TLS stream (the only one the fleet connection
 * uses: TLS is mandatory). Call before connect(). `target` names the server in messages.
 */
export function guardClient(client: Client, target: string, limits: ReplyLimits = FORWARDER_LIMITS): void {
  const connection = client.connection as unknown as EventEmitter & { stream: Duplex };
  connection.once('sslconnect', () => {
    const stream = connection.stream;
    const parsers = stream.listeners('data') as ((chunk: Buffer) => void)[];
    stream.removeAllListeners('data');
    const watch = new BackendFrameWatch(limits);
    const hangUp = (why: string): void => {
      stream.destroy(
        new KmsError(
          'KMS_ERR_FLEET_SEND_FAILED',
          `PostgreSQL at ${target} ${why}; the connection was closed and the send is retried later`,
        ),
      );
    };
    stream.on('data', (chunk: Buffer) => {
      if (stream.destroyed) return;
      const why = watch.feed(chunk);
      if (why !== null) return hangUp(why);
      try {
        for (const parse of parsers) parse.call(stream, chunk);
      } catch (err) {
        hangUp(`sent a reply that cannot be read (${(err as Error).message})`);
      }
    });
  });
}
