/**
 * Shared helpers for the end-to-end tests: the site (scripts/site/stack.mjs),
 * headless Chromium through playwright-core (Debian's /usr/bin/chromium,
 * never a downloaded browser), logging in, and the WordPress REST API as an
 * administrator.
 */
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { startSite, EXTENSION_SO } from '../../../scripts/site/stack.mjs';

export { EXTENSION_SO };

/** Whether rtet.so is built (the extension-dependent tests need it). */
export const extensionBuilt = fs.existsSync(EXTENSION_SO);

/** How long to wait for something a user would see (events, reconnects). */
export const SEE_TIMEOUT = 60000;

const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];

/** Starts a site with the test fixtures installed. */
export async function startTestSite(opts = {}) {
  const log = process.env.RTET_E2E_VERBOSE ? (m) => console.error(`# site: ${m}`) : () => {};
  // No clock leeway on tokens: an expired token is refused at once, so the refresh test means something.
  return startSite({ fixtures: true, log, relayArgs: ['--token-leeway', '0s'], ...opts });
}

/** Launches headless Chromium. */
export function launchBrowser() {
  return chromium.launch({ executablePath: process.env.RTET_CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** A short unique suffix for titles and logins. */
export function uniq() {
  return randomBytes(4).toString('hex');
}

/**
 * Records what the client fires into window.__rtet, before any page script runs,
 * so a test can wait for "connected" and inspect received events.
 */
const RECORDER = `
  window.__rtet = { events: [], connected: 0, disconnected: 0, resync: 0, tokens: 0 };
  document.addEventListener('rtet:event', function (e) { window.__rtet.events.push(e.detail); });
  document.addEventListener('rtet:connected', function () { window.__rtet.connected++; });
  document.addEventListener('rtet:disconnected', function () { window.__rtet.disconnected++; });
  document.addEventListener('rtet:resync', function () { window.__rtet.resync++; });
  document.addEventListener('rtet:token', function () { window.__rtet.tokens++; });
`;

/** A new browser context whose pages record rtet events. */
export async function newContext(browser) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(RECORDER);
  return ctx;
}

/** Opens `path` and waits until the client has subscribed. */
export async function openConnected(ctx, site, path = '/') {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`# page error on ${path}: ${e.message}`));
  await page.goto(site.url + path);
  await waitConnected(page, 1);
  return page;
}

/** Waits until the page's client has subscribed at least `n` times. */
export async function waitConnected(page, n = 1) {
  await page.waitForFunction((k) => window.__rtet && window.__rtet.connected >= k, n, { timeout: SEE_TIMEOUT });
}

/**
 * Logs `user` in within the context: the login form's POST to wp-login.php,
 * sent by the context's own request API so the session cookies land in the
 * context. (Typed into the page under load, the form was sometimes sent
 * without the password filled in: WordPress answered "The password field is
 * empty" while its login-page scripts (user-profile.js, which disables a
 * password field it finds hidden) were still starting.)
 */
export async function login(ctx, site, user, password) {
  const url = `${site.url}/wp-login.php`;
  await ctx.request.get(url); // sets WordPress's test cookie, as opening the form does
  const answer = await ctx.request.post(url, {
    form: { log: user, pwd: password, testcookie: '1', 'wp-submit': 'Log In', redirect_to: `${site.url}/wp-admin/` },
    maxRedirects: 0,
  });
  const location = answer.headers().location || '';
  if (answer.status() !== 302 || !location.includes('/wp-admin/')) {
    const body = await answer.text().catch((e) => `(no body: ${e.message})`);
    const said = /<div id="login_error"[^>]*>([\s\S]*?)<\/div>/.exec(body)?.[1].replace(/<[^>]+>/g, '').trim();
    throw new Error(`login as ${user}: wp-login.php answered HTTP ${answer.status()} ${location}, not a redirect to wp-admin: ` +
      `${said || body.replace(/\s+/g, ' ').slice(0, 600)}\n${site.logTails()}`);
  }
}

/**
 * Registers a `describe`'s before/after hooks for the usual start: a site
 * (`startTestSite(siteOpts)`), a browser, a context logged in as the
 * administrator and the REST API as the administrator, handed to `use` once
 * ready; the browser and the site are stopped after the last test.
 */
export function siteWithAdmin(siteOpts, use) {
  const held = {};
  before(async () => {
    held.site = await startTestSite(siteOpts);
    held.browser = await launchBrowser();
    held.admin = await newContext(held.browser);
    await login(held.admin, held.site, held.site.admin.user, held.site.admin.password);
    held.rest = await restClient(held.admin, held.site);
    use(held);
  });
  after(async () => {
    await held.browser?.close();
    await held.site?.stop();
  });
}

/** The REST API as the context's logged-in user (cookie + X-WP-Nonce). */
export async function restClient(ctx, site) {
  const res = await ctx.request.get(`${site.url}/wp-admin/admin-ajax.php?action=rest-nonce`);
  const nonce = (await res.text()).trim();
  if (!/^[0-9a-f]{10}$/.test(nonce)) throw new Error(`no REST nonce: ${nonce.slice(0, 200)}`);
  const call = async (method, route, data) => {
    const r = await ctx.request.fetch(`${site.url}/wp-json${route}`, {
      method, headers: { 'X-WP-Nonce': nonce }, data,
    });
    const body = await r.json().catch(() => null);
    if (!r.ok()) throw new Error(`${method} ${route}: HTTP ${r.status()} ${JSON.stringify(body)}`);
    return body;
  };
  return {
    nonce,
    get: (route) => call('GET', route),
    post: (route, data) => call('POST', route, data),
  };
}

/** Creates a user through the REST API; returns {id, username, password, email}. */
export async function createUser(rest, role = 'subscriber') {
  const username = `user_${uniq()}`;
  const password = randomBytes(12).toString('base64url');
  const email = `${username}@example.test`;
  const body = await rest.post('/wp/v2/users', { username, password, email, roles: [role] });
  return { id: body.id, username, password, email };
}

/** Publishes a post through the REST API. */
export function publishPost(rest, title, extra = {}) {
  return rest.post('/wp/v2/posts', { title, content: `Content of ${title}`, status: 'publish', ...extra });
}

/** A visible toast with this post title. */
export function toast(page, title) {
  return page.locator('.rtet-toast', { hasText: `New post: ${title}` });
}
