// The server's V8 heap settings live in one constant; `npm start` and the installed wrapper must
// start `serve` with exactly those flags (and the wrapper only `serve`).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { SERVER_NODE_FLAGS } from '../../src/server/node-flags';
import { ROOT } from '../paths';

const root = ROOT;
const flags = SERVER_NODE_FLAGS.join(' ');

t.test('npm start and the installed wrapper use SERVER_NODE_FLAGS for serve', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts['start'], `node ${flags} dist/src/cli/main.js serve`);
  const install = fs.readFileSync(path.join(root, 'scripts', 'install.sh'), 'utf8');
  t.match(install, `if [ "\\$1" = serve ]; then\n  exec $NODE ${flags} "\\$LIB/dist/src/cli/main.js"`);
  for (const f of SERVER_NODE_FLAGS) t.match(f, /^--max-(semi|old)-space-size=\d+$/);
});
