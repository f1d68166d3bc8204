// Writing files into a directory someone else may also write to (a share, /tmp): never through a
// symbolic link planted under one of our names, never half a file. Each file is created fresh
// with O_CREAT|O_EXCL|O_NOFOLLOW under a temporary name, then renamed over the final name —
// rename(2) replaces a planted link itself, it does not follow it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface FileToWrite {
  readonly name: string;
  readonly content: Buffer;
}

export function writeFilesSafely(dir: string, files: readonly FileToWrite[]): void {
  fs.mkdirSync(dir, { recursive: true });
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw Object.assign(new Error(`${dir} is not a directory (a symbolic link is refused)`), { code: 'ENOTDIR' });
  for (const f of files) {
    if (f.name !== path.basename(f.name) || f.name.startsWith('.')) throw new Error(`bad file name ${f.name}`);
    const final = path.join(dir, f.name);
    let existing: fs.Stats | undefined;
    try {
      existing = fs.lstatSync(final);
    } catch {
      existing = undefined;
    }
    if (existing?.isSymbolicLink())
      throw Object.assign(new Error(`${final} is a symbolic link; refusing to write through it (remove it first)`), { code: 'ELOOP' });
    if (existing && !existing.isFile()) throw Object.assign(new Error(`${final} exists and is not a regular file`), { code: 'EEXIST' });
    const temp = path.join(dir, `.${f.name}.${crypto.randomBytes(6).toString('hex')}.tmp`);
    const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
    try {
      fs.writeSync(fd, f.content);
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(temp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    fs.renameSync(temp, final);
  }
}
