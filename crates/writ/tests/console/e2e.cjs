// The console in headless Chromium (run by crates/writ/tests/console.rs,
// which starts the server, the witness and the governed process tree, and
// passes them in the environment). Every area is reached from the front
// page's navigation; the visible content is asserted; a revoke from the
// lineage explorer must end the governed process; screenshots at 1280x800
// and 390 px wide; zero console errors and zero page errors.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const assert = require('assert/strict');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const BASE = process.env.WRIT_URL;
const ADMIN = process.env.WRIT_ADMIN_TOKEN;
const ROOT = process.env.ROOT_JTI;
const CHILD = process.env.CHILD_JTI;
const PID = Number(process.env.CHILD_PID);
const SHOTS = process.env.SHOTS;
const T0 = Date.now();

function log(...a) { console.log('[' + ((Date.now() - T0) / 1000).toFixed(1) + 's]', ...a); }

async function authorize(argv) {
  const r = await fetch(BASE + '/v1/authorize', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + ADMIN, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      action: 'Action::"exec"', resource: 'Command::' + JSON.stringify(argv[0]),
      request: { argv }, audience: 'exec@browser',
    }),
  });
  return r.json();
}

function alive(pid) {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 1).trim().startsWith('Z');
  } catch (_) { return false; }
}

async function until(what, f, ms) {
  const end = Date.now() + (ms || 15000);
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const profile = process.env.PROFILE || fs.mkdtempSync(path.join(os.tmpdir(), 'writ-chromium-'));
  fs.rmSync(profile, { recursive: true, force: true });
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  const problems = [];
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error on ' + page.url() + ': ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error on ' + page.url() + ': ' + e.message));
  page.setDefaultTimeout(15000);
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: false });
  const nav = async (label, title) => {
    await page.getByRole('navigation', { name: 'Console areas' }).getByRole('link', { name: label, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: title }).waitFor();
    assert.equal(await page.locator('nav a[aria-current="page"]').innerText(), label);
  };

  // ---------------------------------------------------------- governance
  await page.goto(BASE + '/');
  await page.getByRole('heading', { level: 1, name: 'Governance' }).waitFor();
  // Without a token the log's content is not shown: the page says to sign in.
  await until('the sign-in prompt', async () => (await page.locator('#status').innerText()).includes('Sign in'));
  assert.equal(await page.locator('#decisions tbody tr').count(), 0, 'no decision is shown before signing in');
  // Token login: kept in sessionStorage, not in the page; the page loads
  // again with it.
  await page.getByLabel('Token', { exact: true }).fill(ADMIN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signed-in').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('writ.admin-token')), ADMIN);
  assert.ok(!(await page.content()).includes(ADMIN), 'the token is not in the DOM');
  await until('the stream to be live', async () => (await page.locator('#live-state').innerText()) === 'live');
  const rows = page.locator('#decisions tbody tr:not([hidden])');
  await until('decision rows', async () => (await rows.count()) >= 3);
  const table = await page.locator('#decisions').innerText();
  for (const s of ['policy_denied', 'allow', 'deny', 'Agent::"planner"', 'Action::"exec"', 'Command::"/usr/bin/rm"']) {
    assert.ok(table.includes(s), 'the decision list shows ' + s);
  }
  // Live: a decision made now appears without a reload.
  const fresh = await authorize(['/usr/bin/uname', '-a']);
  assert.equal(fresh.decision, 'allow');
  await page.locator('#decisions tbody tr', { hasText: 'Command::"/usr/bin/uname"' }).first().waitFor();
  // Filters: deny only, then a reason code.
  await page.getByLabel('Outcome').selectOption('deny');
  await until('deny-only rows', async () => {
    const outcomes = await rows.locator('td:nth-child(6)').allInnerTexts();
    return outcomes.length > 0 && outcomes.every((o) => o === 'deny');
  });
  await page.getByLabel('Outcome').selectOption('');
  await page.getByLabel('Reason code').fill('policy_denied');
  assert.ok((await rows.count()) >= 1);
  for (const r of await rows.locator('td:nth-child(7)').allInnerTexts()) assert.equal(r, 'policy_denied');
  await page.getByLabel('Reason code').fill('');
  // The active bundle and its history; the revocation made before.
  const ready = await (await fetch(BASE + '/readyz')).json();
  assert.equal(await page.locator('#policy-hash').innerText(), ready.policy);
  assert.ok((await page.locator('#policy-ids').innerText()).includes('never-rm'));
  assert.ok((await page.locator('#activations tbody tr').count()) >= 2, 'two activations: init and the test bundle');
  assert.ok((await page.locator('#revocations').innerText()).includes('test'));
  await shot('governance-1280');
  log('governance ok');

  // Keyboard: from a fresh load, the skip link first, then the brand and
  // the areas; Enter follows a link.
  await page.goto(BASE + '/');
  await page.getByRole('heading', { level: 1, name: 'Governance' }).waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement.textContent === 'Proof viewer');
  }
  assert.ok(reached, 'the Proof viewer link is reachable with Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.equal(outline, 'solid', 'a focused link shows a focus outline');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Proof viewer' }).waitFor();
  log('keyboard navigation ok');

  // ---------------------------------------------------------- proof viewer
  const w = await authorize(['/usr/bin/date']);
  assert.equal(w.decision, 'allow');
  await until('a checkpoint covering the new entry', async () => {
    const note = await (await fetch(BASE + '/v1/log/checkpoint')).text();
    return Number(note.split('\n')[1]) > w.log_index && note.includes('localhost/writ-witness');
  });
  await page.getByLabel('Writ (compact JWS)').fill(w.writ);
  await page.getByRole('button', { name: 'Verify writ' }).click();
  await page.locator('#checks li').first().waitFor();
  const checks = page.locator('#checks li');
  const n = await checks.count();
  assert.ok(n >= 9, 'every check is listed (' + n + ')');
  const bad = await page.locator('#checks li.bad').allInnerTexts();
  assert.deepEqual(bad, [], 'a fresh writ passes every check');
  assert.equal(await page.locator('#checks li.pending').count(), 0);
  const checkText = await page.locator('#checks').innerText();
  for (const s of ['signature', 'validity window', 'not revoked', 'inclusion in the signed checkpoint', 'cosigned by witness localhost/writ-witness']) {
    assert.ok(checkText.includes(s), 'check listed: ' + s);
  }
  assert.ok((await page.locator('#claims').innerText()).includes(w.jti));
  assert.ok((await page.locator('#path tbody tr').count()) >= 1, 'an inclusion path');
  assert.ok((await page.locator('#checkpoint').innerText()).includes('\u2014 localhost/writ-witness'));
  const sigs = await page.locator('#signatures').innerText();
  assert.ok(sigs.includes('log signature') && sigs.includes('witness signature'), sigs);
  await shot('proof-1280');
  // A tampered writ: the signature check is red, with its reason code.
  const parts = w.writ.split('.');
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  claims.writ.resource = 'Command::"/usr/bin/rm"';
  const forged = parts[0] + '.' + Buffer.from(JSON.stringify(claims)).toString('base64url') + '.' + parts[2];
  await page.getByLabel('Writ (compact JWS)').fill(forged);
  await page.getByRole('button', { name: 'Verify writ' }).click();
  const sig = page.locator('#checks li', { hasText: 'signature and claims' });
  await until('the signature check to fail', async () => (await sig.getAttribute('class')) === 'bad');
  assert.ok((await sig.innerText()).includes('invalid_signature'));
  log('proof viewer ok');

  // ---------------------------------------------------------- health
  await nav('Health', 'Health');
  const node = page.locator('#nodes tbody tr').first();
  await node.waitFor();
  const nodeText = await node.innerText();
  assert.ok(nodeText.includes(ready.policy) && nodeText.includes('fresh'), nodeText);
  for (let i = 0; i < 4; i++) await authorize(['/usr/bin/true']);
  await until('the rate and latency charts', async () =>
    (await page.locator('#chart-rate polyline').count()) === 1 && (await page.locator('#chart-latency polyline').count()) >= 1, 20000);
  assert.ok((await page.locator('#chart-log polyline').count()) === 1);
  assert.ok((await page.locator('#latest-figures').innerText()).includes('ms'));
  await shot('health-1280');
  log('health ok');

  // ---------------------------------------------------------- lineage
  await nav('Lineage', 'Lineage');
  await page.locator('#recent a', { hasText: ROOT }).click();
  await page.locator('#tree a').first().waitFor();
  assert.ok((await page.locator('#tree a').count()) >= 2, 'root and child drawn');
  const rootRow = page.locator('#tree-nodes tbody tr[data-jti="' + ROOT + '"]');
  const childRow = page.locator('#tree-nodes tbody tr[data-jti="' + CHILD + '"]');
  assert.equal(await rootRow.getAttribute('data-status'), 'running');
  assert.equal(await childRow.getAttribute('data-status'), 'running');
  const proofHref = await page.locator('#tree a').first().getAttribute('href');
  assert.match(proofHref, /^\/console\/proof\?index=\d+$/);
  await shot('lineage-running-1280');
  assert.ok(alive(PID), 'the governed process runs before the revoke');
  await rootRow.getByRole('button', { name: 'Revoke subtree' }).click();
  await until('the revocation to be confirmed', async () => (await page.locator('#lineage-result').innerText()).startsWith('Revoked'));
  const tRevoke = Date.now();
  await until('the governed process to die', async () => !alive(PID), 15000);
  log('governed process died ' + (Date.now() - tRevoke) + ' ms after the revoke was confirmed');
  await until('both nodes shown revoked', async () =>
    (await rootRow.getAttribute('data-status')) === 'revoked' && (await childRow.getAttribute('data-status')) === 'revoked');
  await shot('lineage-1280');
  // Click-through to the proof viewer.
  await page.locator('#tree a').first().click();
  await page.getByRole('heading', { level: 1, name: 'Proof viewer' }).waitFor();
  await page.locator('#checks li.ok', { hasText: 'inclusion in the signed checkpoint' }).waitFor();
  assert.ok((await page.locator('#entry').innerText()).includes(ROOT));
  log('lineage ok');

  // ---------------------------------------------------------- demo
  await nav('Runtime demo', 'Runtime demo');
  await page.getByRole('button', { name: 'Run the demo' }).click();
  await until('six demo steps', async () => (await page.locator('#demo-steps li').count()) === 6, 30000);
  await until('the demo to finish', async () => (await page.locator('#demo-note').innerText()).startsWith('Done'));
  const outcomes = await page.locator('#demo-steps li').evaluateAll((ls) => ls.map((l) => l.dataset.outcome));
  assert.deepEqual(outcomes, ['allow', 'policy_denied', 'invalid_signature', 'replayed', 'expired', 'revoked']);
  assert.equal(await page.locator('#demo-steps li.bad').count(), 0);
  await shot('demo-1280');
  log('demo ok');

  // ---------------------------------------------------------- maturity
  await nav('Maturity', 'Maturity');
  // Checkpoints trail the last entries by up to a second; assess until the
  // latest one covers the log (and carries the witness's cosignature).
  await until('level 5', async () => {
    const l = await page.locator('#level').getAttribute('data-level');
    if (l === '5') return true;
    if (l !== null) await page.getByRole('button', { name: 'Assess again' }).click();
    await new Promise((r) => setTimeout(r, 700));
    return false;
  }, 30000);
  assert.ok((await page.locator('#level').innerText()).includes('Cryptographically Governed Execution'));
  const met = await page.locator('#criteria tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.met));
  assert.ok(met.length >= 10 && met.every((m) => m === 'true'), JSON.stringify(met));
  assert.ok((await page.locator('#criteria').innerText()).includes('witnesses configured'));
  await shot('maturity-1280');
  log('maturity ok');

  // ---------------------------------------------------------- 390 px wide
  await page.setViewportSize({ width: 390, height: 844 });
  const narrow = [['/', 'governance', '#decisions tbody tr:not([hidden])'], ['/console/proof?index=' + w.log_index, 'proof', '#checks li'],
    ['/console/health', 'health', '#nodes tbody tr'], ['/console/lineage?jti=' + ROOT, 'lineage', '#tree a'],
    ['/console/demo', 'demo', '#demo-run'], ['/console/maturity', 'maturity', '#criteria tbody tr']];
  for (const [p, name, ready] of narrow) {
    await page.goto(BASE + p);
    await page.locator(ready).first().waitFor();
    await shot(name + '-390');
    // Hashes and keys are base64 or hex without break opportunities, and
    // how wide one is depends on its letters: give every paragraph a token
    // wider than the screen so the check does not depend on this run's.
    await page.evaluate(() => document.querySelectorAll('main p').forEach((p) => p.append(' ' + 'W'.repeat(60))));
    const { sw, iw, wide } = await page.evaluate(() => ({
      sw: document.documentElement.scrollWidth,
      iw: window.innerWidth,
      // What sticks out, to name the culprit when the check fails.
      wide: [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth
          || (e.scrollWidth > e.clientWidth && e.clientWidth > 0 && getComputedStyle(e).overflowX === 'visible'))
        .slice(0, 5)
        .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '')
          + ' right=' + Math.ceil(e.getBoundingClientRect().right) + ' "' + (e.textContent || '').slice(0, 60) + '"'),
    }));
    assert.ok(sw <= iw, name + ' scrolls horizontally at 390 px: ' + sw + ' > ' + iw + '; sticking out: ' + wide.join(' | '));
  }
  log('390 px ok');

  await ctx.close();
  assert.deepEqual(problems, [], 'no console or page errors');
  log('console e2e: all areas passed');
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
