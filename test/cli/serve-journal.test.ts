// `kms-appliance serve` as a real process under a journald-like stdout: every line carries its
// syslog priority and a string event, and SIGHUP with a hostile configuration file (a FIFO, a
// 2 MiB file, an alias bomb, deep nesting) logs one error and never stops the running server.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { activate } from '../../src/client/kms-client';
import { product } from '../server/appliance-harness';
import { ROOT } from '../paths';
import { nextEvent, until } from '../wait';

const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function parse(text: string): { priority: number; obj: Record<string, unknown> }[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const m = /^<(\d)>(\{.*)$/.exec(l);
      if (!m) throw new Error(`a line without its priority prefix: ${l.slice(0, 120)}`);
      return { priority: Number(m[1]), obj: JSON.parse(m[2]!) as Record<string, unknown> };
    });
}

t.test(
  'journald priorities, and SIGHUP with bad files keeps serving',
  { skip: fs.existsSync(MAIN) ? false : 'not built (npm run build)' },
  async (t) => {
    const dir = t.testdir({});
    const config = path.join(dir, 'config.yaml');
    const good = 'kms:\n  listen: ["127.0.0.1:0"]\nadmin:\n  listen: []\n';
    fs.writeFileSync(config, good);
    const logFile = path.join(dir, 'journal.log');
    const out = fs.openSync(logFile, 'w');
    const st = fs.fstatSync(out);
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--data-dir', dir], {
      stdio: ['ignore', out, 'pipe'],
      env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    });
    fs.closeSync(out);
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const lines = () => parse(fs.readFileSync(logFile, 'utf8'));
    // The journal is a file (journald matches its inode): re-read it whenever it changes, and every
    // 250 ms besides (the serve process flushes its log at that pace) in case a change goes unseen.
    const journal = fs.watch(logFile);
    t.teardown(() => journal.close());
    const written = { on: [{ emitter: journal, events: ['change'] }], everyMs: 250, ms: 20_000 };
    const port = await until(
      () => {
        const l = lines().find((x) => x.obj['event'] === 'listening');
        const kms = l?.obj['kms'] as string[] | undefined;
        return kms?.[0] ? Number(kms[0].split(':').pop()) : undefined;
      },
      'the listening line',
      written,
    );

    const hostile: [string, () => void][] = [
      [
        'FIFO',
        () => {
          fs.rmSync(config);
          execFileSync('mkfifo', [config]);
        },
      ],
      [
        '2 MiB',
        () => {
          fs.rmSync(config);
          fs.writeFileSync(config, `# ${'x'.repeat(2 * 1024 * 1024)}\n`);
        },
      ],
      [
        'alias bomb',
        () =>
          fs.writeFileSync(
            config,
            [
              'a: &a ["x","x","x","x","x","x","x","x","x"]',
              ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(',')}]`),
            ].join('\n') + '\n',
          ),
      ],
      ['deep nesting', () => fs.writeFileSync(config, `kms: ${'['.repeat(100_000)}\n`)],
    ];
    const win = product('Windows 10/11 Enterprise');
    for (const [what, plant] of hostile) {
      plant();
      const before = lines().filter((l) => l.obj['event'] === 'reload').length;
      child.kill('SIGHUP');
      const rejected = await until(
        () => lines().filter((l) => l.obj['event'] === 'reload')[before],
        `${what}: the reload line`,
        written,
      ).catch((err: Error) => {
        err.message += `; the journal ends:\n${fs.readFileSync(logFile, 'utf8').slice(-1500)}`;
        throw err;
      });
      t.equal(rejected.priority, 3, `${what}: an error for journald`);
      t.equal(rejected.obj['level'], 'error');
      t.match((rejected.obj['errors'] as string[])[0], 'config.yaml', `${what}: the line names the file`);
      t.equal(child.exitCode, null, `${what}: still running`);
      const [reply] = await activate({ host: '127.0.0.1', port, product: win, requests: 1, timeoutMs: 5000 });
      t.equal(reply?.hresult, 0, `${what}: a client is still served`);
    }

    child.kill('SIGTERM');
    t.equal(await exited, 0);
    const all = lines();
    for (const l of all) t.equal(typeof l.obj['event'], 'string', `event is a string (${String(l.obj['msg'])})`);
    const priorityOf = { trace: 7, debug: 7, info: 6, warn: 4, error: 3, fatal: 2 } as Record<string, number>;
    for (const l of all) t.equal(l.priority, priorityOf[l.obj['level'] as string], `priority matches level ${String(l.obj['level'])}`);
    t.ok(
      all.some((l) => l.obj['event'] === 'kms-request-served' && l.obj['eventId'] === 12290 && l.priority === 6),
      'a served request is info (6)',
    );
    t.ok(all.some((l) => l.obj['event'] === 'startup' && l.priority === 6));
  },
);

t.test(
  'a start-up configuration error on a journald stderr is one priority-3 line, exit 2',
  { skip: fs.existsSync(MAIN) ? false : 'not built' },
  async (t) => {
    const dir = t.testdir({ 'config.yaml': 'kms:\n  colour: blue\n' });
    const errFile = path.join(dir, 'stderr.log');
    const err = fs.openSync(errFile, 'w');
    const st = fs.fstatSync(err);
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', path.join(dir, 'config.yaml'), '--data-dir', dir], {
      stdio: ['ignore', 'ignore', err],
      env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    });
    fs.closeSync(err);
    const [code] = await nextEvent(child, 'close', 'the serve process exiting on the bad configuration');
    t.equal(code, 2, 'exit 2: the unit does not restart it (RestartPreventExitStatus=2)');
    t.match(fs.readFileSync(errFile, 'utf8'), /^<3>kms-appliance serve: config\.yaml:2: kms\.colour: unknown field/);
  },
);
