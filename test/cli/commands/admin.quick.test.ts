// `admin cert` / `admin set-password` share defineCommand's options, help and exit codes.
import t from 'tap';
import { main } from '../../../src/cli/main';
import { captureIo } from './io';

t.test('admin cert: no certificate yet is one line, exit 1; a wrong option is exit 2 with a suggestion', async (t) => {
  const dir = t.testdir({});
  let io = captureIo();
  t.equal(await main(['admin', 'cert', '--data-dir', dir], io), 1);
  t.match(io.err(), /^kms-appliance admin cert: no certificate in .* yet; it is made at the first start with admin.tls.enabled: true\n$/);
  io = captureIo();
  t.equal(await main(['admin', 'cert', '--data-dri', dir], io), 2);
  t.match(io.err(), /unknown option --data-dri \(did you mean --data-dir\?\)/);
  io = captureIo();
  t.equal(await main(['admin', 'set-password', '--help'], io), 0);
  t.match(io.out(), /^Usage: kms-appliance admin set-password/);
  io = captureIo();
  t.equal(await main(['admin', 'cert', '--config', `${dir}/missing.yaml`], io), 2);
  t.match(io.err(), /missing\.yaml: no such file/);
});
