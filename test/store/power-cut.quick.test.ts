// A simulated power cut at every fsync of a checkpoint cycle and between groups of requests
// (src/store/wal-checkpoints.ts). What a disk holds after a power cut is each file as of its last
// fsync, plus any of the pages written since, in any order: the kernel writes dirty pages back
// when it likes. So each crash image here is, for the database file and its -wal file, a random
// mix of the fsynced bytes and the bytes now, a page (4 KiB) at a time, with either length, and
// the crossed extremes (one file synced, the other as now). SQLite must open every image as an intact database (integrity_check) holding
// whole transactions in order (the machines present are the first k written, each with its event),
// and k must include everything committed when the -wal file was last fsynced: a power cut loses
// at most the commits since then, as README "Storage" says. The journal is not fsynced (its lines
// are the kernel's once written, like a commit with synchronous=NORMAL), so it plays no part here.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite-store';
import type { SyncIo } from '../../src/store/wal-checkpoints';
import { DATABASE_FILE_NAME } from '../../src/store/data-dir';
import { obs, tempDataDir, WINDOW } from './observations';
import { seededRandom } from '../prng';

const T0 = Date.now() - 86_400_000;
const big = { requiredClientCount: 1000 };
const HOUR = 3_600_000;
/** The page cache's unit: what the kernel writes back, in no particular order. */
const BLOCK = 4096;
const SMALL = 96 * 1024;
const LARGE = 64 * 1024 * 1024;

/** A power cut's view of a file: its bytes at its last fsync, and now. */
interface FileStates {
  readonly synced: Buffer;
  readonly now: Buffer;
  /**
   * The file was cut short since its last fsync (a TRUNCATE checkpoint). On ext4 (data=ordered) the
   * disk then holds either the synced file whole (the cut did not reach the journal) or the cut
   * file with new data or zeros in its pages, never old data inside the new length.
   */
  readonly cut: boolean;
}

const read = (file: string): Buffer => (fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0));

/** fsyncs that record what each file holds for good; `beforeSync` sees the moment just before. */
class DurableFiles implements SyncIo {
  readonly synced = new Map<string, Buffer>();
  walSyncs = 0;
  beforeSync: ((file: string) => void) | undefined;

  constructor(private readonly random: () => number) {}

  remember(file: string): void {
    this.synced.set(file, read(file));
  }

  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    this.sync(fd);
    // Sometimes at once, sometimes after a few turns of requests: commits are held meanwhile.
    if (this.random() < 0.5) setImmediate(() => done(null));
    else setTimeout(() => done(null), Math.floor(this.random() * 4));
  }

  fdatasyncSync(fd: number): void {
    this.sync(fd);
  }

  private sync(fd: number): void {
    const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (fs.statSync(file).isDirectory()) return;
    this.beforeSync?.(file);
    if (file.endsWith('-wal')) this.walSyncs++;
    this.remember(file);
  }
}

/** One image of the file after a power cut: `choice` picks, per page, the synced or the current bytes. */
function mixed(states: FileStates, lengthFromNow: boolean, choice: () => boolean): Buffer {
  const { synced, now } = states;
  if (states.cut && !lengthFromNow) return synced;
  const out = Buffer.alloc(lengthFromNow ? now.length : synced.length);
  for (let at = 0; at < out.length; at += BLOCK) {
    const inSynced = at < synced.length && !states.cut;
    const inNow = at < now.length;
    if (states.cut && !choice()) continue; // a page of the cut file not written back: zeros
    const from = inSynced && inNow ? (choice() ? now : synced) : inNow ? now : synced;
    from.copy(out, at, at, Math.min(at + BLOCK, from.length, out.length));
  }
  return out;
}

interface Image {
  readonly label: string;
  readonly db: Buffer;
  readonly wal: Buffer;
}

function images(db: FileStates, wal: FileStates, random: () => number): Image[] {
  const all = (fromNow: boolean) => () => fromNow;
  const coin = () => random() < 0.5;
  const out: Image[] = [];
  // The two crossed extremes: both files synced, or both as now, are states a reader sees anyway.
  for (const dbNow of [false, true]) {
    for (const walNow of [!dbNow]) {
      out.push({
        label: `db ${dbNow ? 'now' : 'synced'}, wal ${walNow ? 'now' : 'synced'}`,
        db: mixed(db, dbNow, all(dbNow)),
        wal: mixed(wal, walNow, all(walNow)),
      });
    }
  }
  for (let i = 0; i < 2; i++) {
    out.push({ label: 'pages mixed', db: mixed(db, coin(), coin), wal: mixed(wal, coin(), coin) });
  }
  return out;
}

/** The number of machines an image holds, or what is wrong with it. */
function machinesIn(dir: string, image: Image): number | string {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir);
  const file = path.join(dir, DATABASE_FILE_NAME);
  fs.writeFileSync(file, image.db);
  if (image.wal.length > 0) fs.writeFileSync(`${file}-wal`, image.wal);
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') return `integrity_check: ${String(integrity)}`;
    const ids = (db.prepare('SELECT cmid FROM clients').pluck().all() as string[]).map((c) => Number.parseInt(c.slice(-12), 16));
    ids.sort((a, b) => a - b);
    for (let i = 0; i < ids.length; i++) if (ids[i] !== i) return `machine ${i} is missing while ${ids.length} are present`;
    const events = db.prepare('SELECT count(*) FROM events WHERE served = 1').pluck().get() as number;
    if (events !== ids.length) return `${ids.length} machines but ${events} served events`;
    return ids.length;
  } catch (err) {
    return `does not open: ${(err as Error).message}`;
  } finally {
    db?.close();
  }
}

/** `cutAt`: the -wal size a cycle truncates (small: truncated every cycle; large: started again in place). */
async function run(t: Test, seed: number, cutAt: number, over: SqliteStoreOptions): Promise<void> {
  const random = seededRandom(seed);
  const dir = tempDataDir(t);
  const scratch = path.join(tempDataDir(t), 'image');
  const io = new DurableFiles(random);
  const store = SqliteStore.open(dir, {
    backgroundCheckpointMs: HOUR,
    checkpointWrites: 150,
    walTruncateBytes: cutAt,
    syncIo: io,
    ...over,
  });
  t.teardown(() => store.close());
  const dbFile = store.file;
  const walFile = `${dbFile}-wal`;
  // What open left behind counts as on disk (SQLite's own fsyncs made it so).
  io.remember(dbFile);
  io.remember(walFile);
  const counter = new Database(dbFile, { readonly: true });
  t.teardown(() => counter.close());
  const committed = () => counter.prepare('SELECT count(*) FROM clients').pluck().get() as number;

  let answered = 0;
  let mustSurvive = 0;
  let checked = 0;
  let truncated = 0;
  let lastWalLength = 0;
  let walCut = false;
  const problems: string[] = [];
  const crashHere = (where: string): void => {
    const states = (file: string, cut = false): FileStates => ({ synced: io.synced.get(file) ?? Buffer.alloc(0), now: read(file), cut });
    const walNow = read(walFile);
    if (walNow.length < lastWalLength) {
      truncated++;
      walCut = true;
    }
    lastWalLength = walNow.length;
    const wal = states(walFile, walCut);
    for (const image of images(states(dbFile), wal, random)) {
      checked++;
      const found = machinesIn(scratch, image);
      if (typeof found === 'string') problems.push(`${where}, ${image.label}: ${found}`);
      else if (found < mustSurvive || found > answered) {
        problems.push(`${where}, ${image.label}: ${found} machines, expected ${mustSurvive}..${answered}`);
      }
    }
  };
  io.beforeSync = (file) => {
    crashHere(`before the fsync of ${path.basename(file)}`);
    // Everything committed now is in the -wal file this fsync makes durable.
    if (file === walFile) {
      mustSurvive = committed();
      walCut = false;
    }
  };

  for (let group = 0; group < 40; group++) {
    store.beginBatch();
    const n = 1 + Math.floor(random() * 40);
    // Counted as each is recorded: without the journal a cycle can settle (and fsync) mid-group.
    for (let i = 0; i < n; i++, answered++) store.recordActivation(obs(answered, big), T0 + answered, WINDOW);
    store.commitBatch();
    if (group % 2 === 1) crashHere(`after group ${group}`);
    await new Promise((resolve) => (random() < 0.7 ? setImmediate(resolve) : setTimeout(resolve, 2)));
  }

  t.same(problems.slice(0, 5), [], `every crash image opens intact with whole transactions in order (seed ${seed})`);
  t.ok(io.walSyncs >= 5, `checkpoint cycles ran (${io.walSyncs} -wal fsyncs)`);
  t.ok(mustSurvive > 0, 'the images were held to a durable floor');
  if (cutAt < LARGE) t.ok(truncated > 0, 'the -wal file was truncated along the way');
  else t.equal(truncated, 0, 'the WAL was started again in place, never truncated');
  t.ok(checked > 100, `${checked} crash images checked`);
}

t.test('with the request journal: commits across turns, held while a cycle syncs', async (t) => {
  await run(t, 1, SMALL, { journalCommitMs: 1 });
  await run(t, 2, LARGE, { journalCommitMs: 1 });
});

t.test('without the journal: a commit per group, cycles settled on the loop', async (t) => {
  await run(t, 3, SMALL, {});
  await run(t, 4, LARGE, {});
});
