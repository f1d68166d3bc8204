// The names of the Windows events our log lines mirror (a KMS host's event log: 12290 per
// request, 12293/12294 for DNS publishing), and the rule that names every other line.

/** Windows event id → our `event` name, for lines logged with a numeric event. */
export const EVENT_NAMES: ReadonlyMap<number, string> = new Map([
  [12290, 'kms-request'],
  [12293, 'dns-publish-failed'],
  [12294, 'dns-published'],
]);

/**
 * A line logged without an event is named after its registered error code
 * (KMS_ERR_DNS_LISTEN → "dns-listen"), so problems of one kind share a name; otherwise "message".
 */
export function eventNameFor(code: unknown): string {
  if (typeof code !== 'string' || !/^KMS_ERR_[A-Z0-9_]+$/.test(code)) return 'message';
  return code.slice('KMS_ERR_'.length).toLowerCase().replace(/_/g, '-');
}
