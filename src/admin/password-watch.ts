// The admin password as the running admin sees it: `admin set-password` works without a restart.
// Each look at the record stats the file and re-reads it only when its identity changed, so a new
// password counts from the very next request, with no timer anyone has to outwait.
import fs from 'node:fs';
import { passwordFile, readPasswordRecord, type PasswordRecord } from './password';

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
 * stamp moved. An unreadable new file keeps the previous password and says so in the log.
 */
export function watchPasswordFile(
  dataDir: string,
  log: PasswordWatchLog,
  read: (dataDir: string) => PasswordRecord | undefined = readPasswordRecord,
): () => PasswordRecord | undefined {
  const file = passwordFile(dataDir);
  let stamp = stampOf(file);
  let record = read(dataDir);
  return () => {
    const now = stampOf(file);
    if (now === stamp) return record;
    stamp = now;
    try {
      record = read(dataDir);
      log.info({ event: 'admin-password', set: record !== undefined }, record ? 'admin password changed' : 'admin password removed');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'admin password file unreadable; the previous password stays');
    }
    return record;
  };
}
