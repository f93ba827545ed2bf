/**
 * The user-visible flows of the plugin, run once with the rtet extension
 * loaded into php-fpm and once without it (HTTP fallback). Each run starts
 * its own site (MariaDB, php-fpm, nginx, WordPress, relay) on free loopback
 * ports and tears it down.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  siteWithAdmin, newContext, openConnected, waitConnected, login, createUser, publishPost, toast, uniq,
  SEE_TIMEOUT,
} from './harness.mjs';

/** The relay's count of stored events (from /metrics). */
async function relayPublished(site) {
  const text = await (await fetch(`${site.relayHttp}/metrics`)).text();
  const m = text.match(/^rtet_events_published_total(?:\{[^}]*\})? (\d+)/m);
  if (!m) throw new Error('rtet_events_published_total not in /metrics');
  return Number(m[1]);
}

/** Waits (bounded) until the relay has stored at least `count` events. */
async function waitForRelayEvents(site, count) {
  const deadline = Date.now() + SEE_TIMEOUT;
  while ((await relayPublished(site)) < count) {
    if (Date.now() > deadline) throw new Error(`the relay did not store ${count} events`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function defineFlows({ extension }) {
  const mode = extension ? 'with the extension' : 'HTTP fallback';

  describe(`plugin flows (${mode})`, () => {
    let site;
    let browser;
    let admin; // browser context, logged in as the administrator
    let rest; // REST API as the administrator

    siteWithAdmin({ extension }, (held) => ({ site, browser, admin, rest } = held));

    it('shows the transport in use on the settings page', async () => {
      const page = await admin.newPage();
      await page.goto(`${site.url}/wp-admin/admin.php?page=real-time-events`);
      const transport = await page.locator('#rtet-status-transport td').textContent();
      if (extension) assert.match(transport, /rtet extension .* loaded/);
      else assert.match(transport, /HTTP fallback/);
      assert.match(await page.locator('#rtet-status-relay td').textContent(), /Reachable/);
      await page.close();
    });

    it('a published post shows a toast on a visitor\'s open page, once; private and password-protected posts do not', async () => {
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, '/');
      const id = uniq();
      const privateTitle = `Private ${id}`;
      const protectedTitle = `Protected ${id}`;
      const draftTitle = `Draft ${id}`;
      const title = `Hello visitors ${id}`;
      await rest.post('/wp/v2/posts', { title: privateTitle, status: 'private' });
      await rest.post('/wp/v2/posts', { title: protectedTitle, status: 'publish', password: 'secret' });
      await rest.post('/wp/v2/posts', { title: draftTitle, status: 'draft' });
      await publishPost(rest, title);

      const t = toast(page, title);
      await t.waitFor({ timeout: SEE_TIMEOUT });
      assert.equal(await t.count(), 1);
      assert.equal(await t.getByRole('link').getAttribute('href'), `${site.url}/hello-visitors-${id}/`);
      const region = page.locator('#rtet-toasts');
      assert.equal(await region.getAttribute('aria-live'), 'polite');
      const body = await page.locator('body').textContent();
      for (const hidden of [privateTitle, protectedTitle, draftTitle]) assert.ok(!body.includes(hidden), `${hidden} must not be shown`);
      // Dismissable.
      await t.getByRole('button', { name: 'Dismiss' }).click();
      await t.waitFor({ state: 'detached' });

      // Editing the post later is post_updated, not a second toast.
      const posts = await rest.get(`/wp/v2/posts?search=${encodeURIComponent(title)}`);
      await rest.post(`/wp/v2/posts/${posts[0].id}`, { content: 'edited' });
      await page.waitForFunction((pid) => window.__rtet.events.some((e) => e.event === 'post_updated' && e.data.id === pid),
        posts[0].id, { timeout: SEE_TIMEOUT });
      assert.equal(await toast(page, title).count(), 0);
      const published = await page.evaluate(() => window.__rtet.events.filter((e) => e.event === 'post_published').map((e) => e.data.title));
      assert.deepEqual(published, [title]);
      await visitor.close();
    });

    it('a scheduled post shows the toast when it goes live, not when it is scheduled', async () => {
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, '/');
      const title = `Scheduled ${uniq()}`;
      const marker = `Published after scheduling ${uniq()}`;
      const { id } = await rest.post('/wp/v2/posts', { title, status: 'future', date_gmt: new Date(Date.now() + 3600e3).toISOString().slice(0, 19) });
      // Scheduling sends nothing: a later post's toast arrives first.
      await publishPost(rest, marker);
      await toast(page, marker).waitFor({ timeout: SEE_TIMEOUT });
      assert.equal(await toast(page, title).count(), 0);
      // WP-Cron's publish_future_post runs wp_publish_post(); do what it does, in a PHP process.
      await site.wpEval('wp_publish_post( (int) $args["id"] );', { id });
      await toast(page, title).waitFor({ timeout: SEE_TIMEOUT });
      assert.equal(await toast(page, title).count(), 1);
      await visitor.close();
    });

    it('the settings page saves valid settings, rejects an invalid URL keeping the old value, and never shows the key', async () => {
      const page = await admin.newPage();
      const settingsUrl = `${site.url}/wp-admin/admin.php?page=real-time-events`;
      await page.goto(settingsUrl);
      assert.equal(await page.locator('#rtet_api_key').inputValue(), '');
      assert.equal(await page.locator('#rtet_api_key').getAttribute('type'), 'password');

      // "Generate key" fills in a strong key in the browser, shown once so it can be copied to the relay.
      await page.click('#rtet_generate_key');
      const generated = await page.locator('#rtet_api_key').inputValue();
      assert.match(generated, /^[A-Za-z0-9]{48}$/);
      assert.equal(await page.locator('#rtet_api_key').getAttribute('type'), 'text');
      await page.fill('#rtet_api_key', ''); // not saved: the relay knows the current key

      // Valid: a public URL with a trailing slash; the key left blank keeps the stored key.
      const valid = `${site.relayUrl}/`;
      await page.fill('#rtet_public_url', valid);
      await Promise.all([page.waitForURL(/settings-updated=true/), page.click('#submit')]);
      await page.getByText('Settings saved.').waitFor();
      assert.equal(await page.locator('#rtet_public_url').inputValue(), valid);

      // Invalid: an ftp:// URL is refused with an error and the old value stays.
      await page.fill('#rtet_public_url', 'ftp://example.com/');
      await Promise.all([page.waitForURL(/settings-updated=true/), page.click('#submit')]);
      const error = page.locator('.notice-error, .error', { hasText: 'must be a ws:// or wss:// URL' });
      await error.waitFor();
      assert.equal(await page.getByText('Settings saved.').count(), 0);
      assert.equal(await page.locator('#rtet_public_url').inputValue(), valid);

      // The stored key still works: the test event comes back live on this page.
      await waitConnected(page, 1);
      await page.click('#rtet_send_test');
      await page.locator('#rtet_test_log .rtet-test-received').waitFor({ timeout: SEE_TIMEOUT });

      // The key appears in no page's HTML or JS, front end or admin, nor in the token answer.
      const visitor = await newContext(browser);
      const sources = [];
      for (const [ctx, path] of [[admin, '/wp-admin/admin.php?page=real-time-events'], [admin, '/wp-admin/'],
        [admin, '/'], [visitor, '/'], [admin, '/wp-json/rtet/v1/token'], [visitor, '/wp-json/rtet/v1/token']]) {
        const p = await ctx.newPage();
        const scripts = [];
        p.on('response', async (r) => {
          if (/\.js(\?|$)/.test(r.url())) scripts.push(r.text().catch(() => ''));
        });
        const res = await p.goto(site.url + path);
        sources.push([path, await res.text()]);
        for (const s of await Promise.all(scripts)) sources.push([`${path} (script)`, s]);
        await p.close();
      }
      for (const [where, text] of sources) {
        assert.ok(!text.includes(site.apiKey), `the API key appears in ${where}`);
      }
      assert.ok(sources.some(([w, s]) => w.includes('script') && s.includes('rtet:event')), 'the client script was checked');
      await visitor.close();
      await page.close();
    });

    it('user_registered reaches an administrator\'s open dashboard and never a visitor\'s page', async () => {
      const dash = await admin.newPage();
      await dash.goto(`${site.url}/wp-admin/`);
      await waitConnected(dash, 1);
      const visitor = await newContext(browser);
      const vpage = await openConnected(visitor, site, '/');

      const user = await createUser(rest, 'subscriber');
      const notice = dash.locator('.rtet-notice', { hasText: `New user registered: ${user.username} (${user.email})` });
      await notice.waitFor({ timeout: SEE_TIMEOUT });
      await notice.locator('.notice-dismiss').click();
      await notice.waitFor({ state: 'detached' });

      // A later public event reaches the visitor: it would have seen the registration by now.
      const title = `After registration ${uniq()}`;
      await publishPost(rest, title);
      await toast(vpage, title).waitFor({ timeout: SEE_TIMEOUT });
      const vtext = await vpage.locator('body').textContent();
      assert.ok(!vtext.includes(user.email));
      assert.ok(!vtext.includes(user.username));
      assert.deepEqual(await vpage.evaluate(() => window.__rtet.events.filter((e) => e.event === 'user_registered')), []);
      await visitor.close();
      await dash.close();
    });

    it('a logged-in user\'s page never receives events sent to another user\'s channel', async () => {
      const alice = await createUser(rest, 'subscriber');
      const bob = await createUser(rest, 'subscriber');
      const actx = await newContext(browser);
      const bctx = await newContext(browser);
      await login(actx, site, alice.username, alice.password);
      await login(bctx, site, bob.username, bob.password);
      const apage = await openConnected(actx, site, '/');
      const bpage = await openConnected(bctx, site, '/');

      const forBob = `For Bob only ${uniq()}`;
      const forAlice = `For Alice only ${uniq()}`;
      await rest.post('/rtet-e2e/v1/send', { event: 'e2e_message', data: { text: forBob }, channels: [`user.${bob.id}`] });
      await rest.post('/rtet-e2e/v1/send', { event: 'e2e_message', data: { text: forAlice }, channels: [`user.${alice.id}`] });

      await bpage.locator('#e2e-messages li', { hasText: forBob }).waitFor({ timeout: SEE_TIMEOUT });
      await apage.locator('#e2e-messages li', { hasText: forAlice }).waitFor({ timeout: SEE_TIMEOUT });
      // Alice's message was sent after Bob's: had Bob's reached Alice, it would be there already.
      assert.deepEqual(await apage.locator('#e2e-messages li').allTextContents(), [forAlice]);
      assert.deepEqual(await bpage.locator('#e2e-messages li').allTextContents(), [forBob]);

      // Alice cannot subscribe to Bob's channel even by asking the relay herself.
      const answer = await apage.evaluate(async (bobChannel) => {
        const res = await fetch(window.rtetSettings.tokenUrl, { headers: { 'X-WP-Nonce': window.rtetSettings.nonce } });
        const tk = await res.json();
        return new Promise((resolve) => {
          const ws = new WebSocket(tk.url);
          ws.onopen = () => {
            ws.send(JSON.stringify({ type: 'auth', token: tk.token }));
            ws.send(JSON.stringify({ type: 'subscribe', channel: bobChannel }));
          };
          ws.onmessage = (m) => {
            const f = JSON.parse(m.data);
            if (f.type === 'error' || f.type === 'subscribed') { ws.close(); resolve({ frame: f, granted: tk.channels }); }
          };
        });
      }, `user.${bob.id}`);
      assert.equal(answer.frame.type, 'error');
      assert.equal(answer.frame.code, 'forbidden');
      assert.ok(answer.granted.includes(`user.${alice.id}`) && !answer.granted.includes(`user.${bob.id}`));
      await actx.close();
      await bctx.close();
    });

    it('a page stays connected past its token\'s expiry: the client sends fresh tokens in time', async () => {
      await site.wpEval("update_option( 'rtet_e2e_token_ttl', 15 );");
      try {
        // A logged-in user: visitors connect without a token.
        const member = await createUser(rest, 'subscriber');
        const visitor = await newContext(browser);
        await login(visitor, site, member.username, member.password);
        const page = await openConnected(visitor, site, '/');
        // Two refreshes: by then the first token (15 s, no leeway on the relay) has expired.
        await page.waitForFunction(() => window.__rtet.tokens >= 2, null, { timeout: SEE_TIMEOUT });
        const title = `After token refreshes ${uniq()}`;
        await publishPost(rest, title);
        await toast(page, title).waitFor({ timeout: SEE_TIMEOUT });
        assert.deepEqual(await page.evaluate(() => [window.__rtet.connected, window.__rtet.disconnected]), [1, 0],
          'one connection throughout, never dropped');
        await visitor.close();
      } finally {
        await site.wpEval("delete_option( 'rtet_e2e_token_ttl' );");
      }
    });

    it('a page that lost its connection resumes with since: events published meanwhile arrive, each once', async () => {
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, '/');
      const before = `Before the drop ${uniq()}`;
      await publishPost(rest, before);
      await toast(page, before).waitFor({ timeout: SEE_TIMEOUT });

      await page.evaluate(() => window.rtet.stop()); // the page is offline
      const stored = await relayPublished(site);
      const missed1 = `Missed while offline ${uniq()}`;
      const missed2 = `Also missed while offline ${uniq()}`;
      await publishPost(rest, missed1);
      await publishPost(rest, missed2);
      // Both events are in the relay's history before the page comes back.
      await waitForRelayEvents(site, stored + 2);
      await page.evaluate(() => window.rtet.start());

      await toast(page, missed1).waitFor({ timeout: SEE_TIMEOUT });
      await toast(page, missed2).waitFor({ timeout: SEE_TIMEOUT });
      const titles = await page.evaluate(() => window.__rtet.events.filter((e) => e.event === 'post_published').map((e) => e.data.title));
      assert.deepEqual(titles, [before, missed1, missed2]);
      assert.equal(await page.evaluate(() => window.__rtet.resync), 0, 'history was replayed, no resync needed');
      await visitor.close();
    });

    it('the relay restarts while a page is open; events published meanwhile arrive after the page reconnects', async () => {
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, '/');
      await site.stopRelay();
      await page.waitForFunction(() => window.__rtet.disconnected > 0, null, { timeout: SEE_TIMEOUT });

      const during = `Published while the relay was down ${uniq()}`;
      await publishPost(rest, during);
      await site.startRelay();
      const after = `Published after the relay came back ${uniq()}`;
      await publishPost(rest, after);

      await toast(page, during).waitFor({ timeout: SEE_TIMEOUT });
      await toast(page, after).waitFor({ timeout: SEE_TIMEOUT });
      await waitConnected(page, 2);
      assert.equal(await toast(page, during).count(), 1);
      assert.equal(await toast(page, after).count(), 1);
      await visitor.close();
    });

    it('a page that comes back after a relay restart gets what the new relay holds, and is told older events may be missing', async () => {
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, '/');
      const first = `Before the restart ${uniq()}`;
      await publishPost(rest, first);
      await toast(page, first).waitFor({ timeout: SEE_TIMEOUT });

      await page.evaluate(() => window.rtet.stop()); // the page stays away until both events are in the new relay
      await site.stopRelay();
      const during = `Published while the relay was down, page away ${uniq()}`;
      await publishPost(rest, during);
      await site.startRelay(); // a new relay: history starts over (a new epoch)
      const after = `Published after the restart, page away ${uniq()}`;
      await publishPost(rest, after);
      await waitForRelayEvents(site, 2);
      await page.evaluate(() => window.rtet.start());

      await toast(page, during).waitFor({ timeout: SEE_TIMEOUT });
      await toast(page, after).waitFor({ timeout: SEE_TIMEOUT });
      assert.equal(await toast(page, during).count(), 1);
      assert.equal(await toast(page, after).count(), 1);
      assert.equal(await toast(page, first).count(), 1);
      assert.equal(await page.evaluate(() => window.__rtet.resync), 1, 'the page was told once that history was lost');
      await visitor.close();
    });

    it('uninstalling removes the plugin\'s options (last: it changes the site)', async () => {
      const out = await site.wpEval(`
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$before = is_array( get_option( 'rtet_settings' ) );
deactivate_plugins( 'real-time-event-trigger/real-time-event-trigger.php', true );
uninstall_plugin( 'real-time-event-trigger/real-time-event-trigger.php' );
wp_cache_flush();
echo json_encode( array( 'before' => $before, 'after' => get_option( 'rtet_settings', 'gone' ), 'meta' => count( get_posts( array( 'meta_key' => '_rtet_published', 'post_type' => 'any', 'numberposts' => -1 ) ) ) ) );
`);
      assert.deepEqual(JSON.parse(out.trim().split('\n').pop()), { before: true, after: 'gone', meta: 0 });
      // The site no longer loads the client.
      const html = await (await fetch(`${site.url}/`)).text();
      assert.ok(!html.includes('rtet-client'));
    });
  });
}
