// scripts/install.sh and scripts/uninstall.sh into a temporary root (DESTDIR), with a small fake
// "built app" (KMS_APPLIANCE_SOURCE) and a systemctl that records its calls.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ROOT } from '../paths';
import { withoutTapRecorder } from '../plain-child';

const REPO = ROOT;
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const UNINSTALL = path.join(REPO, 'scripts', 'uninstall.sh');

const FAKE_MAIN = `#!/usr/bin/env node
// Stands in for the real CLI: only what install.sh calls.
const fs = require('node:fs');
const [cmd, sub, file] = process.argv.slice(2);
if (cmd === 'config' && sub === 'defaults') { process.stdout.write('# fake defaults\\nlog:\\n  level: info\\n'); process.exit(0); }
if (cmd === 'config' && sub === 'check') {
  if (fs.readFileSync(file, 'utf8').includes('INVALID')) {
    process.stderr.write('config.yaml:1: INVALID: must not be\\n');
    process.exit(2);
  }
  process.stdout.write(file + ': OK\\n'); process.exit(0);
}
process.exit(1);
`;

/** A built app in version `v`; version 1 has a module that version 2 dropped. */
function writeSource(dir: string, v: number): void {
  fs.rmSync(dir, { recursive: true, force: true });
  const files: Record<string, string> = {
    'dist/src/cli/main.js': FAKE_MAIN,
    'dist/src/version.js': `module.exports = ${v};\n`,
    'dist/test/some.test.js': 'test code, not installed\n',
    'data/kms-catalog.json': '{"applications":[]}\n',
    'package.json': JSON.stringify({
      name: 'kms-appliance',
      version: `0.${v}.0`,
      dependencies: { 'prod-dep': '1' },
      devDependencies: { 'dev-dep': '1' },
    }),
    'package-lock.json': JSON.stringify({
      lockfileVersion: 3,
      packages: {
        '': { name: 'kms-appliance' },
        'node_modules/prod-dep': { version: '1.0.0' },
        'node_modules/prod-dep/node_modules/nested': { version: '1.0.0' },
        'node_modules/dev-dep': { version: '1.0.0', dev: true },
        'node_modules/other-platform': { version: '1.0.0', optional: true },
      },
    }),
    'node_modules/prod-dep/index.js': 'module.exports = 1;\n',
    'node_modules/prod-dep/node_modules/nested/index.js': 'module.exports = 2;\n',
    'node_modules/dev-dep/index.js': 'module.exports = 3;\n',
    'node_modules/.bin/dev-tool': '#!/bin/sh\n',
  };
  if (v === 1) files['dist/src/only-in-v1.js'] = 'old\n';
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
}

interface Setup {
  root: string;
  source: string;
  calls: string;
  run(
    script: string,
    args?: string[],
    extraEnv?: Record<string, string | undefined>,
  ): { status: number | null; stdout: string; stderr: string };
  systemctlCalls(): string[];
}

function setup(t: Test): Setup {
  const dir = t.testdir({});
  const root = path.join(dir, 'root');
  const source = path.join(dir, 'app');
  const calls = path.join(dir, 'systemctl.log');
  const fakeSystemctl = path.join(dir, 'systemctl');
  fs.writeFileSync(fakeSystemctl, `#!/bin/sh\necho "$*" >> '${calls}'\n`, { mode: 0o755 });
  writeSource(source, 1);
  return {
    root,
    source,
    calls,
    run(script, args = [], extraEnv = {}) {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        DESTDIR: root,
        KMS_APPLIANCE_SOURCE: source,
        NODE: process.execPath,
        SYSTEMCTL: fakeSystemctl,
      };
      for (const [k, v] of Object.entries(extraEnv)) {
        if (v === undefined) delete env[k];
        else env[k] = v;
      }
      const [command, argv] = withoutTapRecorder('bash', [script, ...args]);
      const r = spawnSync(command, argv, { env, encoding: 'utf8' });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    systemctlCalls() {
      return fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').trim().split('\n') : [];
    },
  };
}

const mode = (p: string) => fs.statSync(p).mode & 0o7777;

/** Every path below `root` with its mode and, for files, its content, for comparing two runs. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      const rel = path.relative(root, p);
      if (e.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.push(`${rel}/ ${mode(p).toString(8)}`);
        walk(p);
      } else out.push(`${rel} ${mode(p).toString(8)} ${fs.readFileSync(p, 'utf8').length}`);
    }
  };
  walk(root);
  return out;
}

t.test('a fresh install: files, permissions, production dependencies only, enable and start', async (t) => {
  const s = setup(t);
  const r = s.run(INSTALL);
  t.equal(r.status, 0, r.stderr);
  const lib = path.join(s.root, 'usr/lib/kms-appliance');
  for (const f of [
    'dist/src/cli/main.js',
    'dist/src/version.js',
    'data/kms-catalog.json',
    'package.json',
    'package-lock.json',
    'node_modules/prod-dep/index.js',
    'node_modules/prod-dep/node_modules/nested/index.js',
  ]) {
    t.ok(fs.existsSync(path.join(lib, f)), `${f} installed`);
  }
  for (const f of ['node_modules/dev-dep', 'node_modules/.bin', 'node_modules/other-platform', 'dist/test']) {
    t.notOk(fs.existsSync(path.join(lib, f)), `${f} not installed`);
  }
  t.equal(mode(lib), 0o755);
  t.equal(mode(path.join(lib, 'dist/src/cli/main.js')), 0o644);
  t.equal(mode(path.join(lib, 'bin/kms-appliance')), 0o755);
  t.equal(
    fs
      .readFileSync(path.join(lib, 'bin/kms-appliance'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('exec ')),
    `exec ${process.execPath} "$LIB/dist/src/cli/main.js" "$@"`,
  );
  // The wrapper finds the program next to itself: the staged copy runs the staged files.
  const ran = spawnSync(...withoutTapRecorder(path.join(lib, 'bin/kms-appliance'), ['config', 'defaults']), { encoding: 'utf8' });
  t.equal(ran.stdout, '# fake defaults\nlog:\n  level: info\n');
  t.equal(fs.readlinkSync(path.join(s.root, 'usr/bin/kms-appliance')), '/usr/lib/kms-appliance/bin/kms-appliance');

  const unit = path.join(s.root, 'usr/lib/systemd/system/kms-appliance.service');
  t.equal(fs.readFileSync(unit, 'utf8'), fs.readFileSync(path.join(REPO, 'systemd/kms-appliance.service'), 'utf8'));
  t.equal(mode(unit), 0o644);

  const etc = path.join(s.root, 'etc/kms-appliance');
  t.equal(mode(etc), 0o750);
  t.equal(
    fs.readFileSync(path.join(etc, 'config.yaml'), 'utf8'),
    '# fake defaults\nlog:\n  level: info\n',
    'config from `config defaults`',
  );
  t.equal(mode(path.join(etc, 'config.yaml')), 0o640, 'config may hold a TSIG secret: not world-readable');
  t.equal(mode(path.join(s.root, 'var/lib/kms-appliance')), 0o750);
  t.equal(
    fs.readFileSync(path.join(s.root, 'usr/lib/sysusers.d/kms-appliance.conf'), 'utf8'),
    'u kms-appliance - "KMS volume-activation host" /var/lib/kms-appliance /usr/sbin/nologin\n',
  );
  t.same(s.systemctlCalls(), ['daemon-reload', 'enable kms-appliance.service', 'restart kms-appliance.service']);
  t.notOk(fs.existsSync(lib + '.new') || fs.existsSync(lib + '.old'), 'no staging left behind');
});

t.test('idempotent; an upgrade keeps configuration and data and drops stale files', async (t) => {
  const s = setup(t);
  t.equal(s.run(INSTALL).status, 0);
  const first = snapshot(s.root);
  t.equal(s.run(INSTALL).status, 0);
  t.same(snapshot(s.root), first, 'a second run changes nothing');

  const config = path.join(s.root, 'etc/kms-appliance/config.yaml');
  fs.writeFileSync(config, 'log:\n  level: debug # edited by the admin\n');
  const db = path.join(s.root, 'var/lib/kms-appliance/kms-appliance.db');
  fs.writeFileSync(db, 'database');
  writeSource(s.source, 2);
  const r = s.run(INSTALL);
  t.equal(r.status, 0, r.stderr);
  const lib = path.join(s.root, 'usr/lib/kms-appliance');
  t.equal(fs.readFileSync(path.join(lib, 'dist/src/version.js'), 'utf8'), 'module.exports = 2;\n');
  t.notOk(fs.existsSync(path.join(lib, 'dist/src/only-in-v1.js')), 'files of the old version are gone');
  t.equal(fs.readFileSync(config, 'utf8'), 'log:\n  level: debug # edited by the admin\n', 'configuration kept');
  t.equal(fs.readFileSync(db, 'utf8'), 'database', 'data kept');
  t.match(r.stdout, /kept \/etc\/kms-appliance\/config\.yaml/);
  t.equal(s.systemctlCalls().filter((c) => c === 'restart kms-appliance.service').length, 3, 'restarted after each run, so migrations run');
});

t.test('an upgrade refuses a configuration the new version rejects, unless --force', async (t) => {
  const s = setup(t);
  t.equal(s.run(INSTALL).status, 0);
  fs.writeFileSync(path.join(s.root, 'etc/kms-appliance/config.yaml'), 'INVALID: 1\n');
  writeSource(s.source, 2);
  const r = s.run(INSTALL);
  t.equal(r.status, 1);
  t.match(r.stderr, 'config.yaml:1: INVALID: must not be');
  t.match(r.stderr, /the installed program is unchanged/);
  const lib = path.join(s.root, 'usr/lib/kms-appliance');
  t.equal(fs.readFileSync(path.join(lib, 'dist/src/version.js'), 'utf8'), 'module.exports = 1;\n', 'old program still installed');
  t.notOk(fs.existsSync(lib + '.new'));
  const forced = s.run(INSTALL, ['--force']);
  t.equal(forced.status, 0, forced.stderr);
  t.equal(fs.readFileSync(path.join(lib, 'dist/src/version.js'), 'utf8'), 'module.exports = 2;\n');
  t.equal(fs.readFileSync(path.join(s.root, 'etc/kms-appliance/config.yaml'), 'utf8'), 'INVALID: 1\n', 'the file is never rewritten');
});

t.test('--no-start and DESTDIR without SYSTEMCTL: no enable, no start, no systemctl at all', async (t) => {
  const s = setup(t);
  t.equal(s.run(INSTALL, ['--no-start']).status, 0);
  t.same(s.systemctlCalls(), ['daemon-reload']);
  const r = s.run(INSTALL, [], { SYSTEMCTL: undefined });
  t.equal(r.status, 0, r.stderr);
  t.same(s.systemctlCalls(), ['daemon-reload'], 'nothing called into the fake root');
  t.match(r.stdout, 'skipped: systemctl enable kms-appliance.service');
});

t.test('uninstall keeps configuration and data; --purge removes them; both idempotent', async (t) => {
  const s = setup(t);
  t.equal(s.run(INSTALL).status, 0);
  fs.writeFileSync(path.join(s.root, 'var/lib/kms-appliance/kms-appliance.db'), 'database');
  fs.rmSync(s.calls);
  const r = s.run(UNINSTALL);
  t.equal(r.status, 0, r.stderr);
  for (const gone of ['usr/lib/kms-appliance', 'usr/lib/systemd/system/kms-appliance.service', 'usr/bin/kms-appliance']) {
    t.notOk(fs.existsSync(path.join(s.root, gone)) || isLink(path.join(s.root, gone)), `${gone} removed`);
  }
  t.ok(fs.existsSync(path.join(s.root, 'etc/kms-appliance/config.yaml')), 'config kept');
  t.equal(fs.readFileSync(path.join(s.root, 'var/lib/kms-appliance/kms-appliance.db'), 'utf8'), 'database', 'data kept');
  t.same(s.systemctlCalls(), ['disable --now kms-appliance.service', 'daemon-reload']);
  t.equal(s.run(UNINSTALL).status, 0, 'a second uninstall is fine');

  // Reinstalling finds the old configuration.
  fs.writeFileSync(path.join(s.root, 'etc/kms-appliance/config.yaml'), 'log:\n  level: warn\n');
  t.equal(s.run(INSTALL).status, 0);
  t.equal(fs.readFileSync(path.join(s.root, 'etc/kms-appliance/config.yaml'), 'utf8'), 'log:\n  level: warn\n');

  const p = s.run(UNINSTALL, ['--purge']);
  t.equal(p.status, 0, p.stderr);
  for (const gone of ['etc/kms-appliance', 'var/lib/kms-appliance', 'usr/lib/sysusers.d/kms-appliance.conf', 'usr/lib/kms-appliance']) {
    t.notOk(fs.existsSync(path.join(s.root, gone)), `${gone} purged`);
  }
  t.equal(s.run(UNINSTALL, ['--purge']).status, 0, 'a second purge is fine');
});

t.test('bad invocations', async (t) => {
  const s = setup(t);
  const unknown = s.run(INSTALL, ['--frobnicate']);
  t.equal(unknown.status, 2);
  t.equal(unknown.stderr, 'install.sh: unknown option --frobnicate (see --help)\n');
  t.equal(s.run(UNINSTALL, ['--frobnicate']).status, 2);
  fs.rmSync(path.join(s.source, 'dist'), { recursive: true });
  const unbuilt = s.run(INSTALL);
  t.equal(unbuilt.status, 1);
  t.match(unbuilt.stderr, /dist\/src\/cli\/main\.js is missing: run `npm ci && npm run build` first/);
  t.notOk(fs.existsSync(path.join(s.root, 'usr/lib/kms-appliance')));
  const help = s.run(INSTALL, ['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /scripts\/install\.sh \[--no-start\] \[--force\]/);
});

function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

t.test('a node older than the engines field is refused with one line saying what to do', async (t) => {
  const s = setup(t);
  const dir = path.join(path.dirname(s.source), 'fakes');
  fs.mkdirSync(dir);
  for (const [version, pattern] of [
    ['18.19.0', /is Node\.js 18\.19\.0, too old: install Node\.js 20 or later/],
    ['', /does not run as Node\.js/],
  ] as const) {
    const fake = path.join(dir, `node-${version || 'broken'}`);
    fs.writeFileSync(fake, version ? `#!/bin/sh\necho ${version}\n` : '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const r = s.run(INSTALL, [], { NODE: fake });
    t.equal(r.status, 1, version);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.match(r.stderr, pattern);
    t.match(r.stderr, /NodeSource|nodejs\.org/, 'with the fix');
    t.notOk(fs.existsSync(path.join(s.root, 'usr/lib/kms-appliance')), 'nothing installed');
  }
  const missing = s.run(INSTALL, [], { NODE: path.join(dir, 'no-node') });
  t.match(missing.stderr, /not found: install Node\.js 20 or later/);
});
