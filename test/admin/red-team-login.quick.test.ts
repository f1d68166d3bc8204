// Password guessing from many addresses: each address has its own lockout, and all of them
// together get at most 20 failed password checks per 5 minutes (src/admin/login.ts).
import t from 'tap';
import { randomBytes, scryptSync } from 'node:crypto';
import { LoginGuard } from '../../src/admin/login';
import type { PasswordRecord } from '../../src/admin/password';

const MINUTE = 60_000;

/** A real record at the cheapest scrypt cost: the checks run, the test stays quick. */
function cheapRecord(password: string): PasswordRecord {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N: 2, r: 1, p: 1 });
  return { user: 'admin', scheme: 'scrypt', N: 2, r: 1, p: 1, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

function harness() {
  const lines: { obj: Record<string, unknown>; msg?: string }[] = [];
  const log = { warn: (obj: object, msg?: string) => void lines.push({ obj: obj as Record<string, unknown>, msg }), info: () => {} };
  const clock = { now: 1_800_000_000_000 };
  const record = cheapRecord('right horse battery');
  const guard = new LoginGuard(
    () => record,
    log,
    () => clock.now,
  );
  return { guard, lines, clock };
}

const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` });
const addressOf = (i: number) => `2001:db8:${i.toString(16)}::1`;

t.test('many addresses, one wrong guess each: after 20 failed checks every address waits, and says why', async (t) => {
  const { guard, lines, clock } = harness();
  const session = await guard.login('admin', 'right horse battery', '192.0.2.10');
  t.ok(session.ok, 'the admin logged in before the attack');

  const reasons: string[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await guard.login('admin', `guess ${i}`, addressOf(i));
    reasons.push(r.ok ? 'ok' : r.reason);
    clock.now += 1000;
  }
  t.same(reasons.slice(0, 20), Array(20).fill('wrong'), 'the first 20 guesses are checked');
  t.same(reasons.slice(20), Array(10).fill('throttled'), 'the rest are not, whichever new address they come from');
  const paused = await guard.login('admin', 'guess 31', addressOf(31));
  t.match(paused, { ok: false, reason: 'throttled', everyone: true }, 'a throttle for every address');
  t.ok(!paused.ok && paused.retryAfterSeconds! > 0 && paused.retryAfterSeconds! <= 300, 'with how long to wait');
  const said = lines.filter((l) => l.obj['event'] === 'admin-login-paused');
  t.equal(said.length, 1, 'one line says checks are paused for every address');
  t.match(said[0]?.msg, /paused for every address .*keep the admin port off the internet/);

  t.match(
    await guard.login('admin', 'right horse battery', '192.0.2.30'),
    { ok: false, reason: 'throttled' },
    'the right password from a new address waits too: a guess cannot be told from it',
  );
  t.ok(
    session.ok && (await guard.authenticate({ cookie: `kms_admin_session=${session.token}` }, '192.0.2.10')).ok,
    'an open session still works',
  );

  clock.now += 5 * MINUTE;
  t.ok((await guard.login('admin', 'right horse battery', '192.0.2.30')).ok, 'five minutes on, the password is checked again');
});

t.test('credentials verified before the pause (a Prometheus scraper) are still let in during it', async (t) => {
  const { guard, clock } = harness();
  t.ok((await guard.authenticate(basic('right horse battery'), '192.0.2.20')).ok, 'the scraper is let in');
  for (let i = 0; i < 25; i++) {
    await guard.authenticate(basic(`guess ${i}`), addressOf(i));
    clock.now += 1000;
  }
  t.match(await guard.authenticate(basic('another guess'), addressOf(99)), { ok: false, reason: 'throttled', everyone: true });
  t.ok((await guard.authenticate(basic('right horse battery'), '192.0.2.20')).ok, 'its next scrape is let in');
  // The attacker keeps the checks paused for an hour; the scraper scrapes every 15 s throughout.
  let scrapes = 0;
  for (let s = 0; s < 240; s++) {
    clock.now += 15_000;
    for (let g = 0; g < 20; g++) {
      const r = await guard.authenticate(basic(`guess ${s}.${g}`), addressOf(1000 + s * 20 + g));
      if (!r.ok && r.reason === 'throttled') break; // paused again: the attacker waits for the next slot
    }
    if ((await guard.authenticate(basic('right horse battery'), '192.0.2.20')).ok) scrapes++;
  }
  t.equal(scrapes, 240, 'every scrape of the hour let in');
});

t.test('passwords too long to be right are refused without a check and spend nothing of the shared bound', async (t) => {
  const { guard, clock } = harness();
  const tooLong = 'x'.repeat(2000);
  for (let i = 0; i < 200; i++) {
    const r = await guard.login('admin', tooLong, addressOf(i));
    t.equal(r.ok ? 'ok' : r.reason, 'wrong');
    clock.now += 100;
  }
  t.ok((await guard.login('admin', 'right horse battery', '192.0.2.40')).ok, 'the admin still logs in');
});

t.test('guesses queued behind one another see the failures made meanwhile', async (t) => {
  const { guard } = harness();
  // Sent at once from 40 addresses: each is checked in turn, and the 21st onwards find the bound spent.
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => guard.login('admin', `guess ${i}`, addressOf(i))));
  const wrong = results.filter((r) => !r.ok && r.reason === 'wrong').length;
  t.equal(wrong, 20, 'exactly 20 checked');
  t.equal(results.filter((r) => !r.ok && r.reason === 'throttled').length, 20, 'the rest throttled');
});
