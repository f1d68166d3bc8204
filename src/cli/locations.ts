// Where the commands look for the configuration and the database when no option says, so that on
// an installed box `sudo kms-appliance status` reads what the service writes.
//
// The rule (README "Commands"):
//   configuration  --config FILE; else the installed /etc/kms-appliance/config.yaml when it
//                  exists; else the embedded defaults.
//   database       --data-dir DIR; else store.dataDir of that configuration; else
//                  $STATE_DIRECTORY (inside the unit); else the service's StateDirectory
//                  /var/lib/kms-appliance when this program is the installed one
//                  (/usr/lib/kms-appliance) or a database already exists there; else the
//                  per-user $XDG_STATE_HOME/kms-appliance or ~/.local/state/kms-appliance.
// "Installed" is judged from where the program itself lives, and every system path is taken
// relative to that install root, so a copy installed below a staging root (DESTDIR) finds its
// own etc/ and var/ — which is also how the install test checks it.
import fs from 'node:fs';
import path from 'node:path';
import { findPackageRoot } from '../package-root';
import { DATABASE_FILE_NAME, resolveDataDir } from '../store/data-dir';

const SERVICE_NAME = 'kms-appliance';
const INSTALLED_PROGRAM = `/usr/lib/${SERVICE_NAME}`;
export const INSTALLED_CONFIG = `/etc/${SERVICE_NAME}/config.yaml`;
const SERVICE_STATE_DIR = `/var/lib/${SERVICE_NAME}`;

/**
 * The root the program was installed below: '' for /usr/lib/kms-appliance, the staging root for
 * <root>/usr/lib/kms-appliance, undefined when it runs from a checkout (npm start, tap).
 */
function installRoot(packageRoot: string = findPackageRoot()): string | undefined {
  const root = path.resolve(packageRoot);
  if (root === INSTALLED_PROGRAM) return '';
  return root.endsWith(INSTALLED_PROGRAM) ? root.slice(0, -INSTALLED_PROGRAM.length) : undefined;
}

export interface Locations {
  /** The configuration file to read; undefined = the embedded defaults. */
  readonly configFile: string | undefined;
  /** Resolves the data directory once the configuration's store.dataDir is known. */
  dataDir(configured: string): string;
}

export interface LocationInputs {
  readonly config?: string | undefined;
  readonly dataDir?: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** For tests: where the program lives (default: this package's root). */
  readonly packageRoot?: string;
}

export function locate(inputs: LocationInputs): Locations {
  const root = installRoot(inputs.packageRoot);
  // A checkout on a box that also has the service installed still reads the service's files:
  // the admin asked about "the" appliance of this machine.
  const systemRoot = root ?? '';
  const systemConfig = systemRoot + INSTALLED_CONFIG;
  const systemState = systemRoot + SERVICE_STATE_DIR;
  const configFile = inputs.config ?? (exists(systemConfig) ? systemConfig : undefined);
  return {
    configFile,
    dataDir(configured) {
      if (inputs.dataDir !== undefined) return path.resolve(inputs.dataDir);
      if (configured.trim() !== '' || inputs.env['STATE_DIRECTORY']) return resolveDataDir(configured, inputs.env);
      if (root !== undefined || exists(path.join(systemState, DATABASE_FILE_NAME))) return systemState;
      return resolveDataDir('', inputs.env);
    },
  };
}

/** True when the path exists, even if this user may not read it (so the error can say so). */
function exists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES';
  }
}

/** The one line for a user who may not read the service's files (root:kms-appliance, 0640/0750). */
function permissionHint(what: string): string {
  return (
    `${what}: permission denied; run the command with sudo, or join the group ${SERVICE_NAME} ` +
    `(sudo usermod -aG ${SERVICE_NAME} $USER, then log in again)`
  );
}

/** Checks that `file` can be read by this user; a permission problem becomes permissionHint. */
export function checkReadable(file: string): string | undefined {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return permissionHint(file);
    return undefined; // a missing file is reported by whoever opens it, in its own words
  }
}
