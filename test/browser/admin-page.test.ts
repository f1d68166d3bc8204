// The admin page in a real browser (headless Chromium driven by playwright-core): log in with the
// form, see the count bars and the chart, search a machine, no horizontal scrolling at 390 px (a
// phone) and a sensible layout at 1280 px, no CSP violation, and a foreign Host refused.
import t from 'tap';
import fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { activate } from '../../src/client/kms-client';
import { product, startHarness } from '../server/appliance-harness';
import { storeCheapPassword } from '../admin/cheap-password';

const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'correct horse battery';
/** The document's scroll width against its visible width (a string: the tests compile without the DOM types). */
function widths(page: Page): Promise<{ scroll: number; client: number }> {
  return page.evaluate('({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })');
}

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

t.test(
  'log in, read the page on a phone and a desk, search a machine',
  { skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (scripts/ci-apt.sh installs it)` },
  async (t) => {
    const h = await startHarness(t, (c) => {
      c.admin.listen = ['127.0.0.1:0'];
      c.entitlements = [{ product: 'Windows 10/11 Enterprise', licenses: 3 }];
    });
    storeCheapPassword(h.dataDir, PASSWORD);
    for (let i = 0; i < 4; i++)
      await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Enterprise'), workstation: `FINANCE-PC-${i}` });
    await activate({
      host: h.host,
      port: h.port,
      product: product('Office LTSC Professional Plus 2021'),
      workstation: 'RECEPTION-<b>bold</b>',
    });
    await activate({ host: h.host, port: h.port, product: product('Windows 10/11 Home'), workstation: 'HOME-LAPTOP' });
    const port = h.appliance.adminAddresses[0]!.port;
    const base = `http://127.0.0.1:${port}`;

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    t.teardown(() => browser.close());
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });

    await page.goto(`${base}/`);
    t.match(page.url(), /\/login$/, 'sent to the login form');
    await page.fill('input[name=password]', 'wrong password');
    await page.click('button[type=submit]');
    t.match(await page.textContent('body'), /Wrong user or password/);
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/`);
    t.match(await page.textContent('h1'), /^kms-appliance /, 'logged in: the page');
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'kms_admin_session');
    t.ok(session?.httpOnly, 'session cookie HttpOnly');
    t.equal(session?.sameSite, 'Strict');
    t.ok(session?.secure, 'Secure');

    // The bars and the chart.
    const cards = page.locator('section.app');
    t.equal(await cards.count(), 2, 'one card per application');
    const windows = cards.filter({ hasText: 'Windows' });
    t.match(await windows.textContent(), /4 \/ 25 machines/);
    t.match(await windows.textContent(), /21 more machines needed/);
    t.equal(await windows.locator('svg.bar').count(), 1, 'a bar of the count against the threshold');
    const chart = page.locator('svg.chart');
    t.equal(await chart.count(), 1, 'the 30-day chart');
    t.ok((await chart.boundingBox())!.height > 50, 'the chart is drawn');
    t.ok((await chart.locator('rect').count()) >= 1, 'with today’s bar');
    t.match(await page.locator('#health').textContent(), /Healthy/);
    t.match(await page.textContent('body'), /1 over/, 'licences against use: 4 machines on 3 licences');
    t.match(await page.textContent('body'), /0xC004F042/, 'the refusal with what the client saw');
    t.match(await page.textContent('body'), /RECEPTION-<b>bold<\/b>/, 'client-sent markup shown as text');
    t.equal(await page.locator('b:text("bold")').count(), 0, 'and never rendered');

    // No horizontal scroll on a phone.
    const phone = await widths(page);
    t.ok(phone.scroll <= phone.client, `390 px: no horizontal scroll (${phone.scroll} <= ${phone.client})`);
    await page.screenshot({ path: '/tmp/kms-admin-390.png' });

    // Search a machine.
    await page.fill('input[name=q]', 'finance-pc-2');
    await page.click('form.search button');
    await page.waitForURL(/q=finance-pc-2/);
    const rows = page.locator('#machine-list tr');
    t.equal(await rows.count(), 2, 'header and one machine');
    t.match(await rows.nth(1).textContent(), /FINANCE-PC-2/);
    const after = await widths(page).then((w) => w.scroll <= w.client);
    t.ok(after, '390 px: the machine list fits too');
    await page.screenshot({ path: '/tmp/kms-admin-390-machines.png' });

    // A desk: cards side by side, nothing overflowing.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/`);
    const desk = await widths(page);
    t.ok(desk.scroll <= desk.client, '1280 px: no horizontal scroll');
    const [a, b] = [await cards.nth(0).boundingBox(), await cards.nth(1).boundingBox()];
    t.equal(Math.round(a!.y), Math.round(b!.y), '1280 px: application cards side by side');
    await page.screenshot({ path: '/tmp/kms-admin-1280.png', fullPage: true });
    t.same(cspViolations, [], 'nothing on the page breaks the CSP');

    // A page reached under a foreign name (DNS rebinding) is refused, even with the session.
    const rebound = await page.request.get(`${base}/api/status`, { headers: { host: 'attacker.example' } });
    t.equal(rebound.status(), 421);
    t.notMatch(await rebound.text(), /FINANCE/);
  },
);
