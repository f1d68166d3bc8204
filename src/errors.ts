// The error registry: every failure the appliance reports has a stable code here, the wire
// reaction it causes (KMS refusal HRESULT, RPC fault, bind_nak, close) and the admin's words for
// what the client saw and what to change. Code is the contract; message text may change.
// This module is a leaf (no imports) so that every layer, the pure codecs included, can use it.

/** What the host does on the wire when this error happens while serving a client. */
type WireAction =
  | 'refuse' // a normal response PDU whose stub carries `hresult` (PROTOCOL.md §3.4)
  | 'fault' // a fault PDU with status `rpcFault` (§2.9)
  | 'nak' // a bind_nak with `nakReason` (§2.7)
  | 'close' // close this connection only
  | 'none'; // not a wire event (configuration, storage, CLI, DNS …)

export interface ErrorSpec {
  readonly action: WireAction;
  /** HRESULT a Windows client shows (slmgr / ospp.vbs / event 12289), when there is one. */
  readonly hresult?: number;
  readonly rpcFault?: number;
  readonly nakReason?: number;
  /** One line, in an administrator's words: what went wrong and what to change. */
  readonly explain: string;
}

export const HRESULT = Object.freeze({
  SUCCESS: 0x00000000,
  INVALID_DATA: 0x8007000d, // ERROR_INVALID_DATA "The data is invalid"
  TIME_INVALID: 0xc004f06c, // "The request time is invalid" (client clock > 4 h off)
  PRODUCT_NOT_SERVED: 0xc004f042, // "The specified KMS cannot be used"
  TOO_MANY_CLIENTS: 0xc004d104, // host refuses to track more machines (its disk full, or store.maxMachines all counted)
  COUNT_INSUFFICIENT: 0xc004f038, // client side: count below its threshold
  NO_KMS_HOST: 0xc004f074, // client side: no KMS host could be contacted
  DNS_NAME_NOT_FOUND: 0x8007232b, // client side: DNS name does not exist
  DNS_NO_RECORDS: 0x8007251d, // client side: no records found for the DNS query
  DNS_BAD_NAME: 0x8007007b, // client side: invalid name syntax (no DNS suffix)
  RPC_SERVER_UNAVAILABLE: 0x800706ba, // client side: TCP connect failed
} as const);

/** DCE/RPC fault statuses (C706 Appendix N) and the RPC_S_* a Windows client maps them to. */
export const RPC_FAULT = Object.freeze({
  OP_RNG_ERROR: 0x1c010002, // RPC_S_PROCNUM_OUT_OF_RANGE (1745)
  UNK_IF: 0x1c010003, // RPC_S_UNKNOWN_IF (1717)
  PROTO_ERROR: 0x1c01000b, // RPC_S_PROTOCOL_ERROR (1728)
  SERVER_TOO_BUSY: 0x1c010014, // RPC_S_SERVER_TOO_BUSY (1723)
} as const);

/** bind_nak provider_reject_reason values (C706 §12.6.3.1). */
const NAK_REASON = Object.freeze({
  NOT_SPECIFIED: 0,
  LOCAL_LIMIT_EXCEEDED: 2,
  PROTOCOL_VERSION_NOT_SUPPORTED: 4,
  AUTHENTICATION_TYPE_NOT_RECOGNIZED: 8,
} as const);

const E = HRESULT;
const F = RPC_FAULT;

export const ERRORS = Object.freeze({
  // ---- DCE/RPC framing and PDUs (src/protocol/rpc, src/server) ----
  KMS_ERR_PDU_TRUNCATED: {
    action: 'close',
    explain: 'A PDU ended before a field it declares; the client or the network sent a broken packet. Nothing to change on the host.',
  },
  KMS_ERR_PDU_FRAG_LENGTH: {
    action: 'close',
    explain: 'frag_length is below 16 or above kms.maxPduBytes; this is not a KMS client (or kms.maxPduBytes is far too small).',
  },
  KMS_ERR_PDU_PTYPE_UNKNOWN: { action: 'close', explain: 'A DCE/RPC packet type KMS never uses; the peer is not a KMS client.' },
  KMS_ERR_PDU_PTYPE_CLOSE: {
    action: 'close',
    explain: 'The client sent auth3 or shutdown; the connection is closed as DCE/RPC prescribes.',
  },
  KMS_ERR_PDU_RPC_VERSION: {
    action: 'nak',
    nakReason: NAK_REASON.PROTOCOL_VERSION_NOT_SUPPORTED,
    rpcFault: F.PROTO_ERROR,
    explain: 'The client speaks a DCE/RPC version other than 5.0; it is not a KMS client.',
  },
  KMS_ERR_PDU_DREP: {
    action: 'nak',
    nakReason: NAK_REASON.NOT_SPECIFIED,
    rpcFault: F.PROTO_ERROR,
    explain: 'The client uses big-endian or EBCDIC data representation; no KMS client does.',
  },
  KMS_ERR_PDU_AUTH: {
    action: 'nak',
    nakReason: NAK_REASON.AUTHENTICATION_TYPE_NOT_RECOGNIZED,
    rpcFault: F.PROTO_ERROR,
    explain: 'The client sent RPC authentication data; KMS uses none.',
  },
  KMS_ERR_BIND_MALFORMED: {
    action: 'nak',
    nakReason: NAK_REASON.NOT_SPECIFIED,
    explain: 'A bind whose presentation contexts do not fit in the PDU; the client is broken.',
  },
  KMS_ERR_BIND_SECOND: {
    action: 'nak',
    nakReason: NAK_REASON.NOT_SPECIFIED,
    explain: 'A second bind on one connection; KMS clients never do this.',
  },
  KMS_ERR_BIND_CONNECTION_LIMIT: {
    action: 'nak',
    nakReason: NAK_REASON.LOCAL_LIMIT_EXCEEDED,
    explain:
      'A bind arrived while kms.maxConnections (or kms.maxConnectionsPerAddress for its address) was reached and no idle connection ' +
      'could make way; the client sees the connection limit and retries later. Raise the limit if this is legitimate load.',
  },
  KMS_ERR_RPC_CONTEXT_LIMIT: {
    action: 'close',
    explain:
      'A client offered more presentation contexts on one connection than kms.maxContextsPerConnection (KMS clients use two); the ' +
      'extra ones were rejected (local limit exceeded) and the connection closed.',
  },
  KMS_ERR_RPC_UNKNOWN_CONTEXT: {
    action: 'fault',
    rpcFault: F.UNK_IF,
    explain: 'A request on a presentation context the host never accepted (or before any bind); the client sees RPC_S_UNKNOWN_IF.',
  },
  KMS_ERR_RPC_OPNUM: {
    action: 'fault',
    rpcFault: F.OP_RNG_ERROR,
    explain: 'A request for an operation other than RequestActivation (opnum 0); the client sees RPC_S_PROCNUM_OUT_OF_RANGE.',
  },
  KMS_ERR_RPC_STUB_MALFORMED: {
    action: 'fault',
    rpcFault: F.PROTO_ERROR,
    explain:
      'The NDR stub of a request is inconsistent (size and conformance differ, or it is short); the client sees RPC_S_PROTOCOL_ERROR.',
  },
  KMS_ERR_RPC_FRAGMENT_SEQUENCE: {
    action: 'fault',
    rpcFault: F.PROTO_ERROR,
    explain: 'Request fragments arrived out of order or with mixed call ids; the client sees RPC_S_PROTOCOL_ERROR.',
  },
  KMS_ERR_RPC_FRAGMENT_TOO_LARGE: {
    action: 'fault',
    rpcFault: F.PROTO_ERROR,
    explain: 'A fragmented request grew beyond kms.maxStubBytes; no KMS request is that large.',
  },
  KMS_ERR_RPC_REQUEST_TRUNCATED: {
    action: 'fault',
    rpcFault: F.PROTO_ERROR,
    explain: 'A request PDU too short for its own fixed fields (context id, opnum, object UUID); the client sees RPC_S_PROTOCOL_ERROR.',
  },
  KMS_ERR_RPC_BAD_HEADER: {
    action: 'fault',
    rpcFault: F.PROTO_ERROR,
    explain: 'A request with a wrong RPC minor version or authentication data; the client sees RPC_S_PROTOCOL_ERROR.',
  },

  // ---- Connections (src/server) ----
  KMS_ERR_CONN_IDLE: {
    action: 'close',
    explain:
      'The client made no progress (no bind, alter_context or request that was served) for kms.idleTimeoutSeconds; the connection was ' +
      'closed.',
  },
  KMS_ERR_CONN_NOT_ALLOWED: {
    action: 'close',
    explain: 'The client address is outside kms.clientNetworks; add its network there if it should activate.',
  },
  KMS_ERR_CONN_PUBLIC_CLIENT: {
    action: 'none',
    explain:
      'A client from a public (internet) address connected and was served because kms.clientNetworks is empty; if this host is ' +
      "reachable from the internet, set kms.clientNetworks to the site's client networks.",
  },
  KMS_ERR_CONN_LIMIT: {
    action: 'close',
    explain:
      'kms.maxConnections (or kms.maxConnectionsPerAddress for this address) is reached and no idle or long-open connection could make ' +
      'way; the new connection was refused. Raise the limit if this is legitimate load.',
  },
  KMS_ERR_CONN_EVICTED: {
    action: 'close',
    explain:
      'Every connection slot was taken, so the connection that had waited longest without progress, from the address (or IPv6 /64) ' +
      'holding the most connections, or one open longer than any real client stays, was closed to let a new client in.',
  },
  KMS_ERR_CONN_LIFETIME: {
    action: 'close',
    explain:
      'The connection stayed open longer than kms.maxConnectionSeconds and was closed so that no client holds a slot forever; KMS ' +
      'clients reconnect when they need to.',
  },
  KMS_ERR_CONN_BACKLOG: {
    action: 'close',
    explain:
      "The client does not read the host's replies; the host stopped reading from it and closed the connection. Nothing to change " +
      'on the host.',
  },
  KMS_ERR_LISTEN_IN_USE: {
    action: 'none',
    explain: 'Another program already listens on this address and port; stop it or choose another port.',
  },
  KMS_ERR_LISTEN_PERMISSION: {
    action: 'none',
    explain: 'No permission to bind this port (ports below 1024 need CAP_NET_BIND_SERVICE; the systemd unit grants it).',
  },
  KMS_ERR_LISTEN_ADDRESS: { action: 'none', explain: 'This address does not exist on the machine; check the listen setting.' },

  // ---- KMS message refusals (src/protocol/kms, src/host) ----
  KMS_ERR_KMS_VERSION: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The client asked in a KMS protocol version other than 4.0, 5.0 or 6.0; it is not a genuine client.',
  },
  KMS_ERR_KMS_LENGTH: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The KMS message is shorter than its version requires; the client or a middlebox damaged it.',
  },
  KMS_ERR_KMS_MAC: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The v4 request MAC does not verify; the request was altered in transit (or kms.verifyV4Mac is wrongly on for a broken tool).',
  },
  KMS_ERR_KMS_PADDING: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The v5/v6 request does not decrypt to valid padding; it was altered in transit or uses the wrong key.',
  },
  KMS_ERR_KMS_INNER_VERSION: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The encrypted version inside a v5/v6 request differs from the clear one; the request is forged or damaged.',
  },
  KMS_ERR_KMS_POLICY_RANGE: {
    action: 'refuse',
    hresult: E.INVALID_DATA,
    explain: 'The client asked for a threshold (RequiredClientCount) above 1000; no genuine product does.',
  },
  KMS_ERR_KMS_TIME_SKEW: {
    action: 'refuse',
    hresult: E.TIME_INVALID,
    explain: "The client's clock is more than 4 hours away from the host's; fix the time on the client (or the host: check NTP).",
  },
  KMS_ERR_KMS_UNKNOWN_GROUP: {
    action: 'refuse',
    hresult: E.PRODUCT_NOT_SERVED,
    explain: 'The product group (KMS counted ID) is not in the catalogue; update the appliance for new products.',
  },
  KMS_ERR_KMS_WRONG_APPLICATION: {
    action: 'refuse',
    hresult: E.PRODUCT_NOT_SERVED,
    explain: "The product group belongs to another application than the one the client named; the client's licence data is inconsistent.",
  },
  KMS_ERR_KMS_RETAIL_GROUP: {
    action: 'refuse',
    hresult: E.PRODUCT_NOT_SERVED,
    explain:
      "The client has a retail product, which KMS does not activate; install the product's GVLK (volume key) on it, or set " +
      'kms.allowRetail.',
  },
  KMS_ERR_KMS_PREVIEW_GROUP: {
    action: 'refuse',
    hresult: E.PRODUCT_NOT_SERVED,
    explain: 'The client runs a preview (pre-release) product; set kms.allowPreview to serve it.',
  },
  KMS_ERR_KMS_NO_HOST_KEY_GROUP: {
    action: 'refuse',
    hresult: E.PRODUCT_NOT_SERVED,
    explain: 'None of the host-key groups configured in host.hostKeyGroups activates this product; add one that does.',
  },
  KMS_ERR_KMS_RESPONSE_INVALID: {
    action: 'none',
    hresult: E.INVALID_DATA,
    explain: 'The KMS response does not pass the checks a Windows client makes (decryption, MAC/HMAC, echoed fields, ePID form).',
  },

  // ---- Client-side diagnostics (activate, dns check) ----
  KMS_ERR_CLIENT_CONNECT: {
    action: 'none',
    hresult: E.RPC_SERVER_UNAVAILABLE,
    explain: 'The TCP connection to the KMS host failed: host down, wrong port, or a firewall drops the connection to that port.',
  },
  KMS_ERR_CLIENT_TIMEOUT: {
    action: 'none',
    hresult: E.RPC_SERVER_UNAVAILABLE,
    explain: 'The KMS host accepted the connection but did not answer in time.',
  },
  KMS_ERR_CLIENT_RPC_FAULT: {
    action: 'none',
    hresult: E.NO_KMS_HOST,
    explain: 'The host answered with a DCE/RPC fault instead of a KMS response.',
  },
  KMS_ERR_CLIENT_BIND_REJECTED: {
    action: 'none',
    hresult: E.NO_KMS_HOST,
    explain: 'The host did not accept the KMS interface in bind; it is not a KMS host (or NDR64/BTFN settings disagree).',
  },
  KMS_ERR_CLIENT_REFUSED: { action: 'none', explain: 'The KMS host refused the activation; the HRESULT says why.' },
  KMS_ERR_CLIENT_PROTOCOL: {
    action: 'none',
    hresult: E.NO_KMS_HOST,
    explain: 'The host broke the DCE/RPC exchange (unexpected PDU, wrong call id, closed the connection).',
  },

  // ---- Discovery (src/dns) ----
  KMS_ERR_DNS_MALFORMED: { action: 'none', explain: 'A DNS message that does not parse; answered with FORMERR or dropped.' },
  KMS_ERR_DNS_RATE_LIMITED: {
    action: 'none',
    explain:
      'One address (an IPv6 /64) sent more DNS queries than dns.rateLimit allows; UDP replies beyond it were dropped, TCP queries ' +
      'slowed down.',
  },
  KMS_ERR_DNS_CONNECTION_LIMIT: {
    action: 'none',
    explain:
      'A DNS client opened more TCP connections than dns.tcp allows (per address, or in all); the extra or oldest idle connection was ' +
      'closed. Other clients are unaffected.',
  },
  KMS_ERR_DNS_UNREAD_REPLIES: {
    action: 'none',
    explain:
      'A DNS TCP client kept sending queries without reading the replies; the connection was paused, then closed past ' +
      'dns.tcp.maxUnsentBytes.',
  },
  KMS_ERR_DNS_TCP_TIMEOUT: {
    action: 'none',
    explain:
      'A DNS TCP connection sent no complete query within dns.tcp.idleTimeoutSeconds while part of one was waiting (a slow drip); it ' +
      'was closed.',
  },
  KMS_ERR_DNS_REFUSED: {
    action: 'none',
    explain: 'A query for a name outside the configured zones, from a client not allowed to use forwarding; answered REFUSED.',
  },
  KMS_ERR_DNS_NO_SRV: {
    action: 'none',
    hresult: E.DNS_NAME_NOT_FOUND,
    explain:
      'No _vlmcs._tcp SRV record exists for the domain; clients there cannot find the host (register it, serve the zone, or configure ' +
      'clients by hand).',
  },
  KMS_ERR_DNS_NO_RECORDS: {
    action: 'none',
    hresult: E.DNS_NO_RECORDS,
    explain: 'The SRV name exists but has no SRV records, or its target has no address.',
  },
  KMS_ERR_DNS_SERVER_UNREACHABLE: {
    action: 'none',
    hresult: E.DNS_NAME_NOT_FOUND,
    explain: 'The DNS server did not answer; clients using it cannot discover any KMS host.',
  },
  KMS_ERR_DNS_NO_HOST_REACHED: {
    action: 'none',
    hresult: E.NO_KMS_HOST,
    explain:
      'DNS names KMS hosts, but activation failed against every one of them; each attempt says why (host down, wrong port in the SRV ' +
      'record, firewall, refusal).',
  },
  KMS_ERR_DNS_UPDATE_FAILED: {
    action: 'none',
    explain: "The DNS server rejected the dynamic update (RFC 2136); check the zone name, the TSIG key and the server's update policy.",
  },
  KMS_ERR_DNS_TSIG_BAD: {
    action: 'none',
    explain: 'The TSIG signature did not verify (wrong key name, secret or algorithm, or clocks more than 5 minutes apart).',
  },
  KMS_ERR_DNS_LISTEN: {
    action: 'none',
    explain: 'The DNS server could not bind its address (port 53 needs CAP_NET_BIND_SERVICE, or another resolver already uses it).',
  },
  KMS_ERR_MDNS_CONFLICT: {
    action: 'none',
    explain:
      "Another host on the link announces the appliance's mDNS host or service name with other data; the appliance keeps its " +
      'records and answers (it does not rename itself on one packet). Give one of the two another name (dns.mdns.instanceName or ' +
      'the host name).',
  },

  // ---- Storage (src/store) ----
  KMS_ERR_STORE_OPEN: { action: 'none', explain: 'The database file cannot be opened; check the data directory and its permissions.' },
  KMS_ERR_STORE_CORRUPT: {
    action: 'none',
    explain:
      'The database file is damaged; the host refuses to start and leaves the file untouched. Restore it from a backup or move it away ' +
      'to start empty.',
  },
  KMS_ERR_STORE_FOREIGN: {
    action: 'none',
    explain: 'The file is not a kms-appliance database; the host refuses to touch it. Point --data-dir elsewhere.',
  },
  KMS_ERR_STORE_SCHEMA_NEWER: {
    action: 'none',
    explain: 'The database was written by a newer kms-appliance; upgrade the appliance instead of downgrading.',
  },
  KMS_ERR_STORE_WRITE_FAILED: {
    action: 'none',
    explain:
      'The database cannot be written (disk full or read-only); the host keeps answering from memory and writes again when it can. ' +
      'Free disk space.',
  },
  KMS_ERR_STORE_JOURNAL_DAMAGED: {
    action: 'none',
    explain:
      'At start the request journal held damaged lines or the cut-short end of a write (a power cut or a disk error); every whole ' +
      'record was replayed and the damaged ones skipped. Check the disk if it happens without a power cut.',
  },
  KMS_ERR_STORE_SYNC_FAILED: {
    action: 'none',
    explain:
      'An fsync of the database or its -wal file failed: the disk did not confirm what was written, so a power cut could lose recent ' +
      'activations. The host keeps serving; check the disk (dmesg, SMART) and free space.',
  },
  KMS_ERR_STORE_MACHINE_CAP: {
    action: 'refuse',
    hresult: E.TOO_MANY_CLIENTS,
    explain:
      'store.maxMachines machines are stored and every one was counted in the last 30 days: machines the host has not seen are ' +
      'refused (known ones renew). Raise store.maxMachines if the site has this many machines; otherwise a client is inventing ' +
      'machine ids: find its address in the request log.',
  },
  KMS_ERR_STORE_BACKLOG_FULL: {
    action: 'refuse',
    hresult: E.TOO_MANY_CLIENTS,
    explain:
      'The database has been unwritable so long that store.pendingMachines machines wait in memory; machines not already waiting are ' +
      'refused (nothing is counted) until it can be written. Free disk space.',
  },

  // ---- Fleet reporting to PostgreSQL (src/fleet) ----
  KMS_ERR_FLEET_CONFIG: {
    action: 'none',
    explain:
      'Fleet reporting cannot start: a fleet.postgres setting is missing, the CA file is unreadable, or the password file is readable ' +
      'by group or others (chmod 600 it, owned by the service user).',
  },
  KMS_ERR_FLEET_SEND_FAILED: {
    action: 'none',
    explain:
      'The fleet database could not be reached or refused the data (network, TLS certificate, password, grants or schema); activations ' +
      'go on and the local outbox keeps everything until it works again.',
  },
  KMS_ERR_FLEET_OUTBOX_FULL: {
    action: 'none',
    explain:
      'The fleet database was unreachable so long that fleet.postgres.maxBacklogEvents was exceeded (or the local event log pruned ' +
      'events first); the oldest events are not sent. The machine inventory is still sent in full, and local counting is unaffected.',
  },
  KMS_ERR_FLEET_SCHEMA: {
    action: 'none',
    explain:
      'The fleet schema in PostgreSQL is missing or older than this appliance needs; run kms-appliance fleet init as the owner role.',
  },

  // ---- Configuration and CLI (src/config, src/cli) ----
  KMS_ERR_CONFIG_NOT_FOUND: {
    action: 'none',
    explain: 'The configuration file does not exist; check the path (or run without --config for the embedded defaults).',
  },
  KMS_ERR_CONFIG_UNREADABLE: { action: 'none', explain: 'The configuration file cannot be read; check its permissions.' },
  KMS_ERR_CONFIG_SYNTAX: { action: 'none', explain: 'The configuration file is not valid YAML; the line number points at the problem.' },
  KMS_ERR_CONFIG_INVALID: {
    action: 'none',
    explain: 'The configuration file has fields with wrong names, types or values; each is listed with its line.',
  },
  KMS_ERR_CONFIG_ADMIN_EXPOSED: {
    action: 'none',
    explain:
      'An admin listener on an address other than loopback needs admin.tls.enabled and a password (kms-appliance admin set-password); ' +
      'move it to loopback or set both.',
  },
  KMS_ERR_CONFIG_ADMIN_TLS: {
    action: 'none',
    explain:
      'The admin certificate or key (admin.tls.certFile, admin.tls.keyFile) cannot be used: unreadable, not PEM, the key does not ' +
      'match, or it has expired. Fix the files; the message says which.',
  },

  // ---- Admin page (src/admin) ----
  KMS_ERR_ADMIN_LOGIN_FAILED: {
    action: 'none',
    explain:
      'Someone tried to log in to the admin page with a wrong user or password; after 5 failures the address waits (30 s, doubling up ' +
      'to 15 min), and after 20 failed checks in 5 minutes from any addresses every address waits (admin-login-paused). Check the ' +
      'addresses in the log if you did not do it.',
  },
  KMS_ERR_CLI_USAGE: { action: 'none', explain: 'The command line is wrong; run the command with --help.' },
  KMS_ERR_CONFIG_LIMIT: {
    action: 'none',
    explain:
      'The configuration file is not a regular file, or is larger, deeper or uses more YAML aliases than a configuration ever needs; ' +
      'it was not read.',
  },
} satisfies Record<string, ErrorSpec>);

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRORS, code);
}

export function specOf(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}

/** Base of every error the appliance raises on purpose. `details` are structured log fields. */
export class KmsError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].explain, options);
    this.name = 'KmsError';
    this.code = code;
    this.details = details;
  }

  get spec(): ErrorSpec {
    return ERRORS[this.code];
  }
}

/**
 * Raised by the pure codecs for bytes that break the wire format. It carries no stack trace: it
 * says what the peer sent wrong (code, message, details), never where our code is, and a client
 * sending a fault-provoking PDU per 24 bytes made capturing one most of the host's cost per PDU.
 */
export class ProtocolError extends KmsError {
  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(code, message, details);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'ProtocolError';
  }
}

export class ConfigError extends KmsError {
  /** One line per problem, each naming the file (and line) it is in: what the CLI prints. */
  readonly errors: readonly string[];

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> & { errors?: readonly string[] } = {}) {
    super(code, message, details);
    this.name = 'ConfigError';
    this.errors = details.errors ?? [this.message];
  }
}

export class StoreError extends KmsError {
  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
    this.name = 'StoreError';
  }
}

export function formatHresult(hr: number): string {
  return '0x' + (hr >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/** Admin-facing meaning of an HRESULT a client may show, or undefined when unknown. */
export function describeHresult(hr: number): string | undefined {
  return HRESULT_MEANING.get(hr >>> 0);
}

const HRESULT_MEANING: ReadonlyMap<number, string> = new Map([
  [E.SUCCESS, 'success'],
  [E.INVALID_DATA, 'the host found the request invalid (damaged, forged, or an out-of-range threshold)'],
  [E.TIME_INVALID, "the client's clock is more than 4 hours away from the host's"],
  [E.PRODUCT_NOT_SERVED, 'the host does not activate this product (unknown, retail, preview or not covered by its host keys)'],
  [E.TOO_MANY_CLIENTS, 'the host tracks no more machines'],
  [E.COUNT_INSUFFICIENT, 'the host count is below the threshold the product needs'],
  [E.NO_KMS_HOST, 'no KMS host could be contacted'],
  [E.DNS_NAME_NOT_FOUND, 'the DNS name _vlmcs._tcp.<domain> does not exist'],
  [E.DNS_NO_RECORDS, 'no DNS records found for _vlmcs._tcp.<domain>'],
  [E.DNS_BAD_NAME, 'the client has no DNS domain suffix to search'],
  [E.RPC_SERVER_UNAVAILABLE, 'the RPC server is unavailable (TCP connection failed)'],
]);
