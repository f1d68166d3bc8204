// The server's V8 heap settings and malloc arenas live in two constants; `npm start` and the
// installed wrapper must start `serve` with exactly those (and the wrapper only `serve`).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { SERVER_ENV, SERVER_NODE_FLAGS } from '../../src/server/node-flags';
import { ROOT } from '../paths';

const root = ROOT;
const flags = SERVER_NODE_FLAGS.join(' ');

t.test('npm start and the installed wrapper use SERVER_NODE_FLAGS and SERVER_ENV for serve', async (t) => {
  const env = Object.entries(SERVER_ENV);
  t.same(env, [['MALLOC_ARENA_MAX', '2']]);
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts['start'], `${env.map(([k, v]) => `${k}=${v}`).join(' ')} node ${flags} dist/src/cli/main.js serve`);
  const install = fs.readFileSync(path.join(root, 'scripts', 'install.sh'), 'utf8');
  const exports = env.map(([k, v]) => `  export ${k}="\\\${${k}:-${v}}"\n`).join('');
  t.match(install, `if [ "\\$1" = serve ]; then\n${exports}  exec $NODE_WORD ${flags} "\\$LIB/dist/src/cli/main.js"`);
  for (const f of SERVER_NODE_FLAGS) t.match(f, /^--max-(semi|old)-space-size=\d+$/);
});
