// The verifying KMS client behind `kms-appliance activate`, `dns check` and the benchmark: builds
// requests like a Windows client, sends them over RpcClient and checks every response the way a
// client does (decryption, MAC/HMAC, echoed fields, ePID form) before trusting a single field.
import { randomBytes as cryptoRandomBytes, randomUUID } from 'node:crypto';
import { HRESULT } from '../errors';
import { encodeKmsRequest, verifyKmsResponse } from '../protocol/kms';
import type { KmsRequestBase, KmsVersion, VerifiedKmsResponse } from '../protocol/kms/types';
import { filetimeFromMs } from '../protocol/filetime';
import { NIL_GUID } from '../protocol/guid';
import type { ChosenProduct } from './product-choice';
import { RpcClient } from './rpc-client';

export interface ActivateOptions {
  readonly host: string;
  readonly port: number;
  readonly product: ChosenProduct;
  /** Defaults to the product's own protocol version. */
  readonly protocol?: KmsVersion;
  readonly ndr64?: boolean;
  readonly btfn?: boolean;
  /** Requests on the one connection, each from a new machine unless `cmid` is given. */
  readonly requests?: number;
  readonly cmid?: string;
  readonly workstation?: string;
  readonly timeoutMs?: number;
  /** The client clock; tests move it to check the host's time window. */
  readonly nowMs?: () => number;
  readonly vm?: boolean;
  readonly licenseStatus?: number;
}

export interface ActivationReply {
  readonly hresult: number;
  readonly cmid: string;
  /** Present when the host served the request (hresult 0) and it verified. */
  readonly verified?: VerifiedKmsResponse;
  /** True when the count reached the product's threshold: the client would be activated. */
  readonly activated: boolean;
  readonly warnings: readonly string[];
}

export function buildRequestBase(
  product: ChosenProduct,
  version: KmsVersion,
  o: { cmid: string; workstation: string; nowMs: number; vm?: boolean; licenseStatus?: number },
): KmsRequestBase {
  return {
    majorVersion: version,
    minorVersion: 0,
    vmInfo: o.vm ? 1 : 0,
    licenseStatus: o.licenseStatus ?? 2, // initial grace: what a freshly installed volume client sends
    bindingExpiration: 43200, // 30 days of grace left
    applicationId: product.applicationId,
    activationId: product.activationId,
    kmsCountedId: product.kmsCountedId,
    clientMachineId: o.cmid,
    requiredClientCount: product.requiredClientCount,
    requestTime: filetimeFromMs(o.nowMs),
    previousClientMachineId: NIL_GUID,
    workstationName: o.workstation,
  };
}

/**
 * Binds and sends `requests` activation requests on one connection. Connection, bind and RPC
 * failures throw KmsError (KMS_ERR_CLIENT_*); a host refusal is a reply with its HRESULT; a
 * response that fails a client check throws KMS_ERR_KMS_RESPONSE_INVALID.
 */
export async function activate(options: ActivateOptions): Promise<ActivationReply[]> {
  const version = options.protocol ?? options.product.protocol;
  const timeoutMs = options.timeoutMs ?? 5000;
  const client = await RpcClient.connect(options.host, options.port, {
    ndr64: options.ndr64 ?? true,
    btfn: options.btfn ?? true,
    timeoutMs,
  });
  try {
    await client.bind();
    const replies: ActivationReply[] = [];
    for (let i = 0; i < (options.requests ?? 1); i++) {
      const cmid = options.cmid ?? randomUUID();
      const base = buildRequestBase(options.product, version, {
        cmid,
        workstation: options.workstation ?? 'kms-appliance-check',
        nowMs: (options.nowMs ?? Date.now)(),
        vm: options.vm ?? false,
        licenseStatus: options.licenseStatus ?? 2,
      });
      const sent = encodeKmsRequest(version, base, cryptoRandomBytes);
      const result = await client.call(sent.message);
      const warnings = [...client.warnings.splice(0), ...result.warnings];
      if (result.hresult !== HRESULT.SUCCESS || !result.response) {
        replies.push({ hresult: result.hresult, cmid, activated: false, warnings });
        continue;
      }
      const verified = verifyKmsResponse(result.response, sent);
      const needed = Math.max(1, options.product.requiredClientCount);
      replies.push({ hresult: 0, cmid, verified, activated: verified.base.currentCount >= needed, warnings });
    }
    return replies;
  } finally {
    client.close();
  }
}
