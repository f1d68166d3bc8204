// The LicenseStatus a client reports in every request (PROTOCOL.md §4.2), in the words
// `slmgr /dlv` uses. A wire enum's names: the CLI, the logs and the host all show the same words.

const LICENSE_STATUS_NAMES: readonly string[] = [
  'unlicensed',
  'licensed',
  'initial grace (OOB)',
  'out-of-tolerance grace',
  'non-genuine grace',
  'notification',
  'extended grace',
];

export function licenseStatusName(status: number): string {
  return LICENSE_STATUS_NAMES[status] ?? `unknown (${status})`;
}
