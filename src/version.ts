// The version printed by --version and logged at start-up, read from package.json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPackageRoot } from './package-root';

export const VERSION: string = (JSON.parse(readFileSync(join(findPackageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
