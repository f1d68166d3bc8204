// Needs a process of its own: it checks which modules a fresh process has loaded.
// `serve` runs for years: main loads the serve command's module alone, not every command's (their
// imports add TLS, DNS and PostgreSQL client code to the server's memory); other commands still
// find their module.
import t from 'tap';
import { main } from '../../src/cli/main';
import { captureIo } from './commands/io';

const loaded = (pattern: RegExp): string[] => Object.keys(require.cache).filter((f) => pattern.test(f));
const COMMAND_MODULE = /[\\/]cli[\\/]commands[\\/](index|status|fleet|dns-check|admin|clients)\.[jt]s$/;

t.test('serve --help loads only the serve command', async (t) => {
  t.same(loaded(COMMAND_MODULE), [], 'no command module loaded before');
  const io = captureIo();
  t.equal(await main(['serve', '--help'], io), 0);
  t.match(io.out(), /kms-appliance serve/);
  t.equal(loaded(/[\\/]cli[\\/]commands[\\/]serve\.[jt]s$/).length, 1, 'the serve command was loaded');
  t.same(loaded(COMMAND_MODULE), [], 'no other command module was loaded');
  // Any other command loads the whole table.
  const other = captureIo();
  t.equal(await main(['status', '--help'], other), 0);
  t.match(other.out(), /kms-appliance status/);
  t.ok(loaded(COMMAND_MODULE).length >= 2, 'the command table and status were loaded');
});
