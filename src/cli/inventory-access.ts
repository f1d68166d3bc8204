// What the read-only commands (status, clients, report) share: the common options, loading the
// configuration and the catalogue, opening the database read-only, and turning failures into
// one-line messages with the right exit code.

import type { AppConfig } from '../config/defaults';
import { loadConfig } from '../config/load';
import { loadCatalog } from '../catalog/load';
import type { Catalog } from '../catalog/catalog';
import { catalogNames } from '../catalog/names';
import { KmsError, StoreError } from '../errors';
import { resolveDataDir } from '../store/data-dir';
import { Inventory } from '../store/inventory';
import { EXIT, type CommandIo } from './command';

/** parseArgs option definitions every inventory command accepts. */
export const COMMON_OPTIONS = {
  'data-dir': { type: 'string', short: 'd' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const COMMON_HELP = `  -d, --data-dir DIR  Where the database lives (default: store.dataDir, else $STATE_DIRECTORY,
                      else $XDG_STATE_HOME/kms-appliance, else ~/.local/state/kms-appliance).
  -c, --config FILE   Configuration file (for store.dataDir, catalog.file and entitlements).
  -h, --help          Show this help.`;

export interface Opened {
  readonly inventory: Inventory;
  readonly config: AppConfig;
  readonly catalog: Catalog;
}

/** Thrown to end a command with an exit code after its message was written. */
export class CommandExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}


/**
 * Entitlement names that match no application, KMS group or product of the catalogue: most
 * likely a typo, which would otherwise only show as an entitlement nobody uses.
 */
export function unknownEntitlements(catalog: Catalog, entitlements: AppConfig['entitlements']): string[] {
  const known = new Set<string>();
  for (const app of catalog.applications) {
    known.add(app.id).add(app.name.toLowerCase());
    for (const g of app.kmsGroups) {
      known.add(g.id).add(g.name.toLowerCase());
      for (const s of g.skus) known.add(s.id).add(s.name.toLowerCase());
    }
  }
  return entitlements.map((e) => e.product).filter((p) => !known.has(p.trim().toLowerCase()));
}

/**
 * Loads configuration and catalogue and opens the database read-only. Configuration problems
 * exit 2 (like every command), an unusable database exits 1; both with one line on stderr.
 */
export function openInventory(command: string, values: { 'data-dir'?: string; config?: string }, io: CommandIo): Opened {
  let config: AppConfig;
  let catalog: Catalog;
  try {
    config = loadConfig(values.config);
    catalog = loadCatalog(config.catalog.file === '' ? undefined : config.catalog.file);
  } catch (err) {
    if (!(err instanceof KmsError)) throw err;
    const lines = (err.details['errors'] as string[] | undefined) ?? [err.message];
    for (const line of lines) io.stderr.write(`kms-appliance ${command}: ${line}\n`);
    throw new CommandExit(EXIT.USAGE);
  }
  const dataDir = resolveDataDir(values['data-dir'] ?? config.store.dataDir, io.env);
  try {
    return { inventory: Inventory.open(dataDir, { names: catalogNames(catalog) }), config, catalog };
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    io.stderr.write(`kms-appliance ${command}: ${err.message} [${err.code}]\n`);
    throw new CommandExit(EXIT.FAILURE);
  }
}

/** Runs `body`, mapping CommandExit to its code. */
export async function withExit(body: () => Promise<number> | number): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof CommandExit) return err.exitCode;
    throw err;
  }
}

export type OutputFormat = 'table' | 'json' | 'csv';

export function parseFormat(value: string | undefined, allowed: readonly OutputFormat[]): OutputFormat | undefined {
  const f = (value ?? 'table') as OutputFormat;
  return allowed.includes(f) ? f : undefined;
}
