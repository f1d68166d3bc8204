// Where the activation database lives when the administrator does not say: a per-user state
// directory, so `npm start` works without root and a systemd unit with StateDirectory= just works.

import * as os from 'node:os';
import * as path from 'node:path';

export const DATABASE_FILE_NAME = 'kms-appliance.db';
export const JOURNAL_FILE_NAME = 'kms-appliance.journal';

const APP_DIR_NAME = 'kms-appliance';

/**
 * The configured directory, else $STATE_DIRECTORY (systemd sets it from StateDirectory=; with
 * several directories it is a colon-separated list and the first is ours), else
 * $XDG_STATE_HOME/kms-appliance, else ~/.local/state/kms-appliance.
 */
export function resolveDataDir(configured: string, env: NodeJS.ProcessEnv): string {
  if (configured.trim() !== '') return path.resolve(configured);
  const stateDirectory = env['STATE_DIRECTORY']?.split(':').find((d) => d !== '');
  if (stateDirectory) return path.resolve(stateDirectory);
  const xdg = env['XDG_STATE_HOME'];
  // The XDG spec says a relative $XDG_STATE_HOME is invalid and must be ignored.
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, APP_DIR_NAME);
  const home = env['HOME'] && path.isAbsolute(env['HOME']) ? env['HOME'] : os.homedir();
  return path.join(home, '.local', 'state', APP_DIR_NAME);
}

export function databaseFile(dataDir: string): string {
  return path.join(dataDir, DATABASE_FILE_NAME);
}

/** The request journal beside the database file (request-journal.ts). */
export function journalFile(databaseFilePath: string): string {
  return path.join(path.dirname(databaseFilePath), JOURNAL_FILE_NAME);
}
