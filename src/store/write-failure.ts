// What a failed write means for the administrator: a full disk, a file or directory turned
// read-only, an I/O error, or damage found while serving, each with what to do about it.
import Database from 'better-sqlite3';
import { StoreError, type ErrorCode } from '../errors';

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

/** What to do with a damaged database file, for every message that finds one. */
export const DAMAGED_FILE_ADVICE =
  'stop the service, move the file away or restore it from a backup (`sqlite3 FILE ".recover"` may save its rows), and start again';

/**
 * A SQLite error met while reading an opened database (the inventory commands; damaged pages are
 * found only when a query reaches them) as a StoreError that says what happened and what to do;
 * undefined for anything that is not a SQLite error.
 */
export function readFailure(err: unknown): StoreError | undefined {
  if (!(err instanceof Database.SqliteError)) return undefined;
  const code = err.code;
  if (isCorruption(code)) {
    return new StoreError(
      'KMS_ERR_STORE_CORRUPT',
      `the activation database is damaged (${code}: ${err.message}, found while reading it): ${DAMAGED_FILE_ADVICE}`,
      { sqliteCode: code },
      { cause: err },
    );
  }
  return new StoreError(
    'KMS_ERR_STORE_OPEN',
    `cannot read the activation database (${code}: ${err.message})`,
    { sqliteCode: code },
    { cause: err },
  );
}

export function describeWriteFailure(err: unknown, file: string): { code: ErrorCode; message: string } {
  const sqliteCode = sqliteCodeOf(err);
  const kept = 'clients are still answered, activations are kept in memory and written when it works again';
  if (isCorruption(sqliteCode)) {
    return {
      code: 'KMS_ERR_STORE_CORRUPT',
      message:
        `the activation database ${file} is damaged (${sqliteCode}, found while serving): clients are still answered ` +
        `and activations kept in memory, but a damaged file does not recover by itself; ${DAMAGED_FILE_ADVICE}`,
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
