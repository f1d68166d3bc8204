// The database file format: the marker that makes a file ours, the versioned schema and its
// migrations, and the checks that refuse a corrupt, foreign or newer file before anything is
// written to it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../errors';
import { STORE_TUNING } from '../config/defaults';
import { DAMAGED_FILE_ADVICE } from './write-failure';

/** PRAGMA application_id of every kms-appliance database: "KMSA" as a big-endian u32. */
export const APPLICATION_ID = 0x4b4d5341;

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const HEADER_LENGTH = 100;
const HEADER_USER_VERSION_OFFSET = 60;
const HEADER_APPLICATION_ID_OFFSET = 68;

/** Each entry upgrades the schema from version index to index + 1; never edit a shipped one. */
const MIGRATIONS: readonly string[] = [
  // v1: settings, one row per (application, CMID), and the per-application thresholds seen.
  `
  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE clients (
    application TEXT NOT NULL,
    cmid TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    last_counted_ms INTEGER,                  -- NULL while the machine was only ever refused
    workstation TEXT NOT NULL DEFAULT '',
    sku TEXT NOT NULL DEFAULT '',             -- activation id
    kms_group TEXT NOT NULL DEFAULT '',       -- KMS counted id
    license_status INTEGER NOT NULL DEFAULT 0,
    protocol_version INTEGER NOT NULL DEFAULT 0,
    client_address TEXT NOT NULL DEFAULT '',
    vm INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    last_hresult INTEGER NOT NULL DEFAULT 0,
    required_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (application, cmid)
  ) WITHOUT ROWID;

  -- Counting reads a bounded range of this index (PROTOCOL.md §7.2), never the whole table.
  CREATE INDEX clients_window ON clients (application, last_counted_ms);

  -- At most a handful of rows per application: the window's max RequiredClientCount without a scan.
  CREATE TABLE app_required (
    application TEXT NOT NULL,
    required_count INTEGER NOT NULL,
    last_served_ms INTEGER NOT NULL,
    PRIMARY KEY (application, required_count)
  ) WITHOUT ROWID;
  `,
  // v2: the request event log (event 12290 fields, PROTOCOL.md §7.1) and the evidence for
  // machines cloned without sysprep (one CMID answering under several names or addresses).
  `
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    served INTEGER NOT NULL,
    hresult INTEGER NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    application TEXT NOT NULL DEFAULT '',
    kms_group TEXT NOT NULL DEFAULT '',
    sku TEXT NOT NULL DEFAULT '',
    cmid TEXT NOT NULL DEFAULT '',
    previous_cmid TEXT NOT NULL DEFAULT '',
    workstation TEXT NOT NULL DEFAULT '',
    required_count INTEGER NOT NULL DEFAULT 0,
    license_status INTEGER NOT NULL DEFAULT 0,
    vm INTEGER NOT NULL DEFAULT 0,
    protocol_version INTEGER NOT NULL DEFAULT 0,
    client_address TEXT NOT NULL DEFAULT '',
    request_time_ms INTEGER NOT NULL DEFAULT 0,
    current_count INTEGER NOT NULL DEFAULT 0
  );

  ALTER TABLE clients ADD COLUMN previous_workstation TEXT NOT NULL DEFAULT '';
  ALTER TABLE clients ADD COLUMN workstation_changes INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE clients ADD COLUMN previous_address TEXT NOT NULL DEFAULT '';
  ALTER TABLE clients ADD COLUMN address_changes INTEGER NOT NULL DEFAULT 0;
  `,
  // v3: the fleet outbox (src/store/fleet-outbox.ts): what PostgreSQL acknowledged of each
  // machine, so a change is found by comparison off the request path and sent exactly once.
  `
  CREATE TABLE fleet_sent (
    application TEXT NOT NULL,
    cmid TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (application, cmid)
  ) WITHOUT ROWID;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Bring the schema to `target` inside one transaction: a crash mid-way leaves the old version. */
export function applyMigrations(db: Database.Database, target: number = SCHEMA_VERSION): void {
  const current = (): number => db.pragma('user_version', { simple: true }) as number;
  // An up-to-date file is not written at all on start-up.
  if (current() >= target && db.pragma('application_id', { simple: true }) === APPLICATION_ID) return;
  const migrate = db.transaction(() => {
    const from = current();
    for (let v = from; v < target; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${target}`);
  });
  // IMMEDIATE: two processes starting on one file must not both run the same migration.
  migrate.immediate();
}

interface FileHeader {
  readonly applicationId: number;
  readonly userVersion: number;
}

/**
 * Reads the 100-byte SQLite header without opening the database, so that a file that is not a
 * database at all is refused before SQLite could touch it. undefined = missing or empty file.
 */
function readHeader(file: string): FileHeader | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put where the database should be would otherwise hold the process (the
    // server, or the CLI) until something writes to it; with it, the check below refuses it.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StoreError('KMS_ERR_STORE_OPEN', `cannot read the database ${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  try {
    if (!fs.fstatSync(fd).isFile()) {
      const message = `${file} is not a regular file (a directory, a FIFO?); move it away or point store.dataDir elsewhere`;
      throw new StoreError('KMS_ERR_STORE_OPEN', message, { file });
    }
    const header = Buffer.alloc(HEADER_LENGTH);
    const n = fs.readSync(fd, header, 0, HEADER_LENGTH, 0);
    if (n === 0) return undefined;
    if (n < HEADER_LENGTH || !header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
      throw new StoreError(
        'KMS_ERR_STORE_CORRUPT',
        `${file} is not a SQLite database (damaged or overwritten); it was left untouched: ${DAMAGED_FILE_ADVICE}`,
        {
          file,
        },
      );
    }
    return {
      applicationId: header.readUInt32BE(HEADER_APPLICATION_ID_OFFSET),
      userVersion: header.readUInt32BE(HEADER_USER_VERSION_OFFSET),
    };
  } finally {
    fs.closeSync(fd);
  }
}

const CORRUPT_CODES = new Set([
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_CORRUPT_INDEX',
  'SQLITE_CORRUPT_SEQUENCE',
  'SQLITE_CORRUPT_VTAB',
]);

function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

function openError(file: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const code = sqliteCode(err);
  if (code !== undefined && CORRUPT_CODES.has(code)) {
    return new StoreError(
      'KMS_ERR_STORE_CORRUPT',
      `${file} is damaged (${code}); it was left untouched: ${DAMAGED_FILE_ADVICE}`,
      { file, sqliteCode: code },
      { cause: err },
    );
  }
  return new StoreError(
    'KMS_ERR_STORE_OPEN',
    `cannot open the database ${file}: ${(err as Error).message}${unwritable(file) || full(file)}`,
    { file, sqliteCode: code },
    { cause: err },
  );
}

/** Less free space than this beside a database that failed to open is named as the likely cause. */
const LOW_SPACE_BYTES = 1024 * 1024;

/**
 * A full disk at start: SQLite must size the -shm file (32 KiB) before it reads a page, so the
 * server and the CLI alike fail with a bare "disk I/O error". '' when there is room.
 */
function full(file: string): string {
  try {
    const dir = path.dirname(file);
    const s = fs.statfsSync(dir);
    const free = s.bavail * s.bsize;
    if (free >= LOW_SPACE_BYTES) return '';
    return (
      `; the file system holding ${dir} is full (${free} bytes free), and SQLite needs room for ` +
      `${path.basename(file)}-shm and -wal beside the database even to read it: free disk space`
    );
  } catch {
    return '';
  }
}

/**
 * Why SQLite may not open a file: in WAL mode even a reader creates the -shm file beside it, so a
 * directory on a read-only file system, or owned by someone else, refuses the server and the CLI
 * alike with SQLite's bare "unable to open database file". '' when both can be written.
 */
function unwritable(file: string): string {
  for (const p of [path.dirname(file), file]) {
    try {
      fs.accessSync(p, fs.constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'ENOENT') continue;
      const what = code === 'EROFS' ? 'is on a read-only file system (EROFS)' : `is not writable (${code})`;
      const remedy = code === 'EROFS' ? 'remount it read-write' : 'fix its owner or permissions';
      return (
        `; ${p} ${what}, and SQLite writes ${path.basename(file)}-wal and -shm beside the database even to read it: ` +
        `${remedy} or point store.dataDir elsewhere`
      );
    }
  }
  return '';
}

/** What inspection found; `fresh` = an empty file (or none) that may be initialised. */
interface Inspection {
  readonly fresh: boolean;
  readonly version: number;
}

/**
 * Looks at an existing file through a read-only connection (which cannot write to it) and
 * throws CORRUPT / FOREIGN / SCHEMA_NEWER. `deep` adds PRAGMA quick_check, which reads every page.
 */
function inspect(file: string, deep: boolean): Inspection {
  const header = readHeader(file);
  checkCompanions(file);
  if (header === undefined) return { fresh: true, version: 0 };
  if (header.applicationId !== 0 && header.applicationId !== APPLICATION_ID) {
    throw foreign(file, { applicationId: header.applicationId });
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").get() as { n: number };
    // Header and pragma agree unless a WAL holds newer pages; the pragma is the truth.
    const applicationId = db.pragma('application_id', { simple: true }) as number;
    const version = db.pragma('user_version', { simple: true }) as number;
    if (applicationId !== APPLICATION_ID) {
      // application_id is written in the migration transaction, so our own file never has
      // tables without it: an unmarked file with tables belongs to another program.
      if (tables.n > 0 || applicationId !== 0) throw foreign(file, { applicationId, tables: tables.n });
      return { fresh: true, version: 0 };
    }
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        'KMS_ERR_STORE_SCHEMA_NEWER',
        `${file} has schema version ${version}, newer than this kms-appliance understands (${SCHEMA_VERSION})`,
        { file, version, supported: SCHEMA_VERSION },
      );
    }
    if (deep) {
      const check = db.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') {
        // quick_check lists up to a hundred problems, one a line: the message stays one line.
        const first =
          check
            .split('\n')
            .filter((l) => !l.startsWith('***'))[0]
            ?.slice(0, 200) ?? check;
        throw new StoreError(
          'KMS_ERR_STORE_CORRUPT',
          `${file} is damaged (quick_check: ${first}); it was left untouched: ${DAMAGED_FILE_ADVICE}`,
          { file, check },
        );
      }
    }
    return { fresh: false, version };
  } catch (err) {
    throw openError(file, err);
  } finally {
    db?.close();
  }
}

/**
 * SQLite opens the -wal and -shm files beside the database whatever they are: a FIFO or a
 * directory there lets the server start and then fails every write as an I/O error ("check the
 * disk"), or fails the open with a bare "disk I/O error". Refused here by name instead.
 */
function checkCompanions(file: string): void {
  for (const suffix of ['-wal', '-shm']) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(`${file}${suffix}`);
    } catch {
      continue; // none (or unreadable: SQLite says so)
    }
    if (!stat.isFile()) {
      const message =
        `${file}${suffix} is not a regular file (a directory, a FIFO?); ` + 'move it away (with the service stopped) and start again';
      throw new StoreError('KMS_ERR_STORE_OPEN', message, { file: `${file}${suffix}` });
    }
  }
}

function foreign(file: string, details: Record<string, unknown>): StoreError {
  return new StoreError('KMS_ERR_STORE_FOREIGN', `${file} is not a kms-appliance database; it was left untouched`, { file, ...details });
}

export interface OpenOptions {
  readonly readonly: boolean;
  /** Milliseconds a statement waits for another process's lock before failing. */
  readonly busyTimeoutMs: number;
}

/**
 * Opens (creating or migrating when writable) the database file after inspection. A read-only
 * open never creates or migrates: it needs a file at the current schema version.
 */
export function openDatabase(file: string, options: OpenOptions): Database.Database {
  const found = inspect(file, !options.readonly);
  if (options.readonly) {
    if (found.fresh) {
      throw new StoreError('KMS_ERR_STORE_OPEN', `no kms-appliance database at ${file} (has the server run with this --data-dir?)`, {
        file,
      });
    }
    if (found.version < SCHEMA_VERSION) {
      throw new StoreError(
        'KMS_ERR_STORE_OPEN',
        `${file} has schema version ${found.version}; start the server once to upgrade it to ${SCHEMA_VERSION}`,
        { file, version: found.version },
      );
    }
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: options.readonly });
    db.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
    if (!options.readonly) {
      // Takes effect only while the file has no tables yet, so it must come before WAL mode.
      db.pragma(`page_size = ${STORE_TUNING.pageSizeBytes}`);
      // WAL: readers (the CLI, the admin page) never block the writer and vice versa, and a
      // commit appends to the -wal file instead of rewriting pages in place.
      db.pragma('journal_mode = WAL');
      // synchronous=NORMAL in WAL mode: a commit is complete once its frames are written to the
      // -wal file (write(2) into the OS page cache); fsync happens only at checkpoints. A killed
      // process (kill -9, OOM, crash) loses nothing that was committed, because the kernel still
      // writes the page cache out. A power cut or kernel panic may lose the last transactions
      // since the previous checkpoint, but never corrupts the file: SQLite ignores WAL frames
      // whose checksums do not match. FULL would fsync every commit, a multi-millisecond cost per
      // activation on SD cards and cheap disks, for a window of seconds that clients re-send anyway
      // (an unactivated client retries every activation interval).
      db.pragma('synchronous = NORMAL');
      // After a burst (or a long reader holding back checkpoints) the -wal file is cut back to
      // this size instead of keeping its peak size forever.
      db.pragma('journal_size_limit = 67108864'); // 64 MiB
      db.pragma(`cache_size = -${STORE_TUNING.cacheKiB}`);
      applyMigrations(db);
    }
    return db;
  } catch (err) {
    db?.close();
    throw openError(file, err);
  }
}
