// Leaks over years of uptime: state that grows with what peers send, with reloads or with time,
// in the parts of the appliance that live as long as the process.
import t from 'tap';
import { memoizeNames, type NameResolver } from '../../src/catalog/name-resolver';

/** A resolver that counts how often each id had to be resolved. */
function countingResolver(): { names: NameResolver; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const note = (key: string, name: string): string => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    return name;
  };
  return {
    calls,
    names: {
      applicationName: (id) => note(`app ${id}`, `application ${id}`),
      groupName: (id) => note(`group ${id}`, `group ${id}`),
      skuName: (activationId, groupId) => note(`sku ${activationId}/${groupId}`, `unknown edition (${activationId})`),
    },
  };
}

function guidOf(i: number): string {
  return `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
}

// Hosts serve Activation IDs they do not know (PROTOCOL.md §4.2), so the ids in the database are
// whatever clients sent. The snapshot worker and the fleet forwarder keep one memo for the life of
// the process: one that remembers every id it was ever asked for grows with every id a client invents.
t.test('the name memo is bounded: ids invented by clients do not accumulate for the life of the process', async (t) => {
  const { names, calls } = countingResolver();
  const memo = memoizeNames(names);
  const group = guidOf(0xffff);
  memo.skuName(guidOf(0), group);
  memo.skuName(guidOf(0), group);
  t.equal(calls.get(`sku ${guidOf(0)}/${group}`), 1, 'an id asked for again is answered from the memo');
  for (let i = 1; i <= 100_000; i++) {
    memo.skuName(guidOf(i), group);
    memo.applicationName(guidOf(i));
    memo.groupName(guidOf(i));
  }
  memo.skuName(guidOf(0), group);
  memo.applicationName(guidOf(1));
  memo.groupName(guidOf(1));
  t.equal(calls.get(`sku ${guidOf(0)}/${group}`), 2, 'after 100,000 other SKU ids the first one was forgotten');
  t.equal(calls.get(`app ${guidOf(1)}`), 2, 'after 100,000 application ids the first one was forgotten');
  t.equal(calls.get(`group ${guidOf(1)}`), 2, 'after 100,000 group ids the first one was forgotten');
  t.equal(memo.skuName(guidOf(0), group), `unknown edition (${guidOf(0)})`, 'a forgotten id is resolved again, with the same name');
});
