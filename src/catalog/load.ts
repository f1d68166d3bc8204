// Reads the product catalogue from disk: the copy shipped in data/ (found from the package root,
// so it works from src/ under tap and from dist/src/ after tsc) or an updated file the
// administrator names in catalog.file.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors';
import { findPackageRoot } from '../package-root';
import { buildCatalog, type Catalog } from './catalog';

export { findPackageRoot };

const SHIPPED_CATALOG = join('data', 'kms-catalog.json');
/**
 * The largest catalogue read: 28 times the shipped one (0.15 MB, 0.34 MB of heap once parsed), room
 * for years of new products, while serve's heap (96 MB, README "Memory") survives parsing it.
 */
const MAX_CATALOG_BYTES = 4 * 1024 * 1024;

export function shippedCatalogPath(): string {
  return join(findPackageRoot(), SHIPPED_CATALOG);
}

/** Loads and validates a catalogue; `file` empty or absent = the shipped one. Errors name the file. */
export function loadCatalog(file?: string): Catalog {
  const path = file !== undefined && file !== '' ? resolve(file) : shippedCatalogPath();
  let text: string;
  try {
    text = readBounded(path);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError('KMS_ERR_CONFIG_NOT_FOUND', `product catalogue ${path} does not exist (catalog.file)`, { file: path });
    }
    throw new ConfigError('KMS_ERR_CONFIG_UNREADABLE', `product catalogue ${path} cannot be read: ${(err as Error).message}`, {
      file: path,
      errno: code,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('KMS_ERR_CONFIG_SYNTAX', `product catalogue ${path} is not valid JSON: ${(err as Error).message}`, {
      file: path,
    });
  }
  return buildCatalog(raw, path);
}

/**
 * The file's text, refusing what is not a regular file or is larger than a catalogue can be.
 * Opened non-blocking: a FIFO named by mistake must not hang serve's start waiting for a writer.
 */
function readBounded(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('it is not a regular file');
    if (st.size > MAX_CATALOG_BYTES) {
      throw new ConfigError(
        'KMS_ERR_CONFIG_INVALID',
        `product catalogue ${path} is larger than ${MAX_CATALOG_BYTES / 1024 / 1024} MiB; no catalogue is that large (catalog.file)`,
        { file: path, bytes: st.size },
      );
    }
    // One byte more than stat gave: a file that still fills it grew while being read (or lies
    // about its size), and is not read on without bound.
    const buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n === buf.length) throw new Error('it changed while it was read');
    // A file saved by Windows Notepad as "UTF-8 with BOM" is still the same JSON.
    const bom = n >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
    return buf.toString('utf8', bom, n);
  } finally {
    closeSync(fd);
  }
}
