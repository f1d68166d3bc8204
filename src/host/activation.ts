// The host's answer to one KMS message (PROTOCOL.md §7.1): decode, check in the documented order,
// count, and build the response, with the record an administrator reads. Pure over its deps:
// no sockets, no files, no system clock.
import type { Catalog, KmsGroup } from '../catalog/catalog';
import { HRESULT, KmsError, specOf, type ErrorCode } from '../errors';
import { msFromFiletime } from '../protocol/filetime';
import { decodeKmsRequest, encodeKmsResponse, type DecodedKmsRequest, type KmsResponseBase } from '../protocol/kms';
import { licenseStatusName } from '../protocol/kms/license-status';
import { COUNT_WINDOW_MS, effectiveRequiredCount, MAX_REQUIRED_CLIENT_COUNT, reportedCount } from './counting';
import type { HostIdentity } from './host-identity';
import type { ActivationOutcome } from './outcome';
import type { ActivationStore, Clock, ClientObservation, RandomBytes } from './ports';
import type { ProductPolicy } from './product-policy';

export interface HostSettings {
  readonly activationIntervalMinutes: number;
  readonly renewalIntervalMinutes: number;
  readonly checkRequestTime: boolean;
  readonly maxClockSkewMinutes: number;
  readonly verifyV4Mac: boolean;
}

export interface ActivationDeps {
  readonly catalog: Catalog;
  readonly policy: ProductPolicy;
  readonly identity: HostIdentity;
  readonly store: ActivationStore;
  readonly clock: Clock;
  readonly randomBytes: RandomBytes;
  readonly settings: HostSettings;
  /**
   * Told of a served request whose RequiredClientCount differs from what the catalogue says its
   * KMS group's clients send (`usual`): a misconfigured or forged client. The count it is told
   * still follows §7.2; the hook only lets the appliance log it (once per group and value).
   */
  readonly onUnusualThreshold?: (outcome: ActivationOutcome, usual: number) => void;
}

export interface ActivationResult {
  /** The KMS response message (served requests only). */
  readonly response?: Buffer;
  /** 0 when served; the refusal HRESULT for the §3.4 stub otherwise. */
  readonly hresult: number;
  readonly outcome: ActivationOutcome;
}

export { MAX_REQUIRED_CLIENT_COUNT };

export function processKmsMessage(message: Buffer, clientAddress: string, deps: ActivationDeps): ActivationResult {
  const nowMs = deps.clock.now();

  // §7.1 steps 2–3: version, length, v4 MAC, v5/v6 padding and inner version.
  let req: DecodedKmsRequest;
  try {
    req = decodeKmsRequest(message, { verifyV4Mac: deps.settings.verifyV4Mac });
  } catch (err) {
    if (!(err instanceof KmsError) || specOf(err.code).action !== 'refuse') throw err;
    const protocolVersion = peekVersion(message);
    const partial = protocolVersion === undefined ? { clientAddress } : { clientAddress, protocolVersion };
    return refuse(err.code, err.message, partial, { clientAddress, protocolVersion }, deps, nowMs);
  }

  const b = req.base;
  const requestTimeMs = msFromFiletime(b.requestTime);
  const obs: ClientObservation = {
    applicationId: b.applicationId,
    kmsCountedId: b.kmsCountedId,
    activationId: b.activationId,
    clientMachineId: b.clientMachineId,
    previousClientMachineId: b.previousClientMachineId,
    workstationName: b.workstationName,
    requiredClientCount: b.requiredClientCount,
    licenseStatus: b.licenseStatus,
    vmInfo: b.vmInfo,
    protocolVersion: req.version,
    clientAddress,
    requestTimeMs,
  };
  const described = describeRequest(req, requestTimeMs, clientAddress, deps.catalog);

  // §7.1 step 4 (C23): the received unsigned value itself, no arithmetic that could wrap.
  const required = b.requiredClientCount >>> 0;
  if (required > MAX_REQUIRED_CLIENT_COUNT) {
    return refuse(
      'KMS_ERR_KMS_POLICY_RANGE',
      `RequiredClientCount ${required} is above ${MAX_REQUIRED_CLIENT_COUNT}.`,
      obs,
      described,
      deps,
      nowMs,
    );
  }

  // §7.1 step 5 (C24): ±4 h by default, inclusive.
  if (deps.settings.checkRequestTime) {
    const skewMs = requestTimeMs - nowMs;
    if (Math.abs(skewMs) > deps.settings.maxClockSkewMinutes * 60_000) {
      const detail =
        `The client's clock is ${formatDuration(Math.abs(skewMs))} ${skewMs > 0 ? 'ahead of' : 'behind'} the host's ` +
        `(at most ${formatDuration(deps.settings.maxClockSkewMinutes * 60_000)} is accepted).`;
      return refuse('KMS_ERR_KMS_TIME_SKEW', detail, obs, described, deps, nowMs);
    }
  }

  // §7.1 step 6 (C25).
  const decision = deps.policy.decide(b.applicationId, b.kmsCountedId);
  if (!decision.ok) {
    return refuse(
      decision.code,
      policyDetail(decision.code, decision.group, b.kmsCountedId, described.applicationName ?? ''),
      obs,
      described,
      deps,
      nowMs,
    );
  }

  // §7.1 step 7, §7.2: count, then answer with the ePID of the chosen host-key group (§7.4).
  // The ePID first: if it cannot be formed (a configuration fault), nothing has been counted.
  const epid = deps.identity.epidFor(decision.hostKeyGroup.id);
  if (!deps.store.acceptsActivation(obs)) {
    const cap = deps.store.refusalCode?.() === 'KMS_ERR_STORE_MACHINE_CAP';
    return refuse(
      cap ? 'KMS_ERR_STORE_MACHINE_CAP' : 'KMS_ERR_STORE_BACKLOG_FULL',
      cap
        ? 'The host stores store.maxMachines machines, all counted in the last 30 days, and takes no new one.'
        : 'The activation database cannot be written and holds as many waiting machines as it may.',
      obs,
      described,
      deps,
      nowMs,
    );
  }
  const snapshot = deps.store.recordActivation(obs, nowMs, COUNT_WINDOW_MS);
  const currentCount = reportedCount(snapshot);
  const base: KmsResponseBase = {
    majorVersion: b.majorVersion,
    minorVersion: b.minorVersion,
    epid,
    clientMachineId: b.clientMachineId,
    clientTime: b.requestTime, // an echo: the host never sends its own clock (§7.6)
    currentCount,
    activationInterval: deps.settings.activationIntervalMinutes,
    renewalInterval: deps.settings.renewalIntervalMinutes,
  };
  const response = encodeKmsResponse(req, base, { hwid: deps.identity.hwid, randomBytes: deps.randomBytes });

  const threshold = effectiveRequiredCount(b.requiredClientCount);
  const below = currentCount < threshold;
  // The described request becomes the served outcome in place: one object per request, its shape
  // (every key, in one order, from one literal) the same for every request, so that every later
  // reader (store, log line, metrics) keeps its fast path. A spread of it into a new object took
  // V8's slow path and cost the server about 30 µs per keep-alive activation (A/B, two clients).
  const outcome = described;
  outcome.result = below ? 'below-threshold' : 'activated';
  outcome.productGroupName = decision.group.name;
  outcome.currentCount = currentCount;
  outcome.epid = epid;
  if (below) outcome.explanation = belowThresholdText(currentCount, threshold, decision.group, deps.settings.activationIntervalMinutes);
  // One integer comparison per request; the hook runs only for the odd ones.
  if (threshold !== decision.group.nCountPolicy) deps.onUnusualThreshold?.(outcome, decision.group.nCountPolicy);
  return { response, hresult: 0, outcome };
}

/** A served outcome while it is being made (described first, the answer's fields set last). */
type Described = { -readonly [K in keyof ActivationOutcome]: ActivationOutcome[K] };
/** What a refusal reports of the request: as much as was decoded. */
type RequestFacts = Omit<ActivationOutcome, 'result' | 'hresult'>;

function refuse(
  code: ErrorCode,
  detail: string,
  obs: Partial<ClientObservation>,
  described: RequestFacts,
  deps: ActivationDeps,
  nowMs: number,
): ActivationResult {
  const spec = specOf(code);
  const hresult = spec.hresult ?? HRESULT.INVALID_DATA;
  // Refusals are recorded for the event log and never counted (§7.1, C30).
  deps.store.recordRefusal(obs, hresult, code, nowMs);
  const d = described;
  // One literal (fields the request did not get to are undefined).
  const outcome: ActivationOutcome = {
    clientAddress: d.clientAddress,
    protocolVersion: d.protocolVersion,
    clientMachineId: d.clientMachineId,
    previousClientMachineId: d.previousClientMachineId,
    workstationName: d.workstationName,
    applicationId: d.applicationId,
    applicationName: d.applicationName,
    kmsCountedId: d.kmsCountedId,
    productGroupName: d.productGroupName,
    activationId: d.activationId,
    skuName: d.skuName,
    requiredClientCount: d.requiredClientCount,
    requestTimeMs: d.requestTimeMs,
    vm: d.vm,
    licenseStatus: d.licenseStatus,
    licenseStatusName: d.licenseStatusName,
    bindingExpirationMinutes: d.bindingExpirationMinutes,
    result: 'refused',
    hresult,
    code,
    explanation: `${detail} ${spec.explain}`,
  };
  return { hresult, outcome };
}

/**
 * The outcome fields every decoded request has, with names from the catalogue (the 12290 fields),
 * in the shape of a served outcome whose answer is not set yet.
 */
function describeRequest(req: DecodedKmsRequest, requestTimeMs: number, clientAddress: string, catalog: Catalog): Described {
  const b = req.base;
  return {
    clientAddress,
    protocolVersion: req.version,
    clientMachineId: b.clientMachineId,
    previousClientMachineId: b.previousClientMachineId,
    workstationName: b.workstationName,
    applicationId: b.applicationId,
    applicationName: catalog.describeApplication(b.applicationId),
    kmsCountedId: b.kmsCountedId,
    productGroupName: catalog.describeKmsGroup(b.kmsCountedId),
    activationId: b.activationId,
    skuName: catalog.describeSku(b.activationId, b.kmsCountedId),
    requiredClientCount: b.requiredClientCount >>> 0,
    requestTimeMs,
    vm: b.vmInfo !== 0, // §7.6: informational; VMs count like physical machines
    licenseStatus: b.licenseStatus,
    licenseStatusName: licenseStatusName(b.licenseStatus),
    bindingExpirationMinutes: b.bindingExpiration,
    result: 'activated',
    hresult: 0,
    currentCount: undefined,
    epid: undefined,
  };
}

function policyDetail(code: ErrorCode, group: KmsGroup | undefined, kmsCountedId: string, applicationName: string): string {
  if (group === undefined) return `KMS group ${kmsCountedId} is not in the product catalogue.`;
  switch (code) {
    case 'KMS_ERR_KMS_WRONG_APPLICATION':
      return `${group.name} belongs to ${group.application.name}, but the client asked as ${applicationName}.`;
    case 'KMS_ERR_KMS_RETAIL_GROUP':
      return `${group.name} is a retail product group.`;
    case 'KMS_ERR_KMS_PREVIEW_GROUP':
      return `${group.name} is a pre-release product group.`;
    default: {
      const by = group.activatedByHostKeyGroups.map((h) => `"${h.name}"`).join(', ');
      return by === ''
        ? `No host-key group of the catalogue activates ${group.name}.`
        : `${group.name} is activated by host-key groups ${by}, none of them configured.`;
    }
  }
}

function belowThresholdText(count: number, threshold: number, group: KmsGroup, activationIntervalMinutes: number): string {
  const more = threshold - count;
  return (
    `The host counts ${count} ${count === 1 ? 'machine' : 'machines'} for ${group.application.name} in the last 30 days; ` +
    `${group.name} needs ${threshold}, so ${more} more ${more === 1 ? 'machine' : 'machines'} must contact the host before it activates. ` +
    `Until then the client reports 0xC004F038 and retries every ${activationIntervalMinutes} minutes.`
  );
}

/** The version of a message the codec refused, when its first 4 bytes name a valid one. */
function peekVersion(message: Buffer): number | undefined {
  if (message.length < 4 || message.readUInt16LE(0) !== 0) return undefined;
  const major = message.readUInt16LE(2);
  return major >= 4 && major <= 6 ? major : undefined;
}

function formatDuration(ms: number): string {
  const totalMinutes = Math.floor(ms / 60_000);
  const days = Math.floor(totalMinutes / 1440);
  const hours = Math.floor((totalMinutes % 1440) / 60);
  const minutes = totalMinutes % 60;
  const parts = [days > 0 ? `${days} d` : '', hours > 0 ? `${hours} h` : '', minutes > 0 || totalMinutes === 0 ? `${minutes} min` : ''];
  return parts.filter((p) => p !== '').join(' ');
}
