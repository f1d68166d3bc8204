// Test access to a store's own connection: tests inject faults (PRAGMA max_page_count makes SQLite
// fail with SQLITE_FULL exactly as a full file system does) and read what was written on it.
// Production code never imports this module; the store exposes no connection of its own.
import type Database from 'better-sqlite3';

const connections = new WeakMap<object, Database.Database>();

export function registerConnection(store: object, db: Database.Database): void {
  connections.set(store, db);
}

/** The SQLite connection a store writes through. */
export function connectionOf(store: object): Database.Database {
  const db = connections.get(store);
  if (db === undefined) throw new Error('not a SqliteStore');
  return db;
}
