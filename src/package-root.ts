// The directory holding package.json: found from this module's own location, so the same code
// works from src/ under tap, from dist/src/ after tsc, and from /usr/lib/kms-appliance installed.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from './errors';

/** The directory holding package.json, searched upwards from `start`. */
export function findPackageRoot(start: string = __dirname): string {
  let dir = resolve(start);
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) {
      throw new ConfigError(
        'KMS_ERR_CONFIG_NOT_FOUND',
        `no package.json above ${start}; cannot find the files shipped with kms-appliance`,
        { start },
      );
    }
    dir = up;
  }
}
