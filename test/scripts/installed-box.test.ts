// The installed appliance as an admin uses it: scripts/install.sh puts the real built program
// below a staging root (DESTDIR), a database is written where and how the service writes it
// (StateDirectory, UMask=0027), and the installed command reads it with no options at all.
// As root that works; a user outside the group gets one line about sudo or the group; a member
// of the group reads it. (The user switches need root and setpriv; they are skipped otherwise.)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { SqliteStore } from '../../src/store/sqlite-store';
import { obs, WINDOW } from '../store/observations';
import { ROOT } from '../paths';
import { withoutTapRecorder } from '../plain-child';

const REPO = ROOT;
const BUILT = path.join(REPO, 'dist', 'src', 'cli', 'main.js');
const NOBODY = 65534;
const GROUP = 64123; // stands for group kms-appliance, which does not exist on a test machine

const canSwitchUser = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

t.test(
  'install into a staging root, then every command works with no options',
  { skip: fs.existsSync(BUILT) ? false : 'not built (npm run build)' },
  async (t) => {
    const dir = t.testdir({});
    const root = path.join(dir, 'root');
    const install = spawnSync(...withoutTapRecorder('bash', [path.join(REPO, 'scripts', 'install.sh'), '--no-start']), {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DESTDIR: root, NODE: process.execPath },
      encoding: 'utf8',
    });
    t.equal(install.status, 0, install.stderr);
    // Below a staging root the install is owned by whoever ran it; make it look like a real one
    // for the other users: traversable directories, the service's modes.
    for (let d = root; d !== path.dirname(REPO) && d !== '/'; d = path.dirname(d)) fs.chmodSync(d, 0o755);
    const state = path.join(root, 'var/lib/kms-appliance');
    const etc = path.join(root, 'etc/kms-appliance');

    // The service's writes: its own store in its StateDirectory, files 0640 (UMask=0027).
    const now = Date.now();
    const store = SqliteStore.open(state, {});
    for (let i = 1; i <= 3; i++) store.recordActivation(obs(i), now - i * 60_000, WINDOW);
    store.close();
    for (const f of fs.readdirSync(state)) fs.chmodSync(path.join(state, f), 0o640);

    const command = path.join(root, 'usr/lib/kms-appliance/bin/kms-appliance');
    // A clean environment, as after `sudo`: no STATE_DIRECTORY, a HOME without any state.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.join(dir, 'home') };
    const run = (args: string[], prefix: string[] = []) => {
      // `env -u NODE_OPTIONS`: tap's process tracking must not follow the program as another user.
      const argv = [...prefix, 'env', '-u', 'NODE_OPTIONS', command, ...args];
      const r = spawnSync(argv[0]!, argv.slice(1), { env, encoding: 'utf8', cwd: dir });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };

    const status = run(['status']);
    t.equal(status.status, 0, status.stderr);
    t.match(status.stdout, `Database: ${path.join(state, 'kms-appliance.db')} (3 machines known`);
    const clients = run(['clients', '--json']);
    t.equal(clients.status, 0, clients.stderr);
    t.equal((JSON.parse(clients.stdout) as unknown[]).length, 3);
    const report = run(['report']);
    t.equal(report.status, 0, report.stderr);
    t.match(report.stdout, 'No entitlements are configured');
    const check = run(['config', 'check']);
    t.equal(check.status, 0, check.stderr);
    t.equal(check.stdout, `${path.join(etc, 'config.yaml')}: OK\n`, 'config check reads the installed file');
    t.equal(run(['status', '--data-dir', path.join(dir, 'elsewhere')]).status, 1, '--data-dir still overrides');

    t.test('users outside and inside the group', { skip: canSwitchUser ? false : 'needs root and setpriv' }, async (t) => {
      // As installed: root:kms-appliance, config 0640 in a 0750 directory, state 0750.
      for (const p of [etc, path.join(etc, 'config.yaml'), state, ...fs.readdirSync(state).map((f) => path.join(state, f))])
        fs.chownSync(p, 0, GROUP);
      fs.chmodSync(etc, 0o750);
      fs.chmodSync(state, 0o750);
      const outsider = run(['status'], ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']);
      t.equal(outsider.status, 1);
      t.equal(outsider.stderr.trim().split('\n').length, 1, `one line`);
      t.match(outsider.stderr, /permission denied; run the command with sudo, or join the group kms-appliance/);
      for (const args of [['config', 'check'], ['clients'], ['report']]) {
        const r = run(args, ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']);
        t.equal(r.status, 1, args.join(' '));
        t.match(
          r.stderr,
          /^kms-appliance[^\n]*: permission denied; run the command with sudo, or join the group kms-appliance[^\n]*\n$/,
          args.join(' '),
        );
      }
      const member = run(['status'], ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, `--groups=${GROUP}`]);
      t.equal(member.status, 0, member.stderr);
      t.match(member.stdout, '3 machines known');
      const memberClients = run(['clients', '--format', 'csv'], ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, `--groups=${GROUP}`]);
      t.equal(memberClients.status, 0, memberClients.stderr);
      t.equal(memberClients.stdout.trim().split('\r\n').length, 4);

      // While the service runs: its connection holds the -wal and -shm files (group-readable, not
      // group-writable), and a member still reads the newest count.
      const running = SqliteStore.open(state, {});
      t.teardown(() => running.close());
      running.recordActivation(obs(4), Date.now(), WINDOW);
      for (const f of fs.readdirSync(state)) {
        fs.chownSync(path.join(state, f), 0, GROUP);
        fs.chmodSync(path.join(state, f), 0o640);
      }
      t.ok(fs.existsSync(path.join(state, 'kms-appliance.db-wal')), 'the service has its WAL open');
      const live = run(['status'], ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, `--groups=${GROUP}`]);
      t.equal(live.status, 0, live.stderr);
      t.match(live.stdout, '4 machines known');
    });
  },
);
