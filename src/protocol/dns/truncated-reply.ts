// The empty truncated reply a rate-limited UDP query may get instead of silence ("slip", as
// response rate limiting in other DNS servers calls it). A flood of queries with a spoofed source
// address drains that address's UDP allowance, and the real client behind it would then get no
// answer at all. A reply with TC set and nothing but the question makes the client ask again over
// TCP (RFC 1035 §4.2.1, RFC 7766 §5), where a source address cannot be spoofed. It is never larger
// than the query, so the responder cannot be used to amplify a flood.

const HEADER = 12;
const QR = 0x80;
const OPCODE_MASK = 0x78;
const TC = 0x02;
const RD = 0x01;
const MAX_NAME = 255;

/**
 * The truncated reply to `query`, or null when it is not a plain query with one question (a
 * response, another opcode, a malformed or compressed name): those get silence, as before.
 */
export function truncatedReply(query: Buffer): Buffer | null {
  if (query.length < HEADER + 5) return null;
  const flags = query[2]!;
  if ((flags & QR) !== 0 || (flags & OPCODE_MASK) !== 0) return null;
  if (query.readUInt16BE(4) !== 1) return null;
  // The question's name: plain labels only (a query has nothing earlier to point to).
  let p = HEADER;
  for (;;) {
    if (p >= query.length) return null;
    const length = query[p]!;
    if (length === 0) break;
    if (length > 63) return null;
    p += 1 + length;
    if (p - HEADER > MAX_NAME) return null;
  }
  const end = p + 1 + 4; // the root label, QTYPE, QCLASS
  if (end > query.length) return null;
  const reply = Buffer.alloc(end);
  query.copy(reply, 0, 0, 2); // ID
  reply[2] = QR | TC | (flags & RD);
  reply[3] = 0; // RA clear, RCODE NOERROR
  reply.writeUInt16BE(1, 4); // QDCOUNT; AN, NS and AR counts stay 0
  query.copy(reply, HEADER, HEADER, end);
  return reply;
}
