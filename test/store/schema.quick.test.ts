// Opening refuses files that are not ours (random bytes, damaged pages, another program's
// database, a newer schema) without writing a byte to them, and upgrades older schemas.

import t from 'tap';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../../src/errors';
import { SqliteStore } from '../../src/store/sqlite-store';
import { connectionOf } from '../../src/store/testing';
import { APPLICATION_ID, applyMigrations, SCHEMA_VERSION } from '../../src/store/schema';
import { databaseFile, DATABASE_FILE_NAME } from '../../src/store/data-dir';
import { cmid, obs, tempDataDir, WINDOW } from './observations';
import { WINDOWS_APP } from '../ids';
import { STORE_TUNING } from '../../src/config/defaults';

const T0 = Date.now();

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Opening must fail with `code`, name the file, and leave the file byte-for-byte as it was. */
function refusesUntouched(t: Tap, dir: string, code: string, readonly = false): void {
  const file = databaseFile(dir);
  const before = sha256(file);
  const size = fs.statSync(file).size;
  const err = t.throws(() => SqliteStore.open(dir, { readonly })) as unknown;
  t.ok(err instanceof StoreError, 'a StoreError');
  t.equal((err as StoreError).code, code);
  t.equal((err as StoreError).details['file'], file, 'the error names the file');
  t.equal(sha256(file), before, 'the file is unchanged');
  t.equal(fs.statSync(file).size, size);
}
type Tap = Pick<typeof t, 'throws' | 'ok' | 'equal'>;

t.test('a file of random bytes is refused as corrupt, read-write and read-only', async (t) => {
  const dir = tempDataDir(t);
  fs.writeFileSync(databaseFile(dir), crypto.randomBytes(8192));
  refusesUntouched(t, dir, 'KMS_ERR_STORE_CORRUPT');
  refusesUntouched(t, dir, 'KMS_ERR_STORE_CORRUPT', true);
  t.same(fs.readdirSync(dir), [DATABASE_FILE_NAME], 'no -wal or -shm was created next to it');
});

t.test('a file shorter than a SQLite header is refused as corrupt', async (t) => {
  const dir = tempDataDir(t);
  fs.writeFileSync(databaseFile(dir), 'SQLite format 3\0');
  refusesUntouched(t, dir, 'KMS_ERR_STORE_CORRUPT');
});

t.test('our own database with damaged pages is refused as corrupt', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, {});
  for (let i = 0; i < 3000; i++) store.recordActivation(obs(i), T0 + i, WINDOW);
  store.close();
  const file = databaseFile(dir);
  const fd = fs.openSync(file, 'r+');
  // Keep page 1 (header and schema) intact, scribble over the b-tree pages after it.
  fs.writeSync(fd, crypto.randomBytes(4096 * 8), 0, 4096 * 8, 4096 * 2);
  fs.closeSync(fd);
  refusesUntouched(t, dir, 'KMS_ERR_STORE_CORRUPT');
});

t.test("another program's SQLite database is refused as foreign", async (t) => {
  const dir = tempDataDir(t);
  const other = new Database(databaseFile(dir));
  other.exec("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos (name) VALUES ('x')");
  other.close();
  refusesUntouched(t, dir, 'KMS_ERR_STORE_FOREIGN');
  refusesUntouched(t, dir, 'KMS_ERR_STORE_FOREIGN', true);
});

t.test('a database marked by another application id is refused even when empty', async (t) => {
  const dir = tempDataDir(t);
  const other = new Database(databaseFile(dir));
  other.pragma('application_id = 1598903374'); // Fossil's marker
  other.close();
  refusesUntouched(t, dir, 'KMS_ERR_STORE_FOREIGN');
});

t.test('a schema newer than this build is refused', async (t) => {
  const dir = tempDataDir(t);
  SqliteStore.open(dir, {}).close();
  const raw = new Database(databaseFile(dir));
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();
  refusesUntouched(t, dir, 'KMS_ERR_STORE_SCHEMA_NEWER');
  refusesUntouched(t, dir, 'KMS_ERR_STORE_SCHEMA_NEWER', true);
});

t.test('an empty file, or none, becomes a new marked database', async (t) => {
  const dir = tempDataDir(t);
  fs.writeFileSync(databaseFile(dir), '');
  SqliteStore.open(dir, {}).close();
  const nested = path.join(tempDataDir(t), 'state', 'kms-appliance');
  SqliteStore.open(nested, {}).close();
  for (const d of [dir, nested]) {
    const db = new Database(databaseFile(d), { readonly: true });
    t.equal(db.pragma('application_id', { simple: true }), APPLICATION_ID);
    t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    db.close();
  }
});

t.test('read-only opening needs an existing, current database', async (t) => {
  const dir = tempDataDir(t);
  const err = t.throws(() => SqliteStore.open(dir, { readonly: true })) as StoreError;
  t.equal(err.code, 'KMS_ERR_STORE_OPEN');
  t.same(fs.readdirSync(dir), [], 'nothing was created');
  const raw = new Database(databaseFile(dir));
  applyMigrations(raw, 1);
  raw.close();
  const old = t.throws(() => SqliteStore.open(dir, { readonly: true })) as StoreError;
  t.equal(old.code, 'KMS_ERR_STORE_OPEN');
  t.equal(old.details['version'], 1);
});

t.test('a version 1 database is migrated at start-up and keeps its machines', async (t) => {
  const dir = tempDataDir(t);
  const raw = new Database(databaseFile(dir));
  applyMigrations(raw, 1);
  raw
    .prepare(
      `INSERT INTO clients (application, cmid, first_seen_ms, last_seen_ms, last_counted_ms, workstation, requests, required_count)
     VALUES (?, ?, ?, ?, ?, 'old-pc', 4, 25)`,
    )
    .run(WINDOWS_APP, cmid(1), T0 - 1000, T0 - 1000, T0 - 1000);
  raw.prepare('INSERT INTO app_required VALUES (?, 25, ?)').run(WINDOWS_APP, T0 - 1000);
  raw.prepare("INSERT INTO settings VALUES ('hwid', '0011223344556677')").run();
  t.equal(raw.pragma('user_version', { simple: true }), 1);
  raw.close();

  const store = SqliteStore.open(dir, {});
  t.teardown(() => store.close());
  const db = connectionOf(store);
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  t.match(db.prepare('SELECT * FROM clients WHERE cmid = ?').get(cmid(1)), {
    workstation: 'old-pc',
    requests: 4,
    previous_workstation: '',
    workstation_changes: 0,
  });
  t.equal(store.getSetting('hwid'), '0011223344556677');
  const snap = store.recordActivation(obs(2), T0, WINDOW);
  t.same(snap, { activeClients: 2, maxRequiredClientCount: 25 }, 'the migrated machine still counts');
  t.equal(db.prepare('SELECT count(*) FROM events').pluck().get(), 1, 'the new event log works');
});

t.test('reopening a current database does not write to it', async (t) => {
  const dir = tempDataDir(t);
  const store = SqliteStore.open(dir, {});
  store.recordActivation(obs(1), T0, WINDOW);
  store.close();
  const before = sha256(databaseFile(dir));
  SqliteStore.open(dir, { readonly: true }).close();
  t.equal(sha256(databaseFile(dir)), before);
});

t.test('a directory where the database file should be is one clear StoreError, not a stack', async (t) => {
  const dir = tempDataDir(t);
  fs.mkdirSync(databaseFile(dir));
  for (const readonly of [false, true]) {
    const err = t.throws(() => SqliteStore.open(dir, { readonly })) as unknown;
    t.ok(err instanceof StoreError, 'a StoreError');
    t.equal((err as StoreError).code, 'KMS_ERR_STORE_OPEN');
    t.equal((err as StoreError).details['file'], databaseFile(dir), 'it names the path');
    t.match((err as StoreError).message, /not a regular file/);
  }
});

t.test('a new store gets the tuned page size; an existing store keeps its own and goes on working', async (t) => {
  const fresh = tempDataDir(t);
  const store = SqliteStore.open(fresh);
  t.equal(connectionOf(store).pragma('page_size', { simple: true }), STORE_TUNING.pageSizeBytes);
  store.close();

  // A store made by an earlier release, with SQLite's default 4 KiB pages.
  const older = tempDataDir(t);
  const db = new Database(databaseFile(older));
  db.pragma('page_size = 4096');
  db.pragma('journal_mode = WAL');
  applyMigrations(db);
  db.close();
  const reopened = SqliteStore.open(older);
  t.equal(connectionOf(reopened).pragma('page_size', { simple: true }), 4096, 'the page size of a file with tables does not change');
  const snapshot = reopened.recordActivation(obs(1), T0, WINDOW);
  t.equal(snapshot.activeClients, 1);
  reopened.close();
  const again = SqliteStore.open(older);
  t.equal(again.countSince(WINDOWS_APP, T0 - WINDOW, 100), 1, 'the activation is there after reopening');
  again.close();
});
