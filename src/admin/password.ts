// The admin password: only a scrypt hash with its salt and parameters is kept, in the data
// directory, so the file tells a thief nothing they can use without a long search per guess.
// The user name is always `admin`: one box, one administrator role.
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readSmallFile } from './small-file';

export const ADMIN_USER = 'admin';
const PASSWORD_FILE = 'admin-password.json';
/** Passwords shorter than this are refused by `admin set-password`. */
export const MIN_PASSWORD_LENGTH = 10;
/** A line longer than this is not a password someone types; refused rather than hashed. */
export const MAX_PASSWORD_LENGTH = 1024;

/** N = 2^15, r = 8, p = 1: ~32 MiB and tens of milliseconds per check, on the thread pool. */
const PARAMS = Object.freeze({ N: 32768, r: 8, p: 1, keyLength: 32 });

export interface PasswordRecord {
  readonly user: string;
  readonly scheme: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: string; // base64
  readonly hash: string; // base64
}

function scryptAsync(password: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, { ...options, maxmem: 256 * (options.N ?? 1) * (options.r ?? 8) + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export async function hashPassword(password: string): Promise<PasswordRecord> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, PARAMS.keyLength, { N: PARAMS.N, r: PARAMS.r, p: PARAMS.p });
  return {
    user: ADMIN_USER,
    scheme: 'scrypt',
    N: PARAMS.N,
    r: PARAMS.r,
    p: PARAMS.p,
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
  };
}

/**
 * A hash that decodes to nothing (empty, or not base64 at all) would be compared with a key derived
 * at length 0, and every password would match: a record is only trusted with a real salt and hash.
 */
const MIN_SALT_BYTES = 1;
const MIN_HASH_BYTES = 16;

function isBase64Of(v: unknown, minBytes: number): v is string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(v)) return false;
  return Buffer.from(v, 'base64').length >= minBytes;
}

/** Parameters scrypt accepts, at a cost a login may take: N a power of two, at most 256 MiB a check. */
function saneParams(N: unknown, r: unknown, p: unknown): boolean {
  if (!Number.isInteger(N) || !Number.isInteger(r) || !Number.isInteger(p)) return false;
  const [n, rr, pp] = [N as number, r as number, p as number];
  return n >= 2 && n <= 2 ** 20 && (n & (n - 1)) === 0 && rr >= 1 && rr <= 32 && pp >= 1 && pp <= 16 && 128 * n * rr <= 256 * 2 ** 20;
}

/** Constant-time comparison of the derived key; the user name is compared the same way. */
export async function verifyPassword(record: PasswordRecord, user: string, password: string): Promise<boolean> {
  const expected = Buffer.from(record.hash, 'base64');
  if (expected.length < MIN_HASH_BYTES) return false;
  const derived = await scryptAsync(password, Buffer.from(record.salt, 'base64'), expected.length, {
    N: record.N,
    r: record.r,
    p: record.p,
  });
  const userOk = timingSafeEqual(Buffer.from(sha256Hex(user)), Buffer.from(sha256Hex(record.user)));
  return timingSafeEqual(derived, expected) && userOk;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Stands for "a password is required but none can be used": no password verifies against it. */
export const LOCKED_PASSWORD: PasswordRecord = Object.freeze({
  user: '\0',
  scheme: 'scrypt',
  N: 2,
  r: 1,
  p: 1,
  salt: '',
  hash: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
});

export function passwordFile(dataDir: string): string {
  return path.join(dataDir, PASSWORD_FILE);
}

/** The stored record, or undefined when no password was set. A damaged file is an error, not "no password". */
export function readPasswordRecord(dataDir: string): PasswordRecord | undefined {
  let text: string;
  try {
    text = readSmallFile(passwordFile(dataDir), 64 * 1024);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const damaged = `${passwordFile(dataDir)} is not a kms-appliance password file; run kms-appliance admin set-password again`;
  let r: Partial<PasswordRecord>;
  try {
    r = JSON.parse(text) as Partial<PasswordRecord>;
  } catch (err) {
    // JSON.parse's own message names neither the file nor the way out.
    throw new Error(`${damaged} (${(err as Error).message})`);
  }
  if (
    r === null ||
    typeof r !== 'object' ||
    r.scheme !== 'scrypt' ||
    (r.user !== undefined && typeof r.user !== 'string') ||
    !isBase64Of(r.salt, MIN_SALT_BYTES) ||
    !isBase64Of(r.hash, MIN_HASH_BYTES) ||
    !saneParams(r.N, r.r, r.p)
  ) {
    throw new Error(damaged);
  }
  return { user: r.user ?? ADMIN_USER, scheme: 'scrypt', N: r.N!, r: r.r!, p: r.p!, salt: r.salt, hash: r.hash };
}

/** Replaces the stored record atomically (0600, through a new file and rename). */
export function writePasswordRecord(dataDir: string, record: PasswordRecord): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const file = passwordFile(dataDir);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(record) + '\n');
    // Run through sudo on an installed box, root would own the file and the service's own user
    // could not read it: the file belongs to whoever owns the data directory.
    if (process.getuid?.() === 0) {
      const owner = fs.statSync(dataDir);
      fs.fchownSync(fd, owner.uid, owner.gid);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
