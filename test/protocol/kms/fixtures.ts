// Fixture loading and small helpers for the KMS codec tests. FILETIMEs exceed 2^53, so they are
// turned into strings before JSON.parse and read back as bigint by the tests.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KmsRequestBase, KmsResponseBase, DecodedKmsRequest, SentKmsRequest } from '../../../src/protocol/kms';
import { ROOT } from '../../paths';

const FIXTURES = join(ROOT, 'test', 'fixtures');

export function readFixture(relPath: string): any {
  const text = readFileSync(join(FIXTURES, relPath), 'utf8');
  return JSON.parse(text.replace(/("(?:client_time_filetime|filetime)"\s*:\s*)(\d+)/g, '$1"$2"'));
}

export function exchangeFiles(): string[] {
  return readdirSync(join(FIXTURES, 'exchanges'))
    .filter((f) => f.endsWith('.json'))
    .sort();
}

/** A decoded request base in the fixture's field names (request.fields without client_time_utc). */
export function requestFieldsOf(b: KmsRequestBase): Record<string, unknown> {
  return {
    version: `${b.majorVersion}.${b.minorVersion}`,
    vm_info: b.vmInfo,
    license_status: b.licenseStatus,
    binding_expiration_minutes: b.bindingExpiration,
    application_id: b.applicationId,
    activation_id: b.activationId,
    kms_counted_id: b.kmsCountedId,
    cmid: b.clientMachineId,
    n_policy: b.requiredClientCount,
    client_time_filetime: String(b.requestTime),
    previous_cmid: b.previousClientMachineId,
    workstation: b.workstationName,
  };
}

export function withoutUtc(fields: Record<string, unknown>): Record<string, unknown> {
  const { client_time_utc: _utc, ...rest } = fields;
  return rest;
}

/** The response base a fixture's response.fields describe. */
export function responseBaseOf(f: any): KmsResponseBase {
  const [major, minor] = String(f.version).split('.').map(Number);
  return {
    majorVersion: major!,
    minorVersion: minor!,
    epid: f.epid,
    clientMachineId: f.cmid,
    clientTime: BigInt(f.client_time_filetime),
    currentCount: f.count,
    activationInterval: f.activation_interval_minutes,
    renewalInterval: f.renewal_interval_minutes,
  };
}

export function responseFieldsOf(b: KmsResponseBase): Record<string, unknown> {
  return {
    version: `${b.majorVersion}.${b.minorVersion}`,
    epid: b.epid,
    cmid: b.clientMachineId,
    client_time_filetime: String(b.clientTime),
    count: b.currentCount,
    activation_interval_minutes: b.activationInterval,
    renewal_interval_minutes: b.renewalInterval,
  };
}

export function expectedResponseFields(f: any): Record<string, unknown> {
  return {
    version: f.version,
    epid: f.epid,
    cmid: f.cmid,
    client_time_filetime: f.client_time_filetime,
    count: f.count,
    activation_interval_minutes: f.activation_interval_minutes,
    renewal_interval_minutes: f.renewal_interval_minutes,
  };
}

/** What a client would have kept of a captured request. */
export function sentOf(req: DecodedKmsRequest, message: Buffer): SentKmsRequest {
  return { ...req, message };
}

/** A random source that replays the given bytes in order (for capture-identical responses). */
export function replay(...chunks: Buffer[]): (n: number) => Buffer {
  const all = Buffer.concat(chunks);
  let at = 0;
  return (n) => {
    if (at + n > all.length) throw new Error('replay source exhausted');
    const out = all.subarray(at, at + n);
    at += n;
    return Buffer.from(out);
  };
}

export function xor(a: Buffer, b: Buffer): Buffer {
  return Buffer.from(a.map((x, i) => x ^ b[i]!));
}

/** One C-client → C-server capture per protocol version, for the codec tests. */
export const CAPTURES = {
  4: 'vlmcs-vlmcsd-win7-v4-ndr32-btfn.json',
  5: 'vlmcs-vlmcsd-win8-v5-ndr32-btfn.json',
  6: 'vlmcs-vlmcsd-win10-v6-ndr32-btfn.json',
} as const;
