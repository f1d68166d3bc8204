// Red team against the admin page as Chromium renders it, fed with what KMS clients choose: their
// workstation names (markup, template syntax, URLs, CSS, invisible and bidi characters, 64 wide
// glyphs), names equal to another machine's, thousands of machines and one name on many CMIDs.
// Nothing a client chose may run, become a link, hide, reorder a row or push the counts away.
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { activate } from '../../src/client/kms-client';
import { SqliteStore } from '../../src/store/sqlite-store';
import { product, startHarness, type Harness } from '../server/appliance-harness';
import { cmid, obs, WINDOW } from '../store/observations';
import type { AdminRequest, AdminResponse } from '../../src/admin/router';
import { SPARE_V4_GUID } from '../ids';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'];
const skip = fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (scripts/ci-apt.sh installs it)`;

function inject(h: Harness, url: string): Promise<AdminResponse> {
  const req: AdminRequest = {
    method: 'GET',
    url,
    headers: { host: 'localhost' },
    remoteAddress: '127.0.0.1',
    localAddress: '127.0.0.1',
    tls: false,
  };
  return h.appliance.admin!.router.handle(req);
}

async function adminHarness(t: Test, dataDir?: string): Promise<{ h: Harness; base: string }> {
  // No password: loopback visitors see the page without logging in.
  const h = await startHarness(t, (c) => void (c.admin.listen = ['127.0.0.1:0']), dataDir ? { dataDir } : {});
  return { h, base: `http://127.0.0.1:${h.appliance.adminAddresses[0]!.port}` };
}

let browser: Browser | undefined;
async function openPage(t: { teardown(fn: () => unknown): void }, width = 1280): Promise<{ page: Page; csp: string[]; dialogs: string[] }> {
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const context = await browser.newContext({ viewport: { width, height: 900 }, deviceScaleFactor: 1 });
  t.teardown(() => context.close());
  const page = await context.newPage();
  const csp: string[] = [];
  const dialogs: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  return { page, csp, dialogs };
}
t.teardown(() => browser?.close());

const win = product('Windows 10/11 Enterprise');

t.test('markup, template syntax, URLs and CSS in workstation names stay text', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  const hostile = [
    '<script>alert(1)</script>',
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    '</textarea></title><iframe src=javascript:alert(4)>',
    '{{constructor.constructor("alert(5)")()}}',
    'javascript:alert(6)',
    'http://evil.example/login',
    '</style><style>*{display:none}</style>',
    '<a href=//evil.example>x</a><form action=//evil.example>',
    '&lt;b&gt;entity&#x3c;',
  ];
  for (const workstation of hostile) await activate({ host: h.host, port: h.port, product: win, workstation });
  // A SKU the catalogue does not know is served and shown by its id, which the host formats itself.
  await activate({ host: h.host, port: h.port, product: { ...win, activationId: SPARE_V4_GUID }, workstation: 'NEW-EDITION' });
  const { page, csp, dialogs } = await openPage(t);
  await page.goto(`${base}/`);
  const body = (await page.textContent('body')) ?? '';
  for (const name of hostile) t.ok(body.includes(name), `shown literally: ${name}`);
  t.match(body, `unknown edition of Windows 10/11 2015 (Volume) (Activation ID ${SPARE_V4_GUID})`, 'an unknown SKU by its id');
  t.same(dialogs, [], 'no script ran');
  t.same(csp, [], 'nothing injected tried to load');
  t.equal(await page.locator('img, iframe, script, textarea, form[action*="evil"]').count(), 0, 'no element a client chose');
  t.equal(await page.locator('style').count(), 1, 'only the page’s own style block');
  const hrefs = (await page.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href') ?? ''))) as string[];
  t.ok(
    hrefs.every((href) => href.startsWith('/?') || href.startsWith('/#')),
    'every link is the page’s own (sort, pages)',
  );
  // The JSON API gives the names back exactly, as JSON text a browser will not run.
  const api = await page.request.get(`${base}/api/machines?limit=50`);
  t.match(api.headers()['content-type'], /^application\/json/);
  t.equal(api.headers()['x-content-type-options'], 'nosniff');
  const names = ((await api.json()) as { rows: { workstation: string }[] }).rows.map((r) => r.workstation).sort();
  t.same(names, [...hostile, 'NEW-EDITION'].sort(), 'the API returns each name as sent');
  const headers = (await page.request.get(`${base}/`)).headers();
  t.match(headers['content-security-policy'], /default-src 'none'/);
  t.notMatch(headers['content-security-policy'], /unsafe-inline|script-src/, 'no script source at all');
  t.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  t.equal(headers['x-frame-options'], 'DENY');
});

/** Text of the first column of each machine row, as the browser shows it. */
function shownNames(page: Page): Promise<string[]> {
  return page.locator('#machine-list tr td:first-child strong').allInnerTexts();
}

t.test('invisible, bidi and tag characters cannot make one machine read as another', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  const lookalikes = [
    'PC-01\u200b', // zero width space
    'PC-01\u2060', // word joiner
    'PC-01\ufeff', // zero width no-break space
    'PC-01\u00ad', // soft hyphen
    'PC-\u034f01', // combining grapheme joiner
    'PC-01\u061c', // Arabic letter mark (a bidi control)
    'PC-01\u180e', // Mongolian vowel separator
    'PC-01\u{e0041}\u{e0042}', // tag characters
    'PC-01\u2028', // line separator
    'PC-01\ufff9x\ufffb', // interlinear annotation
    '\u202eLC-01\u202c', // right-to-left override (already escaped before this round)
    'PC-01 ', // HTML swallows spaces at the ends and collapses runs
    ' PC-01',
    'PC-01\u00a0',
    'PC-01\u3000',
    'PC-01  X',
  ];
  await activate({ host: h.host, port: h.port, product: win, workstation: 'PC-01' });
  await activate({ host: h.host, port: h.port, product: win, workstation: 'PC-01 X' });
  for (const workstation of lookalikes) await activate({ host: h.host, port: h.port, product: win, workstation });
  const { page } = await openPage(t);
  await page.goto(`${base}/`);
  const shown = (await shownNames(page)).map((s) => s.trim());
  t.equal(shown.length, lookalikes.length + 2, 'one row per machine');
  t.equal(shown.filter((s) => s === 'PC-01').length, 1, `only the real PC-01 reads "PC-01": ${JSON.stringify(shown)}`);
  t.equal(new Set(shown).size, shown.length, 'no two rows read alike');
  const invisible = /[\u00a0\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3000\ufeff\ufff9-\ufffb]|\u034f|\udb40|^ | $| {2}/;
  for (const s of shown) t.notMatch(s, invisible, `nothing invisible in ${JSON.stringify(s)}`);
  // The search box gives back exactly what was searched for, invisible characters included.
  await page.goto(`${base}/?q=${encodeURIComponent('PC-01\u200b')}`);
  t.equal(await page.inputValue('input[name=q]'), 'PC-01\u200b', 'the search box keeps the query as typed');
  t.same(await shownNames(page), ['PC-01\\u200b'], 'and finds that one machine');
});

t.test('64 wide glyphs without a space neither widen the page nor push the counts out of view', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  // The widest glyphs there are, and accents stacked on one letter.
  const names = ['\ufdfd'.repeat(64), 'W'.repeat(64), '\u{12219}'.repeat(32), `A${'\u0301'.repeat(7)}`.repeat(8)];
  for (const workstation of names) {
    await activate({ host: h.host, port: h.port, product: win, workstation });
    // A refusal too: the refusal table shows the last refused name.
    const skewed = (): number => Date.now() - 86_400_000;
    await activate({ host: h.host, port: h.port, product: win, workstation, protocol: 6, nowMs: skewed });
  }
  for (const width of [1280, 390]) {
    const { page } = await openPage(t, width);
    await page.goto(`${base}/`);
    const fit = (await page.evaluate(`[...document.querySelectorAll('.scroll')].map((e) => [e.scrollWidth, e.clientWidth])`)) as [
      number,
      number,
    ][];
    for (const [scroll, client] of fit)
      t.ok(scroll <= client + 1, `${width} px: a table needs no sideways scrolling (${scroll} <= ${client})`);
    const doc = (await page.evaluate('[document.documentElement.scrollWidth, document.documentElement.clientWidth]')) as [number, number];
    t.ok(doc[0] <= doc[1], `${width} px: the page needs no sideways scrolling`);
    const counted = await page
      .locator('#machine-list td[data-label=Counted]')
      .evaluateAll((tds) => tds.map((td) => td.getBoundingClientRect().right));
    t.equal(counted.length, 2 * names.length, 'a served and a refused machine per name');
    for (const right of counted) t.ok(right <= width, `${width} px: the Counted column is in view (${right})`);
  }
});

t.test('thousands of machines, one name on hundreds of CMIDs, many refusals: the page stays bounded', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-redpage-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const now = Date.now();
  const store = SqliteStore.open(dir, {});
  store.beginBatch();
  for (let i = 1; i <= 3000; i++) store.recordActivation(obs(i, { workstationName: `M${'x'.repeat(40)}-${i}` }), now - 60_000, WINDOW);
  // One name, 400 machine ids: what a script that keeps its name and draws a new CMID each time leaves.
  for (let i = 1; i <= 400; i++) store.recordActivation(obs(10_000 + i, { workstationName: 'SAME-NAME' }), now - 30_000, WINDOW);
  for (let i = 1; i <= 2000; i++)
    store.recordRefusal(obs(20_000 + i, { workstationName: `R-${i}` }), 0xc004f06c, 'KMS_ERR_KMS_TIME_SKEW', now - 10_000 + i);
  store.commitBatch();
  store.close();
  const { h, base } = await adminHarness(t, dir);
  const page = await inject(h, '/');
  t.equal(page.status, 200);
  t.ok(page.body.length < 150_000, `the page is bounded (${page.body.length} characters)`);
  t.equal(page.body.match(/<td data-label="Counted">/g)?.length, 50, 'one page of 50 machines');
  const sameName = page.body.match(/same-name<\/span><\/td><td><code>(.*?)<\/code>/i)?.[1] ?? '';
  const listed = sameName.match(/[0-9a-f]{8}-[0-9a-f-]{27}/g)?.length ?? 0;
  t.ok(listed >= 1 && listed <= 50, `the duplicate row lists a bounded number of CMIDs (${listed})`);
  t.ok(/400 machine ids|350 more|400 CMIDs/i.test(page.body), 'and says how many there are');
  t.ok(sameName.includes(cmid(10_001)), 'the first of them shown');

  const { page: tab } = await openPage(t);
  await tab.goto(`${base}/?q=-2999`);
  t.same(
    (await shownNames(tab)).map((s) => s.trim()),
    [`M${'x'.repeat(40)}-2999`],
    'search finds one machine among thousands',
  );
  await tab.goto(`${base}/`);
  await tab.click('#next-page');
  await tab.waitForURL(/after=/);
  t.equal((await shownNames(tab)).length, 50, 'the next page');
});

t.test('a name cannot pose as an address, or as two machines in the duplicate lists', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  const cloned = '0a0a0a0a-1111-4111-8111-000000000001';
  // One CMID under two names (a clone); the second name reads like a list of two.
  await activate({ host: h.host, port: h.port, product: win, cmid: cloned, workstation: 'CLONE-A' });
  await activate({ host: h.host, port: h.port, product: win, cmid: cloned, workstation: 'clone-b, boss-pc' });
  // A refused request whose name ends like the address part of the line.
  await activate({ host: h.host, port: h.port, product: win, workstation: 'BOSS-PC at 10.9.9.9', nowMs: () => Date.now() - 86_400_000 });
  const { page } = await openPage(t);
  await page.goto(`${base}/`);
  const last = page.locator('td[data-label=Last]');
  t.equal(await last.locator('code').textContent(), '127.0.0.1', 'the address the request came from, apart from the name');
  t.equal(await last.locator('strong').textContent(), 'BOSS-PC at 10.9.9.9', 'the name, as a name');
  const names = (await page.locator('table:not(#machine-list) tr', { hasText: cloned }).locator('td').nth(1).innerText()).split('\n');
  t.same(names, ['clone-a', 'clone-b, boss-pc'], 'one name a line: two names, not three');
});

t.test('a search cut at its length limit in the middle of an emoji is still a page, not a 500', async (t) => {
  const { h } = await adminHarness(t);
  await activate({ host: h.host, port: h.port, product: win, workstation: 'PC-😀' });
  const long = `${'a'.repeat(99)}%F0%9F%98%80`;
  for (const url of [`/?q=${long}&after=x`, `/?q=${long}`, `/api/machines?q=${long}`]) {
    const r = await inject(h, url);
    t.equal(r.status, 200, url.slice(0, 40));
    t.notMatch(r.body, /[\ud800-\udfff]/u, 'no half character in the answer');
  }
  const found = await inject(h, `/api/machines?q=${'%F0%9F%98%80'}`);
  t.match(found.body, /PC-😀/, 'a whole emoji still searches');
});

t.test('two machines with one name behind one address can be told apart in the list', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  const real = '0b0b0b0b-1111-4111-8111-000000000001';
  const impostor = '0b0b0b0b-1111-4111-8111-000000000002';
  await activate({ host: h.host, port: h.port, product: win, cmid: real, workstation: 'BOSS-PC' });
  await activate({ host: h.host, port: h.port, product: win, cmid: impostor, workstation: 'BOSS-PC' });
  const { page } = await openPage(t);
  await page.goto(`${base}/`);
  const rows = await page.locator('#machine-list tr').filter({ hasText: 'BOSS-PC' }).allInnerTexts();
  t.equal(rows.length, 2);
  t.not(rows[0], rows[1], 'the rows differ');
  t.ok(rows.some((r) => r.includes(real)) && rows.some((r) => r.includes(impostor)), 'each shows its machine id');
});

t.test('one client asking for 1000 machines does not make the page say 999 are missing', { skip }, async (t) => {
  const { h, base } = await adminHarness(t);
  for (let i = 0; i < 2; i++) await activate({ host: h.host, port: h.port, product: win, workstation: `PC-${i}` });
  await activate({ host: h.host, port: h.port, product: { ...win, requiredClientCount: 1000 }, workstation: 'GREEDY' });
  const { page } = await openPage(t);
  await page.goto(`${base}/`);
  const card = (await page.locator('section.app', { hasText: 'Windows' }).innerText()).replace(/\s+/g, ' ');
  t.match(card, /3 \/ 25 machines/, 'the count against what Windows clients ask for');
  t.match(card, /22 more machines needed before clients activate \(they need 25\)/);
  t.notMatch(card, /997 more/, 'not against the forged threshold');
  t.match(card, /A request asked for 1000 machines/, 'the odd request is named');
  await page.locator('section.app', { hasText: 'Windows' }).locator('summary').click();
  const groups = await page.locator('section.app', { hasText: 'Windows' }).locator('li').allInnerTexts();
  t.same(groups, ['Windows 10/11 2015 (Volume): 3 (needs 25)'], 'the product group too');
});
