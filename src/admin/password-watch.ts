// The admin password as the running admin sees it: `admin set-password` works without a restart.
// Each look at the record stats the file and re-reads it only when its identity changed, so a new
// password counts from the very next request, with no timer anyone has to outwait.
import fs from 'node:fs';
import { LOCKED_PASSWORD, passwordFile, readPasswordRecord, type PasswordRecord } from './password';

export interface PasswordWatchLog {
  info(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/**
 * `set-password` replaces the file by rename, so the inode alone tells a new file; size and mtime
 * catch an editor that rewrites it in place. A missing file is its own stamp ("no password").
 */
function stampOf(file: string): string {
  try {
    const s = fs.statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'absent';
  }
}

/**
 * A getter for the current record. One stat per call (microseconds, once per admin request: the
 * admin's connection limit and the login throttle bound the rate); the file is read only when the
 * stamp moved. An unreadable new file keeps the previous password (locks the page when there was
 * none) and says so in the log.
 */
export function watchPasswordFile(
  dataDir: string,
  log: PasswordWatchLog,
  read: (dataDir: string) => PasswordRecord | undefined = readPasswordRecord,
): () => PasswordRecord | undefined {
  const file = passwordFile(dataDir);
  let stamp = stampOf(file);
  let record: PasswordRecord | undefined;
  // A file that is there but cannot be read was meant to require a password: with none before it,
  // the page is locked (never open), and the KMS host starts and serves all the same.
  const lockedMessage = 'admin password file unreadable; the admin page is locked until `kms-appliance admin set-password`';
  try {
    record = read(dataDir);
  } catch (err) {
    record = LOCKED_PASSWORD;
    log.error({ err: (err as Error).message }, lockedMessage);
  }
  return () => {
    const now = stampOf(file);
    if (now === stamp) return record;
    stamp = now;
    try {
      record = read(dataDir);
      log.info({ event: 'admin-password', set: record !== undefined }, record ? 'admin password changed' : 'admin password removed');
    } catch (err) {
      const locked = record === undefined || record === LOCKED_PASSWORD;
      record ??= LOCKED_PASSWORD;
      log.error({ err: (err as Error).message }, locked ? lockedMessage : 'admin password file unreadable; the previous password stays');
    }
    return record;
  };
}
