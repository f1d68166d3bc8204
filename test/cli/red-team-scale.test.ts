// The appliance after years of use: a store far bigger than a branch office (a site that grew, or a
// client inventing machine ids with store.maxMachines raised). Every reader must stay bounded in
// what it prints and holds; shown here at 30,000 machines, with the bounds the commands apply.
import t from 'tap';
import { generateStore } from '../../scripts/generate-store';
import { command as clients, TABLE_ROWS_DEFAULT, TABLE_ROWS_MAX } from '../../src/cli/commands/clients';
import { captureIo } from './commands/io';
import { tempDataDir } from '../store/observations';
import { Inventory } from '../../src/store/inventory';
import { STORE_TUNING } from '../../src/config/defaults';

const MACHINES = 30_000;

function bigStore(t: { teardown(fn: () => void): void }): string {
  const dir = tempDataDir(t);
  generateStore(dir, { clients: MACHINES });
  return dir;
}

async function run(args: string[], dir: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await clients.run([...args, '--data-dir', dir], c);
  return { code, out: c.out(), err: c.err() };
}

t.test('clients: the table shows a page and says how many more there are, instead of every machine', async (t) => {
  const dir = bigStore(t);
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
  const dir = bigStore(t);
  for (const bad of ['0', '-3', 'many', String(TABLE_ROWS_MAX + 1)]) {
    const r = await run(['--limit', bad], dir);
    t.equal(r.code, 2, `--limit ${bad}`);
    t.equal(r.out, '');
  }
  const small = await run(['--limit', String(MACHINES + 5)], dir);
  t.equal(small.code, 0);
  t.equal(small.out.trimEnd().split('\n').at(-1), `${MACHINES} machines`, 'everything fits: no "more" line');
});

t.test('the read-only connections of the commands keep the server-sized page cache, not 16 MB', async (t) => {
  const dir = bigStore(t);
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
