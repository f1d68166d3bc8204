import t from 'tap';
import * as os from 'node:os';
import * as path from 'node:path';
import { DATABASE_FILE_NAME, databaseFile, resolveDataDir } from '../../src/store/data-dir';

t.test('the configured directory wins, made absolute', async (t) => {
  t.equal(resolveDataDir('/srv/kms', { STATE_DIRECTORY: '/var/lib/x' }), '/srv/kms');
  t.equal(resolveDataDir('rel/dir', {}), path.resolve('rel/dir'));
});

t.test('then systemd $STATE_DIRECTORY, first of a colon-separated list', async (t) => {
  t.equal(resolveDataDir('', { STATE_DIRECTORY: '/var/lib/kms-appliance' }), '/var/lib/kms-appliance');
  t.equal(resolveDataDir('  ', { STATE_DIRECTORY: '/var/lib/a:/var/lib/b', XDG_STATE_HOME: '/x' }), '/var/lib/a');
});

t.test('then $XDG_STATE_HOME/kms-appliance (absolute only), then ~/.local/state/kms-appliance', async (t) => {
  t.equal(resolveDataDir('', { XDG_STATE_HOME: '/home/u/.state', HOME: '/home/u' }), '/home/u/.state/kms-appliance');
  t.equal(resolveDataDir('', { XDG_STATE_HOME: 'relative', HOME: '/home/u' }), '/home/u/.local/state/kms-appliance');
  t.equal(resolveDataDir('', { HOME: '/home/u' }), '/home/u/.local/state/kms-appliance');
  t.equal(resolveDataDir('', { STATE_DIRECTORY: '' }), path.join(os.homedir(), '.local', 'state', 'kms-appliance'));
});

t.test('the database file name', async (t) => {
  t.equal(DATABASE_FILE_NAME, 'kms-appliance.db');
  t.equal(databaseFile('/var/lib/kms-appliance'), '/var/lib/kms-appliance/kms-appliance.db');
});
