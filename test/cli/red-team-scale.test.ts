// The appliance after years of use: a store far bigger than a branch office (a site that grew, or a
// client inventing machine ids with store.maxMachines raised). Every reader must stay bounded in
// what it prints and holds; shown here at 30,000 machines, with the bounds the commands apply.
import t from 'tap';
import { generateStore, syntheticCmid } from '../../scripts/generate-store';
import { loadCatalog } from '../../src/catalog/load';
import { catalogNames } from '../../src/catalog/names';
import { complianceReport, skusToKeep } from '../../src/store/compliance';
import { command as clients, TABLE_ROWS_DEFAULT, TABLE_ROWS_MAX } from '../../src/cli/commands/clients';
import { captureIo } from './commands/io';
import { tempDataDir } from '../store/observations';
import Database from 'better-sqlite3';
import { CMIDS_PER_NAME_KEPT, DUPLICATES_LISTED, Inventory, type GroupCount } from '../../src/store/inventory';
import { databaseFile } from '../../src/store/data-dir';
import { command as status } from '../../src/cli/commands/status';
import { STORE_TUNING } from '../../src/config/defaults';

const MACHINES = 30_000;

let shared: string | undefined;

/** One store for the tests that only read it: building 30,000 machines is most of this file's time. */
function bigStore(): string {
  if (shared === undefined) {
    shared = tempDataDir(t);
    generateStore(shared, { clients: MACHINES });
  }
  return shared;
}

async function run(args: string[], dir: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await clients.run([...args, '--data-dir', dir], c);
  return { code, out: c.out(), err: c.err() };
}

t.test('clients: the table shows a page and says how many more there are, instead of every machine', async (t) => {
  const dir = bigStore();
  const table = await run([], dir);
  t.equal(table.code, 0, table.err);
  const lines = table.out.trimEnd().split('\n');
  // header + rows + the closing line
  t.equal(lines.length, 1 + TABLE_ROWS_DEFAULT + 1, `at most ${TABLE_ROWS_DEFAULT} machines printed`);
  t.equal(
    lines.at(-1),
    `${TABLE_ROWS_DEFAULT} of ${MACHINES} machines shown; ${MACHINES - TABLE_ROWS_DEFAULT} more: --limit N shows more, ` +
      '--format csv lists every one',
  );

  const ten = await run(['--limit', '10'], dir);
  t.equal(ten.out.trimEnd().split('\n').length, 1 + 10 + 1);
  t.match(ten.out, `10 of ${MACHINES} machines shown; ${MACHINES - 10} more`);
  // The first page of the table is the first rows of the full listing, in its order.
  const csv = await run(['--format', 'csv'], dir);
  const csvCmids = csv.out
    .trimEnd()
    .split('\r\n')
    .slice(1, 11)
    .map((l) => l.split(',')[2]);
  const tableCmids = ten.out
    .trimEnd()
    .split('\n')
    .slice(1, 11)
    .map((l) => l.trim().split(/\s+/).at(-1));
  t.same(tableCmids, csvCmids, 'same order as the export');
  t.equal(csv.out.trimEnd().split('\r\n').length, 1 + MACHINES, 'CSV still lists every machine');

  // A filter by name: the total counts only the matching machines.
  const filtered = await run(['--application', 'Office 2010', '--limit', '5'], dir);
  t.equal(filtered.code, 0, filtered.err);
  const office2010 = (await run(['--application', 'Office 2010', '--format', 'csv'], dir)).out.trimEnd().split('\r\n').length - 1;
  t.ok(office2010 > 5 && office2010 < MACHINES);
  t.match(filtered.out, `5 of ${office2010} machines shown; ${office2010 - 5} more`);

  const json = await run(['--format', 'json', '--limit', '7'], dir);
  t.equal((JSON.parse(json.out) as unknown[]).length, 7, '--limit bounds JSON too when asked');
});

t.test('clients: a table beyond what it can lay out is refused with what to use instead', async (t) => {
  const dir = bigStore();
  for (const bad of ['0', '-3', 'many', String(TABLE_ROWS_MAX + 1)]) {
    const r = await run(['--limit', bad], dir);
    t.equal(r.code, 2, `--limit ${bad}`);
    t.equal(r.out, '');
  }
  const most = await run(['--limit', String(TABLE_ROWS_MAX)], dir);
  t.equal(most.out.trimEnd().split('\n').at(-1)?.startsWith(`${TABLE_ROWS_MAX} of ${MACHINES} machines shown`), true);
  const office2010 = (await run(['--application', 'Office 2010', '--format', 'csv'], dir)).out.trimEnd().split('\r\n').length - 1;
  const small = await run(['--application', 'Office 2010', '--limit', String(office2010 + 1)], dir);
  t.equal(small.code, 0);
  t.equal(small.out.trimEnd().split('\n').at(-1), `${office2010} machines`, 'everything fits: no "more" line');
});

t.test('the read-only connections of the commands keep the server-sized page cache, not 16 MB', async (t) => {
  const dir = bigStore();
  const inventory = Inventory.open(dir);
  t.teardown(() => inventory.close());
  // SQLite sizes its sorter by the cache: with better-sqlite3's default (-16000 KiB) a summary of a
  // million machines grew the process by about 33 MB; negative = KiB.
  const db = inventory['db'];
  t.equal(db.pragma('cache_size', { simple: true }), -STORE_TUNING.cacheKiB);
  t.ok(STORE_TUNING.cacheKiB <= 4096);
  const apps = inventory.summary(Date.now());
  t.equal(apps.length, 3, 'the summary still reads the whole window');
});

/** Every machine of the window switched names once, then all took one name: a client inventing ids and names. */
function inventedIdentities(dir: string, rename: string): void {
  const db = new Database(databaseFile(dir));
  db.exec(`UPDATE clients SET workstation_changes = 1, previous_workstation = 'was-' || workstation, workstation = ${rename}`);
  db.close();
}

t.test('duplicates: a client inventing ids under one name is listed in bounds, with totals', async (t) => {
  const now = Date.now();
  const dir = tempDataDir(t);
  generateStore(dir, { clients: MACHINES, nowMs: now });
  inventedIdentities(dir, "'golden'");
  const inventory = Inventory.open(dir);
  t.teardown(() => inventory.close());
  const inWindow = [...inventory.clients({}, now)].filter((c) => c.lastSeenMs >= now - 30 * 86_400_000).length;
  t.ok(inWindow > DUPLICATES_LISTED, `${inWindow} machines in the window`);

  const d = inventory.duplicates(now);
  t.equal(d.sharedCmids.length, DUPLICATES_LISTED, 'the CMIDs listed stop at the bound');
  t.equal(d.sharedCmidsTotal, inWindow, 'and the total says how many there are');
  t.equal(d.sharedCmids[0]?.workstations[0], 'golden');
  t.match(d.sharedCmids[0]?.workstations[1], /^was-ws-/);
  const perApp = d.sharedWorkstations;
  t.equal(d.sharedWorkstationsTotal, 3, 'one shared name per application');
  t.equal(
    perApp.reduce((n, w) => n + (w.machines ?? w.cmids.length), 0),
    inWindow,
    'every machine counted under its name',
  );
  for (const w of perApp) t.ok(w.cmids.length <= CMIDS_PER_NAME_KEPT, `${w.application}: ${w.cmids.length} CMIDs listed`);

  const c = captureIo();
  t.equal(await status.run(['--data-dir', dir], c), 0, c.err());
  const lines = c.out().split('\n');
  t.ok(lines.length < DUPLICATES_LISTED + 100, `status printed ${lines.length} lines`);
  // status reads its own clock, a moment later: a machine may have left the window meanwhile.
  const more = lines.filter((l) => l.startsWith('  and ')).map((l) => /^ {2}and (\d+) more \(machine ids invented/.exec(l)?.[1]);
  t.equal(more.length, 1, 'one line says how many more');
  t.ok(Math.abs(Number(more[0]) - (inWindow - DUPLICATES_LISTED)) <= 5, `${more[0]} more`);
  t.match(c.out(), new RegExp(`golden \\(Windows\\): \\d+ CMIDs: (\\S+, ){7}\\S+ and \\d+ more`));
});

t.test('duplicates: a name per pair of invented ids lists the first names and counts the rest', async (t) => {
  const now = Date.now();
  const dir = tempDataDir(t);
  generateStore(dir, { clients: MACHINES, nowMs: now });
  // Sixteen CMIDs per name (spread over the applications): thousands of shared names.
  inventedIdentities(dir, "'group-' || substr(cmid, 25, 11)");
  const inventory = Inventory.open(dir);
  t.teardown(() => inventory.close());
  const d = inventory.duplicates(now);
  t.equal(d.sharedWorkstations.length, DUPLICATES_LISTED);
  t.ok(d.sharedWorkstationsTotal > DUPLICATES_LISTED, `${d.sharedWorkstationsTotal} names in all`);
  for (const w of d.sharedWorkstations) t.equal(w.machines, undefined, 'few CMIDs: every one listed');
});

t.test('report: a client inventing Activation IDs does not make a row per machine', async (t) => {
  const now = Date.now();
  const dir = tempDataDir(t);
  generateStore(dir, { clients: MACHINES, nowMs: now });
  const db = new Database(databaseFile(dir));
  // Hosts serve Activation IDs they do not know: every machine of the store under its own.
  db.exec("UPDATE clients SET sku = 'a' || substr(cmid, 2)");
  db.close();
  const catalog = loadCatalog();
  const inventory = Inventory.open(dir, { names: catalogNames(catalog) });
  t.teardown(() => inventory.close());
  const entitlements = [
    { product: 'Office 2021', licenses: 10 },
    { product: 'a' + syntheticCmid(3).slice(1), licenses: 1 },
  ];
  const all = inventory.groupCounts(now);
  const kept = inventory.groupCounts(
    now,
    undefined,
    skusToKeep(entitlements, (id) => catalog.skuById(id) !== undefined),
  );
  t.ok(all.length > 10_000, `${all.length} (group, SKU) rows in all`);
  t.ok(kept.length < 100, `${kept.length} rows held: one per group, and the SKU an entitlement names`);
  const sum = (rows: readonly GroupCount[]): number => rows.reduce((n, r) => n + r.activeMachines, 0);
  t.equal(sum(kept), sum(all), 'every machine still counted');
  t.same(
    complianceReport(kept, entitlements, inventory.nameResolver),
    complianceReport(all, entitlements, inventory.nameResolver),
    'the report is the same',
  );
});
