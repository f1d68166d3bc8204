// The conformance suite's own view of the wire (PROTOCOL.md §2–§6), written from the spec tables
// and independent of src/protocol's encoders and decoders, so that a misunderstanding shared by the
// project's client and server shows up here. Only the block ciphers and the v4 MAC, which are
// checked against independent vectors elsewhere, come from the project. Not a test file.
import net from 'node:net';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { encryptBlockV6, decryptBlockV6, v4Mac } from '../../src/protocol/kms';

// ---------------------------------------------------------------------------------------------
// Bytes

/** Hex with spaces, newlines and `// comments` allowed, so a PDU can be written field by field. */
export function hex(text: string): Buffer {
  const clean = text.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex: ${clean}`);
  return Buffer.from(clean, 'hex');
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

/** GUID string → 16 wire bytes: first three groups little-endian, last eight as written. */
export function guidBytes(guid: string): Buffer {
  const h = guid.replace(/-/g, '');
  const raw = Buffer.from(h, 'hex');
  if (raw.length !== 16) throw new Error(`not a GUID: ${guid}`);
  return Buffer.concat([
    Buffer.from(raw.subarray(0, 4)).reverse(),
    Buffer.from(raw.subarray(4, 6)).reverse(),
    Buffer.from(raw.subarray(6, 8)).reverse(),
    raw.subarray(8),
  ]);
}

export function xor16(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

export function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

// ---------------------------------------------------------------------------------------------
// Identifiers (§2.4 table, §4.2)

/** Abstract syntax: KMS interface 51C82175-844E-4750-B0D8-EC255555BC06, version 1.0. */
export const KMS_IF = hex('75 21 c8 51 4e 84 50 47 b0 d8 ec 25 55 55 bc 06');
/** NDR32 transfer syntax 8A885D04-1CEB-11C9-9FE8-08002B104860, version 2. */
export const NDR32 = hex('04 5d 88 8a eb 1c c9 11 9f e8 08 00 2b 10 48 60');
/** NDR64 transfer syntax 71710533-BEBA-4937-8319-B5DBEF9CCC36, version 1. */
export const NDR64 = hex('33 05 71 71 ba be 37 49 83 19 b5 db ef 9c cc 36');
/** BTFN 6CB71C2C-9812-4540-0300-000000000000: the 8 fixed bytes, then the feature bits 0x03. */
const BTFN = hex('2c 1c b7 6c 12 98 40 45  03 00 00 00 00 00 00 00');
const ZERO_UUID = Buffer.alloc(16);

const APP_WINDOWS = '55c92734-d682-4d71-983e-d6ec3f16059f';
const APP_OFFICE2010 = '59a52881-a989-479d-af46-f275c6370663';
const APP_OFFICE = '0ff1ce15-a989-479d-af46-f275c6370663';

/** KMS groups from data/kms-catalog.json, with an Activation ID of each. */
export const GROUP: Readonly<
  Record<
    'win10' | 'server2022' | 'server2008r2' | 'win7' | 'win10Retail' | 'windowsPreview' | 'office2010' | 'office2013' | 'office2021',
    Group
  >
> = {
  win10: { app: APP_WINDOWS, kms: '58e2134f-8e11-4d17-9cb2-91069c151148', sku: '7b51a46c-0c04-4e8f-9af4-8496cca90d5e' },
  server2022: { app: APP_WINDOWS, kms: 'b74263e4-0f92-46c6-bcf8-c11d5efe2959', sku: '8c8f0ad3-9a43-4e05-b840-93b8d1475cbc' },
  server2008r2: { app: APP_WINDOWS, kms: 'ca87f5b6-cd46-40c0-b06d-8ecd57a4373f', sku: '68531fb9-5511-4989-97be-d11a0f55633f' },
  win7: { app: APP_WINDOWS, kms: '7fde5219-fbfa-484a-82c9-34d1ad53e856', sku: 'ae2ee509-1b34-41c0-acb7-6d4650168915' },
  win10Retail: { app: APP_WINDOWS, kms: 'e1c51358-fe3e-4203-a4a2-3b6b20c9734e', sku: '58e97c99-f377-4ef1-81d5-4ad5522b5fd8' },
  windowsPreview: { app: APP_WINDOWS, kms: '5f94a0bb-d5a0-4081-a685-5819418b2fe0', sku: 'cde952c7-2f96-4d9d-8f2b-2d349f64fc51' },
  office2010: { app: APP_OFFICE2010, kms: 'e85af946-2e25-47b7-83e1-bebcebeac611', sku: '8ce7e872-188c-4b98-9d90-f8f90b7aad02' },
  office2013: { app: APP_OFFICE, kms: 'e6a6f1bf-9d40-40c3-aa9f-c77ba21578c0', sku: '6ee7622c-18d8-4005-9fb7-92db644a279b' },
  office2021: { app: APP_OFFICE, kms: '86d50b16-4808-41af-b83b-b338274318b2', sku: '1fe429d8-3fa7-4a39-b6f0-03dded42fe14' },
};
export interface Group {
  readonly app: string;
  readonly kms: string;
  readonly sku: string;
}

/** §2.9 fault statuses and §7.1 HRESULTs, as numbers written in the spec. */
export const NCA_OP_RNG_ERROR = 0x1c010002;
export const NCA_UNK_IF = 0x1c010003;
export const NCA_PROTO_ERROR = 0x1c01000b;
export const E_INVALID_DATA = 0x8007000d;
export const E_TIME = 0xc004f06c;
export const E_PRODUCT = 0xc004f042;

// ---------------------------------------------------------------------------------------------
// PDUs (§2.1, §2.4, §2.8)

export interface HeaderFields {
  ptype: number;
  flags?: number;
  callId: number;
  versionMinor?: number;
  drep?: Buffer;
  authLength?: number;
  /** Overrides the computed frag_length. */
  fragLength?: number;
}

/** 16-byte common header + body; frag_length = 16 + body length unless overridden. */
export function pdu(h: HeaderFields, body: Buffer): Buffer {
  const header = Buffer.concat([
    Buffer.from([5, h.versionMinor ?? 0, h.ptype, h.flags ?? 0x03]), // rpc_vers, minor, PTYPE, pfc_flags
    h.drep ?? hex('10 00 00 00'), // packed_drep: little-endian, ASCII, IEEE
    u16(h.fragLength ?? 16 + body.length),
    u16(h.authLength ?? 0),
    u32(h.callId),
  ]);
  return Buffer.concat([header, body]);
}

export interface ContextItem {
  id: number;
  abstract?: Buffer;
  /** Interface version u16 major, u16 minor; default 1.0. */
  ifMajor?: number;
  ifMinor?: number;
  syntaxes: { uuid: Buffer; version: number }[];
}

export const ITEM = {
  ndr32: (id: number, abstract = KMS_IF): ContextItem => ({ id, abstract, syntaxes: [{ uuid: NDR32, version: 2 }] }),
  ndr64: (id: number, abstract = KMS_IF): ContextItem => ({ id, abstract, syntaxes: [{ uuid: NDR64, version: 1 }] }),
  btfn: (id: number, abstract = KMS_IF): ContextItem => ({ id, abstract, syntaxes: [{ uuid: BTFN, version: 1 }] }),
};

/** bind (PTYPE 11) or alter_context (14) body per §2.4. */
export function bind(
  items: ContextItem[],
  o: Partial<HeaderFields> & { maxXmit?: number; maxRecv?: number; assocGroup?: number } = {},
): Buffer {
  const parts: Buffer[] = [u16(o.maxXmit ?? 5840), u16(o.maxRecv ?? 5840), u32(o.assocGroup ?? 0), Buffer.from([items.length, 0, 0, 0])];
  for (const it of items) {
    parts.push(u16(it.id), Buffer.from([it.syntaxes.length, 0]), it.abstract ?? KMS_IF, u16(it.ifMajor ?? 1), u16(it.ifMinor ?? 0));
    for (const s of it.syntaxes) parts.push(s.uuid, u32(s.version));
  }
  return pdu({ ptype: 11, flags: 0x13, callId: 2, ...o }, Buffer.concat(parts));
}

export function alterContext(items: ContextItem[], o: Partial<HeaderFields> = {}): Buffer {
  return bind(items, { ptype: 14, ...o });
}

/** The 3-item bind of current 64-bit Windows clients (§2.4): NDR32 ctx 0, NDR64 ctx 1, BTFN ctx 2. */
export function windowsBind(callId = 2): Buffer {
  return bind([ITEM.ndr32(0), ITEM.ndr64(1), ITEM.btfn(2)], { callId });
}

export function requestPdu(
  o: { callId: number; ctx: number; opnum?: number; stub: Buffer; flags?: number; allocHint?: number } & Partial<HeaderFields>,
): Buffer {
  const body = Buffer.concat([u32(o.allocHint ?? o.stub.length), u16(o.ctx), u16(o.opnum ?? 0), o.stub]);
  return pdu({ ptype: 0, ...o, flags: o.flags ?? 0x03 }, body);
}

export type Syntax = 'ndr32' | 'ndr64';

/** §3.1 request stub. */
export function requestStub(message: Buffer, syntax: Syntax, o: { size?: number; conformance?: number; trailing?: Buffer } = {}): Buffer {
  const size = o.size ?? message.length;
  const conf = o.conformance ?? size;
  const head = syntax === 'ndr32' ? Buffer.concat([u32(size), u32(conf)]) : Buffer.concat([u32(size), u32(0), u64(BigInt(conf))]);
  return Buffer.concat([head, message, o.trailing ?? Buffer.alloc(0)]);
}

// ---------------------------------------------------------------------------------------------
// Reply parsing (§2.1, §2.6, §2.7, §2.9, §3.2, §3.4)

export interface Header {
  vers: number;
  minor: number;
  ptype: number;
  flags: number;
  drep: string;
  fragLength: number;
  authLength: number;
  callId: number;
}

export function header(p: Buffer): Header {
  return {
    vers: p[0]!,
    minor: p[1]!,
    ptype: p[2]!,
    flags: p[3]!,
    drep: p.subarray(4, 8).toString('hex'),
    fragLength: p.readUInt16LE(8),
    authLength: p.readUInt16LE(10),
    callId: p.readUInt32LE(12),
  };
}

export interface ContextResult {
  result: number;
  reason: number;
  syntax: string; // hex of the 16 UUID bytes
  version: number;
}

export interface BindAck {
  h: Header;
  maxXmit: number;
  maxRecv: number;
  assocGroup: number;
  secAddrLength: number;
  secAddr: Buffer;
  padding: Buffer;
  /** PDU offset of n_results. */
  resultsAt: number;
  nResults: number;
  reserved: Buffer;
  results: ContextResult[];
}

export function parseBindAck(p: Buffer): BindAck {
  const L = p.readUInt16LE(24);
  const pad = (4 - ((26 + L) % 4)) % 4;
  const A = 26 + L + pad;
  const n = p[A]!;
  const results: ContextResult[] = [];
  for (let i = 0; i < n; i++) {
    const at = A + 4 + 24 * i;
    results.push({
      result: p.readUInt16LE(at),
      reason: p.readUInt16LE(at + 2),
      syntax: p.subarray(at + 4, at + 20).toString('hex'),
      version: p.readUInt32LE(at + 20),
    });
  }
  return {
    h: header(p),
    maxXmit: p.readUInt16LE(16),
    maxRecv: p.readUInt16LE(18),
    assocGroup: p.readUInt32LE(20),
    secAddrLength: L,
    secAddr: p.subarray(26, 26 + L),
    padding: p.subarray(26 + L, A),
    resultsAt: A,
    nResults: n,
    reserved: p.subarray(A + 1, A + 4),
    results,
  };
}

/** A context result as [result, reason, syntax-hex, version], for compact t.same comparisons. */
export function res(r: ContextResult): [number, number, string, number] {
  return [r.result, r.reason, r.syntax, r.version];
}
export const ACCEPT_NDR32: [number, number, string, number] = [0, 0, NDR32.toString('hex'), 2];
export const ACCEPT_NDR64: [number, number, string, number] = [0, 0, NDR64.toString('hex'), 1];
export const REJECT_2_2: [number, number, string, number] = [2, 2, ZERO_UUID.toString('hex'), 0];
export const REJECT_2_1: [number, number, string, number] = [2, 1, ZERO_UUID.toString('hex'), 0];
export const BTFN_ACK: [number, number, string, number] = [3, 3, ZERO_UUID.toString('hex'), 0];

export interface Fault {
  h: Header;
  allocHint: number;
  ctx: number;
  cancelCount: number;
  reserved: number;
  status: number;
  reserved2: number;
}

export function parseFault(p: Buffer): Fault {
  return {
    h: header(p),
    allocHint: p.readUInt32LE(16),
    ctx: p.readUInt16LE(20),
    cancelCount: p[22]!,
    reserved: p[23]!,
    status: p.readUInt32LE(24),
    reserved2: p.readUInt32LE(28),
  };
}

export interface Response {
  h: Header;
  allocHint: number;
  ctx: number;
  cancelCount: number;
  reserved: number;
  stub: Buffer;
}

export function parseResponse(p: Buffer): Response {
  return {
    h: header(p),
    allocHint: p.readUInt32LE(16),
    ctx: p.readUInt16LE(20),
    cancelCount: p[22]!,
    reserved: p[23]!,
    stub: p.subarray(24),
  };
}

export interface Stub {
  responseSize: number;
  referent: bigint;
  conformance?: bigint;
  data?: Buffer;
  pad?: Buffer;
  hresult: number;
  /** Bytes the layout of §3.2/§3.4 accounts for (the stub must be exactly this long). */
  expectedLength: number;
  /** NDR64 only: the 4 bytes after responseSize. */
  sizePad?: Buffer;
}

/** §3.2 / §3.4, straight from the offset tables. */
export function parseStub(s: Buffer, syntax: Syntax): Stub {
  const n = s.readUInt32LE(0);
  if (syntax === 'ndr32') {
    const referent = BigInt(s.readUInt32LE(4));
    if (referent === 0n) return { responseSize: n, referent, hresult: s.readUInt32LE(8), expectedLength: 12 };
    const pad = (4 - (n % 4)) % 4;
    return {
      responseSize: n,
      referent,
      conformance: BigInt(s.readUInt32LE(8)),
      data: s.subarray(12, 12 + n),
      pad: s.subarray(12 + n, 12 + n + pad),
      hresult: s.readUInt32LE(12 + n + pad),
      expectedLength: 16 + n + pad,
    };
  }
  const referent = s.readBigUInt64LE(8);
  const sizePad = s.subarray(4, 8);
  if (referent === 0n) return { responseSize: n, referent, hresult: s.readUInt32LE(16), expectedLength: 20, sizePad };
  const pad = (4 - (n % 4)) % 4;
  return {
    responseSize: n,
    referent,
    sizePad,
    conformance: s.readBigUInt64LE(16),
    data: s.subarray(24, 24 + n),
    pad: s.subarray(24 + n, 24 + n + pad),
    hresult: s.readUInt32LE(24 + n + pad),
    expectedLength: 28 + n + pad,
  };
}

// ---------------------------------------------------------------------------------------------
// KMS requests (§4.2, §6.1, §6.2)

export interface RequestFields {
  group: Group;
  /** Overrides of the group's ids. */
  app?: string;
  kms?: string;
  sku?: string;
  cmid?: string;
  previousCmid?: string;
  requiredClientCount?: number;
  /** FILETIME; default: now. */
  requestTime?: bigint;
  vmInfo?: number;
  licenseStatus?: number;
  bindingExpiration?: number;
  workstation?: string;
  /** Inner version (defaults to the outer one). */
  innerMajor?: number;
  innerMinor?: number;
}

export function filetimeOf(ms: number): bigint {
  return (BigInt(Math.round(ms)) + 11_644_473_600_000n) * 10_000n;
}

/** The 236-byte request base of §4.2. */
function requestBase(f: RequestFields, major: number): Buffer {
  const name = Buffer.alloc(128);
  name.write((f.workstation ?? 'conformance.test').slice(0, 63), 0, 'utf16le');
  const b = Buffer.concat([
    u16(f.innerMinor ?? 0), // MinorVer
    u16(f.innerMajor ?? major), // MajorVer
    u32(f.vmInfo ?? 0), // VMInfo
    u32(f.licenseStatus ?? 2), // LicenseStatus: initial grace
    u32(f.bindingExpiration ?? 43200), // BindingExpiration
    guidBytes(f.app ?? f.group.app), // ApplicationID
    guidBytes(f.sku ?? f.group.sku), // ActivationID
    guidBytes(f.kms ?? f.group.kms), // KmsCountedID
    guidBytes(f.cmid ?? randomUUID()), // ClientMachineID
    u32(f.requiredClientCount ?? 25), // RequiredClientCount
    u64(f.requestTime ?? filetimeOf(Date.now())), // RequestTime
    guidBytes(f.previousCmid ?? '00000000-0000-0000-0000-000000000000'), // PreviousClientMachineID
    name, // WorkstationName
  ]);
  if (b.length !== 236) throw new Error('request base is 236 bytes');
  return b;
}

export interface SentRequest {
  version: 4 | 5 | 6;
  message: Buffer;
  base: Buffer;
  /** v5/v6: the wire IV and D_K(IV). */
  iv?: Buffer;
  dreq?: Buffer;
}

const K5 = hex('cd 7e 79 6f 2a b2 5d cb 55 ff c8 ef 83 64 c4 70');

function aesCbc(encrypt: boolean, iv: Buffer, data: Buffer): Buffer {
  const c = encrypt ? createCipheriv('aes-128-cbc', K5, iv) : createDecipheriv('aes-128-cbc', K5, iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** CBC with the v6 "modified AES" block (§5.1 K6, §5.2), no padding handling. */
function v6Cbc(encrypt: boolean, iv: Buffer, data: Buffer): Buffer {
  const out = Buffer.alloc(data.length);
  let prev = iv;
  for (let at = 0; at < data.length; at += 16) {
    const block = data.subarray(at, at + 16);
    if (encrypt) {
      const c = encryptBlockV6(xor16(block, prev));
      c.copy(out, at);
      prev = c;
    } else {
      xor16(decryptBlockV6(block), prev).copy(out, at);
      prev = block;
    }
  }
  return out;
}

/**
 * A whole KMS request message. `padding` replaces the 4 PKCS bytes of v5/v6 (§6.2) and
 * `corruptMac` flips a v4 MAC bit (§6.1), for refusal tests.
 */
export function kmsRequest(
  version: 4 | 5 | 6,
  f: RequestFields,
  o: { padding?: Buffer; corruptMac?: boolean; iv?: Buffer; outerMinor?: number; outerMajor?: number } = {},
): SentRequest {
  const base = requestBase(f, version);
  const clear = Buffer.concat([u16(o.outerMinor ?? 0), u16(o.outerMajor ?? version)]);
  if (version === 4) {
    const mac = v4Mac(base);
    if (o.corruptMac) mac[0] = mac[0]! ^ 0x01;
    return { version, message: Buffer.concat([base, mac]), base };
  }
  const iv = o.iv ?? randomBytes(16);
  const plain = Buffer.concat([base, o.padding ?? hex('04 04 04 04')]);
  const c = version === 5 ? aesCbc(true, iv, plain) : v6Cbc(true, iv, plain);
  const dreq = version === 5 ? aesCbc(false, Buffer.alloc(16), iv) : decryptBlockV6(iv);
  return { version, message: Buffer.concat([clear, iv, c]), base, iv, dreq };
}

// ---------------------------------------------------------------------------------------------
// KMS responses (§4.3, §6.1, §6.3, §6.4, §6.5)

export interface ResponseBase {
  minor: number;
  major: number;
  pidSize: number;
  epidUnits: Buffer;
  epid: string;
  cmid: Buffer;
  clientTime: bigint;
  count: number;
  activationInterval: number;
  renewalInterval: number;
  length: number;
}

function parseResponseBase(b: Buffer, at: number): ResponseBase {
  const P = b.readUInt32LE(at + 4);
  const units = b.subarray(at + 8, at + 8 + P);
  const o = at + 8 + P;
  return {
    minor: b.readUInt16LE(at),
    major: b.readUInt16LE(at + 2),
    pidSize: P,
    epidUnits: units,
    epid: units.subarray(0, Math.max(0, P - 2)).toString('utf16le'),
    cmid: b.subarray(o, o + 16),
    clientTime: b.readBigUInt64LE(o + 16),
    count: b.readUInt32LE(o + 24),
    activationInterval: b.readUInt32LE(o + 28),
    renewalInterval: b.readUInt32LE(o + 32),
    length: 44 + P,
  };
}

/** §4.3 well-formedness as clients check it, plus the §7.4 shape. */
export function epidProblems(base: ResponseBase): string[] {
  const out: string[] = [];
  const P = base.pidSize;
  if (P % 2 !== 0 || P < 4 || P > 128) out.push(`PIDSize ${P}`);
  if (base.epidUnits.readUInt16LE(P - 2) !== 0) out.push('last code unit not NUL');
  for (let i = 0; i < P - 2; i += 2) if (base.epidUnits.readUInt16LE(i) === 0) out.push(`NUL at ${i}`);
  if (P !== 2 * (base.epid.length + 1)) out.push('PIDSize ≠ 2 × (characters + 1)');
  if (!/^[0-9]{5}-[0-9]{5}-[0-9]{3}-[0-9]{6}-03-[0-9]{4,5}-[0-9]{4,5}\.0000-[0-9]{7}$/.test(base.epid)) out.push(`shape of ${base.epid}`);
  return out;
}

export function roundup16(x: number): number {
  return Math.ceil(x / 16) * 16;
}

export interface DecodedResponse {
  version: number;
  /** Clear version u16 minor, u16 major (v5/v6) — for v4 the base's. */
  clearMinor: number;
  clearMajor: number;
  base: ResponseBase;
  /** v4 */
  mac?: Buffer;
  macExpected?: Buffer;
  /** v5/v6 */
  wireIv?: Buffer;
  paddingValid?: boolean;
  randomXoredIvs?: Buffer;
  hash?: Buffer;
  /** v6 */
  ds?: Buffer;
  hwid?: Buffer;
  xoredIvs?: Buffer;
  hmac?: Buffer;
  /** HMAC computed with Khmac(ClientTime) over Ds ‖ body. */
  hmacExpected?: Buffer;
  /** The bytes the HMAC covers, for keying it differently. */
  hmacInput?: Buffer;
}

function paddingLength(plain: Buffer): number {
  const b = plain[plain.length - 1]!;
  if (b < 1 || b > 16) return -1;
  for (let i = plain.length - b; i < plain.length; i++) if (plain[i] !== b) return -1;
  return b;
}

/** §6.5, computed here rather than taken from the project. */
export function khmac(clientTime: bigint): Buffer {
  const C1 = 0x00000022816889bdn;
  const C2 = 0x000000208cbab5edn;
  const C3 = 0x3156cd5ac628477an;
  const slot = BigInt.asUintN(64, (clientTime / C1) * C2 + C3);
  return sha256(u64(slot)).subarray(16, 32);
}

export function timeSlot(filetime: bigint): bigint {
  return filetime / 0x00000022816889bdn;
}

export function decodeKmsResponse(version: 4 | 5 | 6, m: Buffer): DecodedResponse {
  if (version === 4) {
    const base = parseResponseBase(m, 0);
    return {
      version,
      clearMinor: base.minor,
      clearMajor: base.major,
      base,
      mac: m.subarray(base.length),
      macExpected: v4Mac(m.subarray(0, base.length)),
    };
  }
  const clearMinor = m.readUInt16LE(0);
  const clearMajor = m.readUInt16LE(2);
  const wireIv = m.subarray(4, 20);
  if (version === 5) {
    // Standard view: CBC-Decrypt(K5, wire IV, C).
    const plain = aesCbc(false, wireIv, m.subarray(20));
    const padLen = paddingLength(plain);
    const base = parseResponseBase(plain, 0);
    const rx = plain.subarray(base.length, base.length + 16);
    return {
      version,
      clearMinor,
      clearMajor,
      base,
      wireIv,
      paddingValid: padLen > 0 && plain.length - padLen === base.length + 48,
      randomXoredIvs: rx,
      hash: plain.subarray(base.length + 16, base.length + 48),
    };
  }
  // Zero-IV view: CBC-Decrypt(K6, 0, S ‖ C) = Ds ‖ body ‖ HMAC ‖ pad (§6.4 table).
  const plain = v6Cbc(false, Buffer.alloc(16), m.subarray(4));
  const padLen = paddingLength(plain);
  const base = parseResponseBase(plain, 16);
  const P = base.pidSize;
  const hmacInput = plain.subarray(0, 132 + P);
  const clientTime = base.clientTime;
  return {
    version,
    clearMinor,
    clearMajor,
    base,
    wireIv,
    paddingValid: padLen > 0 && plain.length - padLen === 148 + P,
    ds: plain.subarray(0, 16),
    randomXoredIvs: plain.subarray(60 + P, 76 + P),
    hash: plain.subarray(76 + P, 108 + P),
    hwid: plain.subarray(108 + P, 116 + P),
    xoredIvs: plain.subarray(116 + P, 132 + P),
    hmac: plain.subarray(132 + P, 148 + P),
    hmacExpected: createHmac('sha256', khmac(clientTime)).update(hmacInput).digest().subarray(16),
    hmacInput,
  };
}

/**
 * Every check a client makes on a served response (§6.1, §6.3, §6.6 and §4.3): an empty list
 * means a genuine client would accept it.
 */
export function clientProblems(sent: SentRequest, m: Buffer): string[] {
  const d = decodeKmsResponse(sent.version, m);
  const out: string[] = [];
  const b = d.base;
  const reqMinor = sent.base.readUInt16LE(0);
  const reqMajor = sent.base.readUInt16LE(2);
  if (
    b.major !== sent.version ||
    b.minor !== 0 ||
    d.clearMajor !== sent.version ||
    d.clearMinor !== 0 ||
    reqMajor !== b.major ||
    reqMinor !== b.minor
  )
    out.push('version echo');
  out.push(...epidProblems(b));
  if (!b.cmid.equals(sent.base.subarray(64, 80))) out.push('CMID echo');
  if (b.clientTime !== sent.base.readBigUInt64LE(84)) out.push('ClientTime echo');
  const P = b.pidSize;
  if (sent.version === 4) {
    if (m.length !== 60 + P) out.push(`v4 length ${m.length}`);
    if (!d.mac!.equals(d.macExpected!)) out.push('v4 MAC');
  } else {
    if ((m.length - 4) % 16 !== 0) out.push('not whole blocks');
    if (!d.paddingValid) out.push('padding');
    if (!sha256(xor16(d.randomXoredIvs!, sent.dreq!)).equals(d.hash!)) out.push('hash');
    if (sent.version === 5) {
      if (m.length !== 4 + roundup16(108 + P + 1)) out.push(`v5 length ${m.length}`);
      if (!d.wireIv!.equals(sent.iv!)) out.push('v5 IV echo');
    } else {
      if (m.length !== 4 + roundup16(148 + P + 1)) out.push(`v6 length ${m.length}`);
      if (!d.xoredIvs!.equals(sent.dreq!)) out.push('XoredIVs');
      if (!d.hmac!.equals(d.hmacExpected!)) out.push('HMAC');
      if (d.wireIv!.equals(sent.iv!)) out.push('v6 IV reused');
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A raw TCP peer that cuts what it receives into PDUs by frag_length (§1.5)

export class Peer {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closedAt: number | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedAt = Date.now();
        resolve();
        this.wake();
      }),
    );
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      s.once('connect', () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  /** Bytes received and not yet taken as PDUs. */
  get pending(): number {
    return this.buf.length;
  }

  send(b: Buffer): void {
    this.socket.write(b);
  }

  /** The next whole PDU, or undefined when the connection closes or nothing comes in time. */
  async next(timeoutMs = 3000): Promise<Buffer | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.buf.length >= 10) {
        const len = this.buf.readUInt16LE(8);
        if (this.buf.length >= len) {
          const p = this.buf.subarray(0, len);
          this.buf = this.buf.subarray(len);
          return p;
        }
      }
      if (this.isClosed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next PDU; fails loudly when none comes. */
  async expect(timeoutMs = 3000): Promise<Buffer> {
    const p = await this.next(timeoutMs);
    if (!p) throw new Error(this.isClosed ? 'connection closed instead of a reply' : 'no reply in time');
    return p;
  }

  /** Resolves true when the host closes the connection within `ms`. */
  async closesWithin(ms: number): Promise<boolean> {
    if (this.isClosed) return true;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closed.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Opens a connection, sends the NDR32-only bind and checks it is acknowledged. */
export async function boundNdr32(port: number): Promise<Peer> {
  const p = await Peer.open(port);
  p.send(bind([ITEM.ndr32(0)]));
  const ack = await p.expect();
  if (ack[2] !== 12) throw new Error('bind not acknowledged');
  return p;
}

/** Sends one KMS message on `ctx` and returns the response PDU's parsed stub (and the PDU). */
export async function call(
  p: Peer,
  message: Buffer,
  o: { ctx?: number; syntax?: Syntax; callId?: number } = {},
): Promise<{ pdu: Buffer; stub: Stub }> {
  const syntax = o.syntax ?? 'ndr32';
  p.send(requestPdu({ callId: o.callId ?? 3, ctx: o.ctx ?? 0, stub: requestStub(message, syntax) }));
  const reply = await p.expect();
  if (reply[2] !== 2)
    throw new Error(
      `expected a response PDU, got PTYPE ${reply[2]} (status 0x${reply.length >= 28 ? reply.readUInt32LE(24).toString(16) : '?'})`,
    );
  return { pdu: reply, stub: parseStub(reply.subarray(24), syntax) };
}

/** One KMS request over a fresh NDR32 connection: HRESULT and (when served) the KMS response. */
export async function activateOnce(port: number, sent: SentRequest): Promise<{ hresult: number; response?: Buffer }> {
  const p = await boundNdr32(port);
  try {
    const { stub } = await call(p, sent.message);
    return stub.data ? { hresult: stub.hresult, response: Buffer.from(stub.data) } : { hresult: stub.hresult };
  } finally {
    p.destroy();
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
