// NDR32/NDR64 stubs of RequestActivation (PROTOCOL.md §3): the request stub the host decodes, the
// success and refusal stubs it encodes, and the client-side counterparts with the §3.3 checks.
// Alignment is relative to the stub start, which is 8-aligned in the PDU (offset 24).
import { ProtocolError } from '../../errors';
import { Reader } from '../reader';
import { Writer } from '../writer';

export type TransferSyntax = 'ndr32' | 'ndr64';

/** The unique pointer's referent id for `*response`; any nonzero value would do (§3.2). */
const RESPONSE_REFERENT_ID = 0x00020000;

/** Bytes before the KMS request: requestSize + conformance, NDR64 with 4 pad bytes and a u64. */
const REQUEST_HEAD = { ndr32: 8, ndr64: 16 } as const;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/**
 * §3.1: returns exactly the requestSize KMS bytes (a view into `stub`); bytes after them are a
 * client's trailing padding and are ignored. requestSize ≠ conformance, or a stub shorter than
 * its header part + requestSize, is KMS_ERR_RPC_STUB_MALFORMED (fault nca_proto_error).
 */
export function decodeRequestStub(stub: Buffer, syntax: TransferSyntax): Buffer {
  const r = new Reader(stub, 0, stub.length, 'KMS_ERR_RPC_STUB_MALFORMED');
  const requestSize = r.u32('requestSize');
  let conformance: number;
  if (syntax === 'ndr32') {
    conformance = r.u32('conformance');
  } else {
    r.skip(4, 'NDR64 pad'); // sent as zero; the value is not checked (§3.1)
    const wide = r.u64('conformance');
    conformance = wide > 0xffffffffn ? -1 : Number(wide);
  }
  if (conformance !== requestSize) {
    throw new ProtocolError('KMS_ERR_RPC_STUB_MALFORMED', `requestSize ${requestSize} differs from conformance ${conformance}`, {
      requestSize,
      conformance,
      syntax,
    });
  }
  return r.bytes(requestSize, 'KMS request');
}

/** §3.2: responseSize, referent, conformance, the response, zero pad to 4, then HRESULT 0. */
export function encodeSuccessStub(response: Buffer, syntax: TransferSyntax): Buffer {
  const w = new Writer(successStubLength(response.length, syntax));
  writeSuccessStub(w, response, syntax);
  return w.finish();
}

/** The length of the success stub of a `responseBytes`-byte KMS response. */
export function successStubLength(responseBytes: number, syntax: TransferSyntax): number {
  return (syntax === 'ndr32' ? 12 : 24) + responseBytes + pad4(responseBytes) + 4;
}

/** The success stub written at the writer's position, which must be 4-aligned (as at PDU offset 24). */
export function writeSuccessStub(w: Writer, response: Buffer, syntax: TransferSyntax): void {
  const n = response.length;
  if (syntax === 'ndr32') {
    w.u32(n).u32(RESPONSE_REFERENT_ID).u32(n);
  } else {
    w.u32(n).zeros(4).u64(BigInt(RESPONSE_REFERENT_ID)).u64(BigInt(n));
  }
  // NDR places the pad before the return value (the C reference pads after it; both give zeros).
  w.bytes(response).align(4).u32(0);
}

/** §3.4: responseSize 0, a null referent (nothing follows it), then the HRESULT. */
export function encodeRefusalStub(hresult: number, syntax: TransferSyntax): Buffer {
  const w = new Writer(20);
  if (syntax === 'ndr32') w.u32(0).u32(0);
  else w.u32(0).zeros(4).u64(0n);
  w.u32(hresult);
  return w.finish();
}

/** Client side: the request stub of §3.1 with no trailing bytes (what Windows and the C client send). */
export function encodeRequestStub(request: Buffer, syntax: TransferSyntax): Buffer {
  const w = new Writer(REQUEST_HEAD[syntax] + request.length);
  if (syntax === 'ndr32') w.u32(request.length).u32(request.length);
  else w.u32(request.length).zeros(4).u64(BigInt(request.length));
  w.bytes(request);
  return w.finish();
}

export interface DecodedResponseStub {
  /** The return value: 0 on success, else the host's refusal. */
  readonly hresult: number;
  /** The KMS response (a view into the stub); absent for a null referent. */
  readonly response?: Buffer;
  /** The stub length the host should have announced in alloc_hint. */
  readonly expectedStubLength: number;
  /** Deviations a checking client only warns about (§3.3): nonzero pad, alloc_hint mismatch. */
  readonly warnings: readonly string[];
}

/**
 * Client side, with the checks of §3.3. Hard failures (KMS_ERR_CLIENT_PROTOCOL): short stub,
 * responseSize ≠ conformance, bytes beyond the return value. `allocHint`, when given, is compared
 * with the stub length the layout implies (a warning only).
 */
export function decodeResponseStub(stub: Buffer, syntax: TransferSyntax, allocHint?: number): DecodedResponseStub {
  const r = new Reader(stub, 0, stub.length, 'KMS_ERR_CLIENT_PROTOCOL');
  const warnings: string[] = [];
  const responseSize = r.u32('responseSize');
  let referent: bigint;
  if (syntax === 'ndr32') {
    referent = BigInt(r.u32('referent id'));
  } else {
    if (r.u32('NDR64 pad') !== 0) warnings.push('nonzero NDR64 pad after responseSize');
    referent = r.u64('referent id');
  }
  let response: Buffer | undefined;
  if (referent !== 0n) {
    const conformance = syntax === 'ndr32' ? BigInt(r.u32('conformance')) : r.u64('conformance');
    if (conformance !== BigInt(responseSize)) {
      throw new ProtocolError('KMS_ERR_CLIENT_PROTOCOL', `responseSize ${responseSize} differs from conformance ${conformance}`, {
        responseSize,
        conformance: conformance.toString(),
      });
    }
    response = r.bytes(responseSize, 'KMS response');
    const pad = r.bytes(pad4(responseSize), 'NDR pad');
    if (pad.some((b) => b !== 0)) warnings.push('nonzero NDR pad before the return value');
  } else if (responseSize !== 0) {
    warnings.push(`responseSize ${responseSize} with a null response pointer`);
  }
  const hresult = r.u32('return value');
  r.expectEnd('response stub');
  const expectedStubLength = stub.length;
  if (allocHint !== undefined && allocHint !== expectedStubLength) {
    warnings.push(`alloc_hint ${allocHint} differs from the stub length ${expectedStubLength}`);
  }
  return response === undefined ? { hresult, expectedStubLength, warnings } : { hresult, response, expectedStubLength, warnings };
}
