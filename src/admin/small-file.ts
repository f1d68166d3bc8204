// Reading the admin's own small files (certificate, key, password record): a path that names a
// FIFO or a device would block the event loop, KMS included, in readFileSync until a writer came
// (or read forever from /dev/zero), and these are read while serving (SIGHUP, the next request).
import fs from 'node:fs';

/** Certificates with a long chain are a few tens of KiB; the password record is a line. */
const MAX_SMALL_FILE_BYTES = 1024 * 1024;

/** The text of `file`, which must be a regular file of at most `max` bytes; throws naming the file otherwise. */
export function readSmallFile(file: string, max = MAX_SMALL_FILE_BYTES): string {
  // Non-blocking open: opening a FIFO for reading would wait for a writer.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (st.size > max) throw new Error(`${file} is ${st.size} bytes, more than the ${max} such a file can be`);
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) break;
    }
    if (n > st.size) throw new Error(`${file} grew while it was read; try again`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}
