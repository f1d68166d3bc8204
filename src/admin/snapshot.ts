// Builds the admin page's status document from the store's read side.
import type { Inventory } from '../store/inventory';
import type { AdminSnapshot } from './http-server';
import type { InventoryView } from './page';
import { VERSION } from '../version';

/** The page lists this many machines; `kms-appliance clients` lists all. */
const PAGE_CLIENT_LIMIT = 300;

export function adminSnapshot(
  inventory: Inventory,
  nowMs: number,
  facts: { databaseFile: string; catalog: string; kmsListen: string[]; dnsListen: string[] },
): AdminSnapshot {
  const clients = [];
  let truncated = false;
  for (const c of inventory.clients({}, nowMs)) {
    if (clients.length === PAGE_CLIENT_LIMIT) {
      truncated = true;
      break;
    }
    clients.push(c);
  }
  const view: InventoryView = { summary: inventory.summary(nowMs), duplicates: inventory.duplicates(nowMs), clients, clientsTruncated: truncated, identity: inventory.hostIdentity(), refusals: inventory.refusalsSince(nowMs - 7 * 86_400_000) };
  return { generatedAt: new Date(nowMs).toISOString(), version: VERSION, ...facts, inventory: view };
}
