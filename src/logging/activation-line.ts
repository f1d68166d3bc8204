// The per-request log line (event 12290), written once per KMS request. pino's generic
// serializer walks a 25-field object, escapes every key and value one by one and then scans the
// whole line for characters a terminal would act on: 9–13 µs a line, the largest single cost of
// a keep-alive activation outside the store. This module writes the same fields, in the same
// order, with the same JSON escaping, straight into one string; logger.ts wraps it in pino's
// envelope (level, time, pid, msg) and hands it to the logger's own destination.
import { formatHresult } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import { licenseStatusName } from '../protocol/kms/license-status';
import { escapeJsonText } from './json-escape';

const EVENT_SERVED = 'kms-request-served';
const EVENT_REFUSED = 'kms-request-refused';
export const MSG_SERVED = '12290 activation';
export const MSG_REFUSED = '12290 refused';

/**
 * One line per request, fields named after event 12290 ("Error code, Minimum count needed,
 * Client FQDN, Client Machine ID, Client timestamp, VM, License state, Time to state expiration,
 * Activation ID") and event 12289's "Current count", plus what Windows does not log: the client
 * address, protocol version, product names and, for refusals, the registered code and what to do.
 * This object is the definition; activationJsonFields below must write exactly what pino makes of it
 * (test/logging/activation-line.test.ts holds them together).
 */
export function activationFields(o: ActivationOutcome): Record<string, unknown> {
  return {
    event: o.result === 'refused' ? EVENT_REFUSED : EVENT_SERVED,
    eventId: 12290,
    result: o.result,
    errorCode: formatHresult(o.hresult),
    code: o.code,
    clientAddress: o.clientAddress,
    protocolVersion: o.protocolVersion === undefined ? undefined : `${o.protocolVersion}.0`,
    clientMachineId: o.clientMachineId,
    previousClientMachineId: o.previousClientMachineId,
    clientFqdn: o.workstationName,
    clientTimestamp: o.requestTime,
    vm: o.vm,
    licenseState: o.licenseStatus,
    licenseStateName: stateName(o),
    timeToStateExpirationMinutes: o.bindingExpirationMinutes,
    minimumCountNeeded: o.requiredClientCount,
    currentCount: o.currentCount,
    activationId: o.activationId,
    sku: o.skuName,
    kmsCountedId: o.kmsCountedId,
    productGroup: o.productGroupName,
    applicationId: o.applicationId,
    application: o.applicationName,
    epid: o.epid,
    explanation: o.explanation,
  };
}

function stateName(o: ActivationOutcome): string | undefined {
  return o.licenseStatusName ?? (o.licenseStatus === undefined ? undefined : licenseStatusName(o.licenseStatus));
}

/**
 * The fields of activationFields(o) as JSON members, each preceded by a comma (`,"event":…`), in
 * its order; absent fields are left out as JSON.stringify and pino leave out undefined.
 */
export function activationJsonFields(o: ActivationOutcome): string {
  let s = o.result === 'refused' ? `,"event":"${EVENT_REFUSED}","eventId":12290` : `,"event":"${EVENT_SERVED}","eventId":12290`;
  s += `,"result":${text(o.result)},"errorCode":"${formatHresult(o.hresult)}"`;
  if (o.code !== undefined) s += `,"code":${text(o.code)}`;
  s += `,"clientAddress":${text(o.clientAddress)}`;
  if (o.protocolVersion !== undefined) s += `,"protocolVersion":"${o.protocolVersion}.0"`;
  if (o.clientMachineId !== undefined) s += `,"clientMachineId":${text(o.clientMachineId)}`;
  if (o.previousClientMachineId !== undefined) s += `,"previousClientMachineId":${text(o.previousClientMachineId)}`;
  if (o.workstationName !== undefined) s += `,"clientFqdn":${text(o.workstationName)}`;
  if (o.requestTime !== undefined) s += `,"clientTimestamp":${text(o.requestTime)}`;
  if (o.vm !== undefined) s += o.vm ? ',"vm":true' : ',"vm":false';
  if (o.licenseStatus !== undefined) s += `,"licenseState":${num(o.licenseStatus)}`;
  const name = stateName(o);
  if (name !== undefined) s += `,"licenseStateName":${text(name)}`;
  if (o.bindingExpirationMinutes !== undefined) s += `,"timeToStateExpirationMinutes":${num(o.bindingExpirationMinutes)}`;
  if (o.requiredClientCount !== undefined) s += `,"minimumCountNeeded":${num(o.requiredClientCount)}`;
  if (o.currentCount !== undefined) s += `,"currentCount":${num(o.currentCount)}`;
  if (o.activationId !== undefined) s += `,"activationId":${text(o.activationId)}`;
  if (o.skuName !== undefined) s += `,"sku":${text(o.skuName)}`;
  if (o.kmsCountedId !== undefined) s += `,"kmsCountedId":${text(o.kmsCountedId)}`;
  if (o.productGroupName !== undefined) s += `,"productGroup":${text(o.productGroupName)}`;
  if (o.applicationId !== undefined) s += `,"applicationId":${text(o.applicationId)}`;
  if (o.applicationName !== undefined) s += `,"application":${text(o.applicationName)}`;
  if (o.epid !== undefined) s += `,"epid":${text(o.epid)}`;
  if (o.explanation !== undefined) s += `,"explanation":${text(o.explanation)}`;
  return s;
}

/**
 * A JSON string literal. Printable ASCII without `"` or `\` (GUIDs, addresses, catalogue names:
 * nearly every value) is quoted as it is; anything else goes through JSON.stringify and
 * escapeJsonText, the escaping pino's hook gives the whole line (so a workstation name's quotes,
 * controls and bidi overrides come out exactly as before). One difference, on purpose: a lone
 * surrogate is written as its \u escape, where pino wrote it raw and the UTF-8 encoder replaced it.
 */
export function text(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x7f) return escapeJsonText(JSON.stringify(s));
  }
  return `"${s}"`;
}

/** A number as pino writes it: non-finite values (which JSON lacks) as null. */
function num(n: number): string {
  return Number.isFinite(n) ? `${n}` : 'null';
}
