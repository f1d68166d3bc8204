// Reads the product catalogue from disk: the copy shipped in data/ (found from the package root,
// so it works from src/ under tap and from dist/src/ after tsc) or an updated file the
// administrator names in catalog.file.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors';
import { findPackageRoot } from '../package-root';
import { buildCatalog, type Catalog } from './catalog';

export { findPackageRoot };

const SHIPPED_CATALOG = join('data', 'kms-catalog.json');

export function shippedCatalogPath(): string {
  return join(findPackageRoot(), SHIPPED_CATALOG);
}

/** Loads and validates a catalogue; `file` empty or absent = the shipped one. Errors name the file. */
export function loadCatalog(file?: string): Catalog {
  const path = file !== undefined && file !== '' ? resolve(file) : shippedCatalogPath();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
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
