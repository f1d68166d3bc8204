// What the read-only commands (status, clients, report) share: the common options, finding and
// loading the configuration and the catalogue, opening the database read-only, and turning
// failures into one-line messages with the right exit code (via defineCommand).

import type { AppConfig } from '../config/defaults';
import { loadConfig } from '../config/load';
import { loadCatalog } from '../catalog/load';
import type { Catalog } from '../catalog/catalog';
import { catalogNames } from '../catalog/names';
import { StoreError } from '../errors';
import { databaseFile } from '../store/data-dir';
import { Inventory } from '../store/inventory';
import { CommandExit, EXIT, type CommandIo } from './command';
import { checkReadable, locate } from './locations';

/** Option definitions every inventory command accepts. */
export const COMMON_OPTIONS = {
  'data-dir': { type: 'string', short: 'd' },
  config: { type: 'string', short: 'c' },
} as const;

export const COMMON_HELP = `  -d, --data-dir DIR  Where the database lives (default: store.dataDir; on an installed box the
                      service's /var/lib/kms-appliance; else ~/.local/state/kms-appliance).
  -c, --config FILE   Configuration file, for store.dataDir, catalog.file and entitlements
                      (default: /etc/kms-appliance/config.yaml when it exists).
  -f, --format FORMAT table (default), json or csv; --json is short for --format json.
  -h, --help          Show this help.`;

export interface Opened {
  readonly inventory: Inventory;
  readonly config: AppConfig;
  readonly catalog: Catalog;
}

/** The configuration (installed one by default) and its catalogue; ConfigError on a problem. */
export interface Settings {
  readonly config: AppConfig;
  readonly catalog: Catalog;
  readonly dataDir: string;
  readonly configFile: string | undefined;
}

export function loadSettings(values: { config?: string | undefined; 'data-dir'?: string | undefined }, io: CommandIo): Settings {
  const where = locate({ config: values.config, dataDir: values['data-dir'], env: io.env });
  const unreadable = where.configFile === undefined ? undefined : checkReadable(where.configFile);
  if (unreadable) {
    io.stderr.write(`kms-appliance: ${unreadable}\n`);
    throw new CommandExit(EXIT.FAILURE);
  }
  const config = loadConfig(where.configFile);
  const catalog = loadCatalog(config.catalog.file === '' ? undefined : config.catalog.file);
  return { config, catalog, dataDir: where.dataDir(config.store.dataDir), configFile: where.configFile };
}

/**
 * Loads configuration and catalogue and opens the database read-only. Configuration problems
 * exit 2 (like every command), an unusable or unreadable database exits 1; both with one line.
 */
export function openInventory(
  values: { config?: string | undefined; 'data-dir'?: string | undefined },
  io: CommandIo,
  settings: Settings = loadSettings(values, io),
): Opened {
  const { config, catalog, dataDir } = settings;
  const file = databaseFile(dataDir);
  const unreadable = checkReadable(file) ?? checkReadable(dataDir);
  if (unreadable) {
    io.stderr.write(`kms-appliance: ${unreadable}\n`);
    throw new CommandExit(EXIT.FAILURE);
  }
  try {
    return { inventory: Inventory.open(dataDir, { names: catalogNames(catalog) }), config, catalog };
  } catch (err) {
    // SQLite's "unable to open database file" after our check: the -shm/-wal files or the
    // directory deny this user what a reader needs.
    if (err instanceof StoreError && /unable to open|readonly|permission/i.test(err.message) && process.getuid?.() !== 0) {
      io.stderr.write(`kms-appliance: ${err.message}; run the command with sudo, or join the group kms-appliance\n`);
      throw new CommandExit(EXIT.FAILURE);
    }
    throw err;
  }
}
