// Drives the dashboard in Debian's Chromium (playwright-core, no browser download) against a
// gateway with the mock upstream and mock OAuth issuer; run by tests/dashboard.rs, which
// checks the store afterwards. Each step throws on what it does not find; screenshots go to SHOTS.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const require = createRequire(process.env.PLAYWRIGHT_DIR + '/');
const { chromium } = require('playwright-core');
const GATE = process.env.GATE;
const SHOTS = process.env.SHOTS;
const PY = process.env.PY;
mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.log('[dashboard]', ...a);
const fail = (m) => { throw new Error(m); };
async function post(path, body, key) {
  const r = await fetch(GATE + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: 'Bearer ' + key } : {}) },
    body: JSON.stringify(body),
  });
  return { status: r.status, id: r.headers.get('x-codex-gate-request-id'), json: await r.json().catch(() => null) };
}
async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) fail('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
const problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
// Refused requests (the wrong sign-in, polls after the admin key appears) log "Failed to load
// resource"; those are expected. Anything else on the console is a defect.
page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console: ' + m.text()); });
const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

try {
  // 1. Loopback, no admin key: no sign-in; the overview renders.
  const t0 = Date.now();
  await page.goto(GATE + '/');
  await page.waitForSelector('#totals');
  log('first overview in', Date.now() - t0, 'ms');

  // 2. Add an account through the PKCE flow: the page starts it, the "sign-in page" (the mock
  // issuer) redirects to the gateway's callback listener, and the page sees it finish.
  await page.goto(GATE + '/#/accounts');
  await page.click('#login-browser');
  const href = await (await page.waitForSelector('#login-link')).getAttribute('href');
  if (!href.includes('/oauth/authorize?') || !href.includes('code_challenge=')) fail('not a PKCE authorize URL: ' + href);
  const signin = await browser.newPage();
  await signin.goto(href);
  const callbackText = await signin.textContent('body');
  await signin.close();
  await page.waitForFunction(() => /Added/.test(document.querySelector('#login-state')?.textContent || ''), null, { timeout: 15000 });
  log('login finished; callback page said:', callbackText.trim().slice(0, 60));
  await page.waitForSelector('tr[data-account]');
  const listed = await page.$$eval('tr[data-account]', (rows) => rows.map((r) => [r.dataset.account, r.textContent]));
  const browserAccount = (listed.find(([, text]) => text.includes('acc-browser@example.com')) || [])[0];
  if (!browserAccount) fail('the new account is not listed: ' + JSON.stringify(listed));

  // 3. Traffic before keys exist (loopback needs none); then its windows show with a countdown.
  for (let i = 0; i < 3; i++) {
    const r = await post('/v1/responses', { model: 'pool/gpt-5.5', input: 'hi', stream: false });
    if (r.status !== 200) fail('pool turn failed: ' + JSON.stringify(r));
  }
  await page.goto(GATE + '/#/accounts');
  const row = `tr[data-account="${browserAccount}"]`;
  await page.waitForFunction((sel) => /resets in/.test(document.querySelector(sel)?.textContent || ''), row, { timeout: 15000 });
  const bars = await page.$$(`${row} .bar`);
  if (bars.length < 1) fail('no quota bar for the account');
  // A second account, from a Codex auth.json uploaded in the page.
  await page.setInputFiles('#import-file', process.env.AUTH_JSON);
  await page.waitForFunction(() => document.querySelectorAll('tr[data-account]').length === 2, null, { timeout: 15000 });
  await shot('accounts');

  // 4. Create a key in the page: the secret is shown once, with snippets that use it.
  await page.goto(GATE + '/#/keys');
  await page.fill('#create-key input[name=name]', 'sdk-key');
  await page.fill('#create-key input[name=rpm]', '100');
  await page.click('#create-key button[type=submit]');
  const secret = (await (await page.waitForSelector('#secret')).textContent()).trim();
  if (!/^cg-[A-Za-z0-9_-]{43}$/.test(secret)) fail('not a client key: ' + secret);
  const codexSnippet = await page.textContent('pre[data-snippet=Codex]');
  if (!codexSnippet.includes(secret) || !codexSnippet.includes(GATE + '/v1')) fail('the Codex snippet does not use the key');
  await shot('keys');

  // ... and use it from the OpenAI Python SDK.
  const out = execFileSync(PY, ['-c', `
import sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
r = c.responses.create(model="pool/gpt-5.5", input="hello from the sdk")
print(r.output_text)
`, GATE + '/v1', secret]).toString();
  if (!out.trim()) fail('the SDK got no text');
  log('SDK answer:', out.trim().slice(0, 40));

  // 5. The SDK's request appears in the log under its key, and its detail shows the attempt.
  await page.goto(GATE + '/#/requests');
  const sdkRow = await until('the SDK request in the log', async () => {
    await page.goto(GATE + '/#/requests?key=');
    await page.waitForSelector('#request-log tbody tr');
    return page.$('#request-log tbody tr:has-text("sdk-key")');
  });
  await shot('requests');
  await sdkRow.click();
  await page.waitForSelector('#request-detail');
  await page.waitForSelector('tr[data-attempt="0"]');
  const attempt = await page.textContent('tr[data-attempt="0"]');
  if (!attempt.includes('pool/gpt-5.5') || !attempt.includes('answered') || !attempt.includes('accounts usable')) fail('attempt row: ' + attempt);
  await shot('request');

  // 6. Pause the new account: routing skips it (the other account serves).
  await page.goto(GATE + '/#/accounts');
  await page.click(`${row} button:has-text("Pause")`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector('.pill')?.textContent === 'paused', row);
  for (let i = 0; i < 3; i++) {
    const r = await post('/v1/responses', { model: 'pool/gpt-5.5', input: 'after pause', stream: false }, secret);
    if (r.status !== 200) fail('turn after pause failed: ' + JSON.stringify(r));
    const d = await until('request ' + r.id, async () => {
      const x = await fetch(`${GATE}/api/requests/${r.id}`);
      return x.ok ? x.json() : null;
    });
    if (d.request.account_id === browserAccount) fail('a paused account served a request');
  }
  log('paused account skipped for 3 turns');

  // 7. Charts render with data; the routes page lists the targets.
  await page.goto(GATE + '/#/overview');
  await page.waitForSelector('svg[data-chart=requests] rect');
  const rects = await page.$$eval('svg[data-chart=tokens] rect', (r) => r.length);
  if (rects < 1) fail('the tokens chart is empty');
  const total = await page.textContent('#totals .stat b');
  if (Number(total.replace(/\D/g, '')) < 7) fail('overview counts ' + total + ' requests');
  await shot('overview');
  await page.goto(GATE + '/#/routes');
  await page.waitForSelector('tr[data-target]');
  await shot('routes');

  // 8. Once an admin key exists, the page asks for a sign-in, and the key signs in.
  // (Node's fetch sends Sec-Fetch-Mode like a browser, so it needs the page's CSRF token too.)
  const sess = await (await fetch(GATE + '/dashboard/api/session')).json();
  const admin = await (async () => {
    const r = await fetch(GATE + '/api/keys', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': sess.csrf }, body: JSON.stringify({ name: 'admin', admin: true }) });
    return { status: r.status, json: await r.json() };
  })();
  if (admin.status !== 200) fail('admin key: ' + JSON.stringify(admin));
  await page.goto(GATE + '/#/overview');
  await page.reload();
  await page.waitForSelector('#signin');
  await page.fill('#signin-secret', 'cg-wrong');
  await page.click('#signin button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent.length > 0);
  await page.fill('#signin-secret', admin.json.key);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#totals');
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === 'cg_session');
  if (!c || !c.httpOnly || c.sameSite !== 'Strict') fail('session cookie: ' + JSON.stringify(c));
  // A state change from the signed-in page works (it sends the CSRF token).
  await page.goto(GATE + '/#/accounts');
  await page.click(`${row} button:has-text("Resume")`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector('.pill')?.textContent === 'active', row);
  await shot('signed-in');

  // 9. A device-code login: the page shows the code, and the account joins once it is approved.
  await page.click('#login-device');
  const code = await (await page.waitForSelector('#device-code')).textContent();
  if (code.trim() !== 'CODE-1234') fail('device code: ' + code);
  await page.waitForFunction(() => /Added/.test(document.querySelector('#login-state')?.textContent || ''), null, { timeout: 20000 });
  await page.waitForFunction(() => document.querySelectorAll('tr[data-account]').length === 3, null, { timeout: 15000 });
  await shot('device-login');

  // 10. A cooldown that ends shows without a reload. The mock fails the device account's turns
  // (500); with the other two paused, one turn lands on it and it cools down for 5 s. Its pill
  // says "cooling" with a countdown, then turns back to "active" on its own when that ends.
  const ids = await page.$$eval('tr[data-account]', (rows) => rows.map((r) => [r.dataset.account, r.textContent]));
  const device = (ids.find(([, t]) => t.includes('acc-device@example.com')) || [])[0] || fail('no device row');
  const others = ids.map(([id]) => id).filter((id) => id !== device);
  const adminPost = async (path) => {
    const r = await fetch(GATE + path, { method: 'POST', headers: { authorization: 'Bearer ' + admin.json.key } });
    if (r.status !== 200) fail(path + ': ' + r.status);
  };
  for (const id of others) await adminPost(`/api/accounts/${id}/pause`);
  await page.evaluate(() => { window.__sameDocument = true; });
  const failed = await post('/v1/responses', { model: 'pool/gpt-5.5', input: 'to the failing account', stream: false }, secret);
  if (failed.status < 500) fail('the failing account answered: ' + JSON.stringify(failed));
  const devRow = `tr[data-account="${device}"]`;
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector('.pill')?.textContent === 'cooling', devRow, { timeout: 10000 });
  const endsAt = Number(await page.getAttribute(`${devRow} .countdown[data-prefix="ends in "]`, 'data-at'));
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector('.pill')?.textContent === 'active', devRow, { timeout: 15000 });
  const late = Date.now() / 1000 - endsAt;
  if (late > 2.5) fail(`the cooldown showed as ended ${late.toFixed(1)} s after it ended`);
  if (!(await page.evaluate(() => window.__sameDocument))) fail('the page reloaded');
  log(`cooldown ended in the page ${late.toFixed(2)} s after its countdown`);
  for (const id of others) await adminPost(`/api/accounts/${id}/resume`);
  if (problems.length) fail(problems.join('\n'));
  console.log(JSON.stringify({ ok: true, browserAccount }));
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(String(e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
