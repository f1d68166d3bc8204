// The admin password for tests: the real file format and verification, hashed at a small scrypt
// cost so a test pays about a millisecond per login instead of tens of milliseconds (the tests that
// log in a dozen times spent seconds in scrypt). test/admin/password.quick.test.ts checks the real cost.
import { randomBytes, scryptSync } from 'node:crypto';
import { ADMIN_USER, writePasswordRecord } from '../../src/admin/password';

const CHEAP = Object.freeze({ N: 1024, r: 8, p: 1, keyLength: 32 });

export function storeCheapPassword(dataDir: string, password: string): void {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, CHEAP.keyLength, { N: CHEAP.N, r: CHEAP.r, p: CHEAP.p });
  writePasswordRecord(dataDir, {
    user: ADMIN_USER,
    scheme: 'scrypt',
    N: CHEAP.N,
    r: CHEAP.r,
    p: CHEAP.p,
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
  });
}
