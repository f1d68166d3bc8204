// The admin.* configuration rules, each with the line an administrator reads.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load';
import { KmsError } from '../../src/errors';

function errorsOf(yaml: string): string[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-admin-cfg-'));
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, yaml);
  try {
    loadConfig(file);
    return [];
  } catch (err) {
    if (!(err instanceof KmsError)) throw err;
    return ((err.details['errors'] as string[] | undefined) ?? [err.message]).map((l) => l.replace(file, 'config.yaml'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

t.test('admin.tls: certFile and keyFile come together, as absolute paths; hostNames are DNS names', async (t) => {
  t.same(errorsOf('admin:\n  tls:\n    enabled: true\n    certFile: /etc/kms/admin.crt\n    keyFile: /etc/kms/admin.key\n'), []);
  t.match(
    errorsOf('admin:\n  tls:\n    certFile: /etc/kms/admin.crt\n').join('\n'),
    /admin\.tls\.keyFile: must be set when admin\.tls\.certFile is set/,
  );
  t.match(
    errorsOf('admin:\n  tls:\n    keyFile: /etc/kms/admin.key\n').join('\n'),
    /config\.yaml:3: admin\.tls\.keyFile: must be empty unless admin\.tls\.certFile is set/,
  );
  t.match(
    errorsOf('admin:\n  tls:\n    certFile: admin.crt\n    keyFile: admin.key\n').join('\n'),
    /admin\.tls\.certFile: must be an absolute path/,
  );
  t.match(errorsOf('admin:\n  hostNames: ["bad name!"]\n').join('\n'), /admin\.hostNames\[0\]/);
  t.match(errorsOf('admin:\n  maxConnections: 0\n').join('\n'), /admin\.maxConnections/);
});
