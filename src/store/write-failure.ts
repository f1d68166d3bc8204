// What a failed write means for the administrator: a full disk, a file or directory turned
// read-only, an I/O error, or damage found while serving, each with what to do about it.
import Database from 'better-sqlite3';
import type { ErrorCode } from '../errors';

export function sqliteCodeOf(err: unknown): string {
  if (err instanceof Database.SqliteError) return err.code;
  return (err as { code?: string } | null)?.code ?? 'unknown';
}

/** The SQLite codes of a damaged file (extended codes share the prefix). */
function isCorruption(sqliteCode: string): boolean {
  return sqliteCode.startsWith('SQLITE_CORRUPT') || sqliteCode === 'SQLITE_NOTADB';
}

/** One line for stats and the metrics endpoint. */
export function failureSummary(err: unknown): string {
  return `${sqliteCodeOf(err)}: ${(err as Error | null)?.message ?? String(err)}`;
}

export function describeWriteFailure(err: unknown, file: string): { code: ErrorCode; message: string } {
  const sqliteCode = sqliteCodeOf(err);
  const kept = 'clients are still answered, activations are kept in memory and written when it works again';
  if (isCorruption(sqliteCode)) {
    return {
      code: 'KMS_ERR_STORE_CORRUPT',
      message:
        `the activation database ${file} is damaged (${sqliteCode}, found while serving): clients are still answered ` +
        'and activations kept in memory, but a damaged file does not recover by itself; stop the service, move the file away ' +
        'or restore it from a backup (`sqlite3 FILE ".recover"` may save its rows), and start again',
    };
  }
  const cause =
    sqliteCode === 'SQLITE_FULL'
      ? 'the disk is full; free disk space'
      : sqliteCode.startsWith('SQLITE_READONLY') || sqliteCode === 'SQLITE_PERM' || sqliteCode === 'SQLITE_CANTOPEN'
        ? 'the file or its directory cannot be written; fix its permissions or remount the file system read-write'
        : sqliteCode.startsWith('SQLITE_IOERR')
          ? 'the disk reports I/O errors; check it (dmesg, SMART) and free disk space'
          : 'free disk space or fix its permissions';
  return {
    code: 'KMS_ERR_STORE_WRITE_FAILED',
    message: `cannot write the activation database ${file} (${sqliteCode}): ${kept}; ${cause}`,
  };
}
