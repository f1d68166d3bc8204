// Named statements bound by position (src/store/positional-statement.ts) write what the same
// statement bound by name writes, repeated names included.
import t from 'tap';
import Database from 'better-sqlite3';
import { PositionalStatement, positionalSql } from '../../src/store/positional-statement';
import { INSERT_EVENT, UPSERT_CLIENT_SERVED } from '../../src/store/rows';

t.test('each :name becomes ? in order, a repeated name is passed again', async (t) => {
  t.same(positionalSql('INSERT INTO t VALUES (:a, :b_2, :a) -- :c'), {
    sql: 'INSERT INTO t VALUES (?, ?, ?) -- ?',
    names: ['a', 'b_2', 'a', 'c'],
  });
  t.same(positionalSql('SELECT 1').names, []);
});

t.test("the store's statements write the same rows bound by position as by name", async (t) => {
  const rows = (bind: 'name' | 'position') => {
    const db = new Database(':memory:');
    db.exec(`CREATE TABLE events (id INTEGER PRIMARY KEY, time_ms, served, hresult, code, application, kms_group, sku, cmid,
      previous_cmid, workstation, required_count, license_status, vm, protocol_version, client_address, request_time_ms, current_count);
      CREATE TABLE clients (application, cmid, first_seen_ms, last_seen_ms, last_counted_ms, workstation, sku, kms_group,
      license_status, protocol_version, client_address, vm, requests, last_hresult, required_count, previous_workstation DEFAULT '',
      workstation_changes DEFAULT 0, previous_address DEFAULT '', address_changes DEFAULT 0, PRIMARY KEY (application, cmid))`);
    const run = (sql: string, params: object) =>
      bind === 'name' ? db.prepare(sql).run(params) : new PositionalStatement(db, sql).run(params);
    const client = (n: number, ws: string) => ({
      application: 'app',
      cmid: `m${n % 3}`,
      now: 1000 + n,
      counted: n % 2 ? null : 1000 + n,
      workstation: ws,
      sku: 's',
      kms_group: 'g',
      license_status: n,
      protocol_version: 6,
      client_address: `10.0.0.${n}`,
      vm: n % 2,
      last_hresult: 0,
      required_count: 25,
    });
    for (let n = 0; n < 9; n++) {
      run(UPSERT_CLIENT_SERVED, client(n, `pc-${n % 2}`));
      run(INSERT_EVENT, {
        time_ms: n,
        served: 1,
        hresult: 0,
        code: '',
        application: 'app',
        kms_group: 'g',
        sku: 's',
        cmid: `m${n}`,
        previous_cmid: '',
        workstation: `pc "${n}"`,
        required_count: 25,
        license_status: 1,
        vm: 0,
        protocol_version: 6,
        client_address: '::1',
        request_time_ms: 5 * n,
        current_count: n,
      });
    }
    return [db.prepare('SELECT * FROM clients ORDER BY cmid').all(), db.prepare('SELECT * FROM events ORDER BY id').all()];
  };
  const byName = rows('name');
  t.equal(byName[0]!.length, 3, 'three machines, renewed');
  t.same(rows('position'), byName);
});
