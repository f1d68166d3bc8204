// `kms-appliance serve` stopped with SIGTERM in the middle of a stream of activations: it exits 0,
// and every activation a client got an answer for is in the database file, closed cleanly (no
// -wal file left, the request journal empty). The store's batch is open across turns and a
// checkpoint cycle may be holding commits when the signal comes; shutdown must end both. (Which of
// them is in progress is up to timing here; test/store/wal-checkpoints.quick.test.ts forces each.)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import { activate } from '../../src/client/kms-client';
import { product } from '../server/appliance-harness';
import { ROOT } from '../paths';
import { lineMatching, within } from '../wait';

const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const CLIENTS = 4;
const STOP_AFTER = 600; // answered activations before SIGTERM

t.test('SIGTERM under load: exit 0, every answered activation stored', { skip: fs.existsSync(MAIN) ? false : 'not built' }, async (t) => {
  const dir = t.testdir({ 'config.yaml': 'kms:\n  listen: ["127.0.0.1:0"]\nadmin:\n  listen: []\n' });
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', path.join(dir, 'config.yaml'), '--data-dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const listening = await lineMatching(child.stdout, /"event":"listening","kms":\["[^"]*:(\d+)"/, 'the listening line');
  const port = Number(listening[1]);
  child.stdout.resume(); // the log lines of the requests: read and dropped, so the pipe never fills

  const win = { ...product('Windows 10/11 Enterprise'), requiredClientCount: 1000 };
  const answered: string[] = [];
  let stopping = false;
  const client = async (): Promise<void> => {
    while (!stopping) {
      try {
        const [r] = await activate({ host: '127.0.0.1', port, product: win, requests: 1, timeoutMs: 5000 });
        if (r?.hresult === 0 && r.verified) answered.push(r.cmid);
      } catch {
        return; // the server went away mid-request: that request was not answered
      }
      if (answered.length >= STOP_AFTER && !stopping) {
        stopping = true;
        child.kill('SIGTERM');
      }
    }
  };
  await within(Promise.all(Array.from({ length: CLIENTS }, client)), 'the clients finishing', 60_000);
  t.equal(await within(exited, 'serve exiting', 20_000), 0, `serve exited 0 ${stderr}`);
  t.notMatch(stderr, /error|Error/, 'nothing on stderr');

  t.notOk(fs.existsSync(path.join(dir, 'kms-appliance.db-wal')), 'the database was closed cleanly (no -wal file left)');
  t.equal(fs.statSync(path.join(dir, 'kms-appliance.journal')).size, 0, 'the request journal is empty: everything is in the file');
  const db = new Database(path.join(dir, 'kms-appliance.db'), { readonly: true });
  t.teardown(() => db.close());
  const has = db.prepare('SELECT 1 FROM clients WHERE cmid = ?').pluck();
  const missing = answered.filter((c) => has.get(c) === undefined);
  t.ok(answered.length >= STOP_AFTER, `${answered.length} activations answered`);
  t.same(missing, [], 'every answered machine is in the file');
});
