// The per-request log line (event 12290), written once per KMS request. pino's generic
// serializer walks a 25-field object, escapes every key and value one by one and then scans the
// whole line for characters a terminal would act on: 9–13 µs a line, the largest single cost of
// a keep-alive activation outside the store. This module writes the same fields, in the same
// order, with the same JSON escaping, straight into one string; logger.ts wraps it in pino's
// envelope (level, time, pid, msg) and hands it to the logger's own destination.
import { formatHresult } from '../errors';
import type { ActivationOutcome } from '../host/outcome';
import { licenseStatusName } from '../protocol/kms/license-status';
import { jsonStringBound, JsonBytes } from '../json-bytes';
import { escapeJsonText } from './json-escape';
import { inDateRange, isoTime, writeIsoTime } from '../host/iso-time';

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
 * (test/logging/activation-line.quick.test.ts holds them together).
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
    clientTimestamp: o.requestTimeMs === undefined ? undefined : isoTime(o.requestTimeMs),
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

const SERVED_HRESULT = formatHresult(0);
const SERVED_EVENT_MEMBERS = `,"event":"${EVENT_SERVED}","eventId":12290`;
const REFUSED_EVENT_MEMBERS = `,"event":"${EVENT_REFUSED}","eventId":12290`;

/** Member names, punctuation, fixed values and numbers of a line: well under this. */
const FIXED_BOUND = 1024;

/** The most bytes writeActivationFields(o) can take. */
export function activationFieldsBound(o: ActivationOutcome): number {
  return (
    FIXED_BOUND +
    bound(o.code) +
    bound(o.clientAddress) +
    bound(o.clientMachineId) +
    bound(o.previousClientMachineId) +
    bound(o.workstationName) +
    bound(stateName(o)) +
    bound(o.activationId) +
    bound(o.skuName) +
    bound(o.kmsCountedId) +
    bound(o.productGroupName) +
    bound(o.applicationId) +
    bound(o.applicationName) +
    bound(o.epid) +
    bound(o.explanation)
  );
}

function bound(s: string | undefined): number {
  return s === undefined ? 0 : jsonStringBound(s);
}

/**
 * The fields of activationFields(o) as JSON members, each preceded by a comma (`,"event":…`), in
 * its order; absent fields are left out as JSON.stringify and pino leave out undefined. Written
 * into the log's batch directly (line-batch.ts); the room is the caller's (activationFieldsBound).
 */
export function writeActivationFields(w: JsonBytes, o: ActivationOutcome): void {
  w.raw(o.result === 'refused' ? REFUSED_EVENT_MEMBERS : SERVED_EVENT_MEMBERS);
  w.raw(',"result":');
  w.string(o.result);
  w.raw(',"errorCode":"');
  w.raw(o.hresult === 0 ? SERVED_HRESULT : formatHresult(o.hresult));
  w.raw('"');
  if (o.code !== undefined) member(w, ',"code":', o.code);
  member(w, ',"clientAddress":', o.clientAddress);
  if (o.protocolVersion !== undefined) {
    w.raw(',"protocolVersion":"');
    w.number(o.protocolVersion);
    w.raw('.0"');
  }
  if (o.clientMachineId !== undefined) member(w, ',"clientMachineId":', o.clientMachineId);
  if (o.previousClientMachineId !== undefined) member(w, ',"previousClientMachineId":', o.previousClientMachineId);
  if (o.workstationName !== undefined) member(w, ',"clientFqdn":', o.workstationName);
  if (o.requestTimeMs !== undefined && inDateRange(o.requestTimeMs)) {
    w.raw(',"clientTimestamp":"');
    writeIsoTime(w, o.requestTimeMs);
    w.raw('"');
  }
  if (o.vm !== undefined) w.raw(o.vm ? ',"vm":true' : ',"vm":false');
  if (o.licenseStatus !== undefined) numberMember(w, ',"licenseState":', o.licenseStatus);
  const name = stateName(o);
  if (name !== undefined) member(w, ',"licenseStateName":', name);
  if (o.bindingExpirationMinutes !== undefined) numberMember(w, ',"timeToStateExpirationMinutes":', o.bindingExpirationMinutes);
  if (o.requiredClientCount !== undefined) numberMember(w, ',"minimumCountNeeded":', o.requiredClientCount);
  if (o.currentCount !== undefined) numberMember(w, ',"currentCount":', o.currentCount);
  productMembers.write(w, o);
  if (o.explanation !== undefined) member(w, ',"explanation":', o.explanation);
}

/** The product's members of a line, from activationId to epid, in their order. */
function writeProductMembers(w: JsonBytes, o: ActivationOutcome): void {
  if (o.activationId !== undefined) member(w, ',"activationId":', o.activationId);
  if (o.skuName !== undefined) member(w, ',"sku":', o.skuName);
  if (o.kmsCountedId !== undefined) member(w, ',"kmsCountedId":', o.kmsCountedId);
  if (o.productGroupName !== undefined) member(w, ',"productGroup":', o.productGroupName);
  if (o.applicationId !== undefined) member(w, ',"applicationId":', o.applicationId);
  if (o.applicationName !== undefined) member(w, ',"application":', o.applicationName);
  if (o.epid !== undefined) member(w, ',"epid":', o.epid);
}

const PRODUCT_SLOTS = 16;

/**
 * The product members' bytes of recent lines, reused when all seven values are the same strings.
 * A site's requests name a handful of products, each with its catalogue names and the host's ePID
 * for its group: half of a line's text, copied in one set() instead of escaped byte by byte.
 * Values a client makes up (unknown SKUs) only cost a miss, and the slots are few and fixed.
 */
class ProductMembers {
  private readonly keys: (string | undefined)[][] = [];
  private readonly bytes: Buffer[] = [];
  private next = 0;

  write(w: JsonBytes, o: ActivationOutcome): void {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (
        k[0] === o.activationId &&
        k[1] === o.skuName &&
        k[2] === o.kmsCountedId &&
        k[3] === o.productGroupName &&
        k[4] === o.applicationId &&
        k[5] === o.applicationName &&
        k[6] === o.epid
      ) {
        const b = this.bytes[i]!;
        w.buf.set(b, w.at);
        w.at += b.length;
        return;
      }
    }
    const start = w.at;
    writeProductMembers(w, o);
    const slot = this.next;
    this.next = (slot + 1) % PRODUCT_SLOTS;
    this.keys[slot] = [o.activationId, o.skuName, o.kmsCountedId, o.productGroupName, o.applicationId, o.applicationName, o.epid];
    this.bytes[slot] = Buffer.from(w.buf.subarray(start, w.at));
  }
}

const productMembers = new ProductMembers();

/** The same members as a string, for a destination that takes strings only (a test's, a child logger's). */
export function activationJsonFields(o: ActivationOutcome): string {
  const w = new JsonBytes(Buffer.allocUnsafe(activationFieldsBound(o)), 0);
  writeActivationFields(w, o);
  return w.buf.toString('utf8', 0, w.at);
}

function member(w: JsonBytes, name: string, value: string): void {
  w.raw(name);
  // escapeJsonText: the escaping pino's hook gives the whole line, so a workstation name's quotes,
  // controls and bidi overrides come out exactly as before. One difference, on purpose: a lone
  // surrogate is written as its \u escape, where pino wrote it raw and the UTF-8 encoder replaced it.
  w.string(value, escapeJsonText);
}

/** A number as pino writes it: non-finite values (which JSON lacks) as null. */
function numberMember(w: JsonBytes, name: string, n: number): void {
  w.raw(name);
  w.number(n);
}
