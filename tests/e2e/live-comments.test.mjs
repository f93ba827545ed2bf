/**
 * Live comments and save notices, as users see them in real Chromium, with
 * the extension (when built) and with the HTTP fallback:
 *
 * - a comment held for moderation reaches a moderator's open dashboard and
 *   no one else's page; approved by the moderator, it appears on a visitor's
 *   open page of that post (toast and comment count) and not on another
 *   post's page;
 * - two editors in the block editor on one post: one saves, the other sees
 *   a notice with a link to the new revision at once;
 * - two editors in the block editor on one post see each other's name
 *   ("Alice is also editing"); a second tab of one of them is no one new;
 *   when one closes the page, the other's notice goes away;
 * - with the readers badge on, visitors of a public post see "N people
 *   reading" and never who (not even the editor who has it open).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  siteWithAdmin, newContext, openConnected, waitConnected, login, createUser, publishPost, toast, uniq,
  extensionBuilt, SEE_TIMEOUT,
} from './lib/harness.mjs';

/** The events of one name a page received so far. */
function received(page, event) {
  return page.evaluate((name) => window.__rtet.events.filter((e) => e.event === name), event);
}

/** The text of the "also editing" notice a page shows, or null when it shows none. */
function alsoEditing(page) {
  return page.evaluate(() => {
    const n = window.wp.data.select('core/notices').getNotices().find((x) => x.id === 'rtet-also-editing');
    return n ? n.content : null;
  });
}

/** Waits until the page's "also editing" notice reads `text` (null: until it has none). */
function waitAlsoEditing(page, text) {
  return page.waitForFunction((want) => {
    const n = window.wp.data.select('core/notices').getNotices().find((x) => x.id === 'rtet-also-editing');
    return (n ? n.content : null) === want;
  }, text, { timeout: SEE_TIMEOUT });
}

/** Opens the block editor for a post and waits until its client has subscribed. */
async function openEditor(ctx, site, postId) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`# page error in the editor: ${e.message}`));
  await page.goto(`${site.url}/wp-admin/post.php?post=${postId}&action=edit`);
  await page.waitForFunction(() => window.wp && window.wp.data && window.wp.data.select('core/editor').getCurrentPostId(),
    null, { timeout: SEE_TIMEOUT });
  await waitConnected(page, 1);
  return page;
}

for (const extension of extensionBuilt ? [true, false] : [false]) {
  const mode = extension ? 'with the extension' : 'HTTP fallback';

  describe(`live comments and save notices (${mode})`, () => {
    let site;
    let browser;
    let admin;
    let rest;

    siteWithAdmin({ extension }, (held) => ({ site, browser, admin, rest } = held));

    it('a held comment reaches only a moderator\'s dashboard; approved, it reaches the readers of its post and no other page', async () => {
      const id = uniq();
      const postA = await publishPost(rest, `Commented ${id}`);
      const postB = await publishPost(rest, `Other ${id}`);
      // One approved comment already, so the theme shows the comments title with a count.
      // (Stored with another author IP: WordPress refuses a visitor's comment from an IP that commented seconds ago.)
      await rest.post('/wp/v2/comments', { post: postA.id, content: 'First!', author_ip: '192.0.2.1' });

      // Open pages: a visitor on post A and on post B, a moderator's and an author's dashboard.
      const visitor = await newContext(browser);
      const pageA = await openConnected(visitor, site, new URL(postA.link).pathname);
      const pageB = await openConnected(visitor, site, new URL(postB.link).pathname);
      const title = pageA.locator(`[data-rtet-comments-title="${postA.id}"]`);
      assert.match(await title.textContent(), /^One response to/);
      const dash = await admin.newPage();
      await dash.goto(`${site.url}/wp-admin/`);
      await waitConnected(dash, 1);
      const author = await createUser(rest, 'author');
      const actx = await newContext(browser);
      await login(actx, site, author.username, author.password);
      const authorDash = await actx.newPage();
      await authorDash.goto(`${site.url}/wp-admin/`);
      await waitConnected(authorDash, 1);

      // Someone else leaves a comment through the theme's form: a first comment is held for moderation.
      const name = `Carol & Co ${id}`;
      const commenter = await newContext(browser);
      const form = await commenter.newPage();
      await form.goto(postA.link);
      await form.fill('#author', name);
      await form.fill('#email', `carol-${id}@example.test`);
      await form.fill('#comment', `Held words ${id}`);
      await Promise.all([form.waitForNavigation(), form.click('#submit')]);
      assert.match(form.url(), /[?&]unapproved=\d+/, 'WordPress held the comment for moderation');

      const notice = dash.locator('.rtet-notice', { hasText: `A comment by ${name} on "Commented ${id}" is waiting for moderation.` });
      await notice.waitFor({ timeout: SEE_TIMEOUT });
      const moderate = await notice.getByRole('link', { name: 'Moderate it' }).getAttribute('href');
      const [held] = await received(dash, 'comment_held');
      assert.equal(moderate, `${site.url}/wp-admin/comment.php?action=approve&c=${held.data.id}`);
      assert.ok(!JSON.stringify(held.data).includes(`carol-${id}`), 'no e-mail address in the event');

      // The moderator approves it.
      await rest.post(`/wp/v2/comments/${held.data.id}`, { status: 'approve' });
      const t = pageA.locator('.rtet-toast', { hasText: `New comment by ${name}` });
      await t.waitFor({ timeout: SEE_TIMEOUT });
      assert.equal(await t.count(), 1);
      assert.equal(await t.getByRole('link').getAttribute('href'), `${postA.link}#comment-${held.data.id}`);
      assert.match(await title.textContent(), /^2 responses to/);
      const [approved] = await received(pageA, 'comment_approved');
      assert.equal(approved.channel, `post.${postA.id}`);
      assert.equal(approved.data.excerpt, `Held words ${id}`);

      // A later public event reaches every page: had the comment events reached them, they would be there.
      const marker = `After the comment ${id}`;
      await publishPost(rest, marker);
      await toast(pageB, marker).waitFor({ timeout: SEE_TIMEOUT });
      await authorDash.waitForFunction((m) => window.__rtet.events.some((e) => e.event === 'post_published' && e.data.title === m),
        marker, { timeout: SEE_TIMEOUT });
      await toast(pageA, marker).waitFor({ timeout: SEE_TIMEOUT });
      assert.deepEqual(await received(pageB, 'comment_approved'), []);
      assert.equal(await pageB.locator('.rtet-toast', { hasText: 'New comment' }).count(), 0);
      for (const page of [pageA, pageB, authorDash]) {
        assert.deepEqual(await received(page, 'comment_held'), [], 'only moderators hear of held comments');
      }
      assert.equal(await authorDash.locator('.rtet-notice').count(), 0);
      await Promise.all([visitor.close(), actx.close(), commenter.close(), dash.close()]);
    });

    it('spam goes nowhere', async () => {
      const post = await publishPost(rest, `Spammed ${uniq()}`);
      const visitor = await newContext(browser);
      const page = await openConnected(visitor, site, new URL(post.link).pathname);
      const spam = await rest.post('/wp/v2/comments', { post: post.id, content: 'Buy now', status: 'spam' });
      assert.equal(spam.status, 'spam');
      const ok = await rest.post('/wp/v2/comments', { post: post.id, content: 'Real words' });
      await page.waitForFunction((cid) => window.__rtet.events.some((e) => e.event === 'comment_approved' && e.data.id === cid),
        ok.id, { timeout: SEE_TIMEOUT });
      // The spam comment was stored first (the REST API stores it, then marks it as spam): it would have come first.
      assert.deepEqual((await received(page, 'comment_approved')).map((e) => e.data.id), [ok.id]);
      assert.equal(await page.locator('.rtet-toast', { hasText: 'New comment by' }).count(), 1);
      await visitor.close();
    });

    it('two editors on one post: when one saves, the other sees a notice with a link to the new revision', async () => {
      const post = await rest.post('/wp/v2/posts', { title: `Shared draft ${uniq()}`, content: 'Start', status: 'draft' });
      const alice = await createUser(rest, 'editor');
      const bob = await createUser(rest, 'editor');
      const actx = await newContext(browser);
      const bctx = await newContext(browser);
      await login(actx, site, alice.username, alice.password);
      await login(bctx, site, bob.username, bob.password);

      const apage = await openEditor(actx, site, post.id);
      const bpage = await openEditor(bctx, site, post.id);
      // Bob saves his change, as the Update button does.
      const bobTitle = `Bob was here ${uniq()}`;
      await bpage.evaluate(async (title) => {
        window.wp.data.dispatch('core/editor').editPost({ title });
        await window.wp.data.dispatch('core/editor').savePost();
      }, bobTitle);
      const notice = apage.locator('.components-notice', { hasText: 'just saved this post' });
      await notice.waitFor({ state: 'attached', timeout: SEE_TIMEOUT });
      const stored = await apage.evaluate(() => window.wp.data.select('core/notices').getNotices().find((n) => n.id === 'rtet-post-saved'));
      assert.match(stored.content, /^.+ just saved this post\./);
      const revisions = await rest.get(`/wp/v2/posts/${post.id}/revisions`);
      const latest = revisions.find((r) => r.title.rendered === bobTitle);
      assert.ok(latest, 'Bob\'s save made a revision');
      assert.equal(stored.actions[0].url, `${site.url}/wp-admin/revision.php?revision=${latest.id}`);
      // Bob is not told of his own save.
      await bpage.waitForFunction(() => window.__rtet.events.some((e) => e.event === 'post_saved'), null, { timeout: SEE_TIMEOUT });
      assert.equal(await bpage.evaluate(() => window.wp.data.select('core/notices').getNotices().filter((n) => n.id === 'rtet-post-saved').length), 0);

      // A visitor reading a published post never hears of its saves.
      await rest.post(`/wp/v2/posts/${post.id}`, { status: 'publish' });
      const visitor = await newContext(browser);
      const vpage = await openConnected(visitor, site, `/?p=${post.id}`);
      await rest.post(`/wp/v2/posts/${post.id}`, { content: 'Edited again' });
      await apage.waitForFunction(() => window.__rtet.events.filter((e) => e.event === 'post_saved').length >= 3, null, { timeout: SEE_TIMEOUT });
      await vpage.waitForFunction((pid) => window.__rtet.events.some((e) => e.event === 'post_updated' && e.data.id === pid),
        post.id, { timeout: SEE_TIMEOUT });
      assert.deepEqual(await received(vpage, 'post_saved'), []);
      await Promise.all([actx.close(), bctx.close(), visitor.close()]);
    });

    it('two editors on one post see each other by name; a second tab is no one new; when one leaves, the other\'s notice goes away', async () => {
      const post = await rest.post('/wp/v2/posts', { title: `Presence draft ${uniq()}`, content: 'Start', status: 'draft' });
      const alice = await createUser(rest, 'editor');
      const bob = await createUser(rest, 'editor');
      const aliceName = `Alice ${uniq()}`;
      const bobName = `Bob ${uniq()}`;
      await rest.post(`/wp/v2/users/${alice.id}`, { name: aliceName });
      await rest.post(`/wp/v2/users/${bob.id}`, { name: bobName });
      const actx = await newContext(browser);
      const bctx = await newContext(browser);
      await login(actx, site, alice.username, alice.password);
      await login(bctx, site, bob.username, bob.password);

      const apage = await openEditor(actx, site, post.id);
      const bpage = await openEditor(bctx, site, post.id);
      await waitAlsoEditing(apage, `${bobName} is also editing this post.`);
      await waitAlsoEditing(bpage, `${aliceName} is also editing this post.`);
      await apage.locator('.components-notice', { hasText: `${bobName} is also editing this post.` }).waitFor({ state: 'visible', timeout: SEE_TIMEOUT });

      // Alice in a second tab: Bob still sees her once, and she does not see herself.
      const apage2 = await openEditor(actx, site, post.id);
      await waitAlsoEditing(apage2, `${bobName} is also editing this post.`);
      assert.equal(await alsoEditing(bpage), `${aliceName} is also editing this post.`);
      assert.deepEqual(
        await bpage.evaluate((ch) => window.rtet.members(ch).map((m) => Object.keys(m.info).sort()), `post.${post.id}.editors`),
        [['avatar', 'name'], ['avatar', 'name']],
        'each member carries a name and an avatar, nothing else',
      );
      // Closing one of Alice's tabs is no leave: when Carol joins after it, Bob still lists Alice.
      await apage2.close();
      const carol = await createUser(rest, 'editor');
      const cctx = await newContext(browser);
      await login(cctx, site, carol.username, carol.password);
      const cpage = await openEditor(cctx, site, post.id);
      const channel = `post.${post.id}.editors`;
      await bpage.waitForFunction(([ch, sub]) => window.rtet.members(ch).some((m) => m.sub === sub), [channel, String(carol.id)], { timeout: SEE_TIMEOUT });
      assert.deepEqual(
        (await bpage.evaluate((ch) => window.rtet.members(ch).map((m) => m.sub), channel)).sort(),
        [String(alice.id), String(bob.id), String(carol.id)].sort(),
      );
      assert.match(await alsoEditing(bpage), / are also editing this post\.$/);
      assert.ok((await alsoEditing(bpage)).includes(aliceName));
      await cctx.close();
      await waitAlsoEditing(bpage, `${aliceName} is also editing this post.`);

      // Bob closes the page: Alice's notice goes away.
      await bpage.close();
      await waitAlsoEditing(apage, null);
      await Promise.all([actx.close(), bctx.close()]);
    });

    it('with the readers badge on, visitors of a post see how many are reading and never who', async () => {
      const setBadge = (on) => site.wpEval(`$s = get_option( 'rtet_settings' ); $s['readers_badge'] = ${on ? 'true' : 'false'}; update_option( 'rtet_settings', $s );`);
      const post = await publishPost(rest, `Read together ${uniq()}`, { comment_status: 'closed' });
      const alice = await createUser(rest, 'editor');
      const aliceName = `Alice ${uniq()}`;
      await rest.post(`/wp/v2/users/${alice.id}`, { name: aliceName });
      await setBadge(true);
      try {
        const actx = await newContext(browser);
        await login(actx, site, alice.username, alice.password);
        const apage = await openEditor(actx, site, post.id);
        const v1ctx = await newContext(browser);
        const v2ctx = await newContext(browser);
        const v1 = await openConnected(v1ctx, site, `/?p=${post.id}`);
        const v2 = await openConnected(v2ctx, site, `/?p=${post.id}`);
        // Alice's editor page reads the post's channel too: three are reading.
        for (const v of [v1, v2]) {
          await v.locator(`.rtet-readers[data-rtet-readers="${post.id}"]`, { hasText: '3 people reading' }).waitFor({ state: 'visible', timeout: SEE_TIMEOUT });
        }
        await apage.close();
        await v1.locator('.rtet-readers', { hasText: '2 people reading' }).waitFor({ state: 'visible', timeout: SEE_TIMEOUT });
        assert.equal(await v1.evaluate((id) => window.rtet.members(`post.${id}`).length, post.id), 0);
        assert.ok(!(await v1.content()).includes(aliceName), 'no editor\'s name on a visitor\'s page');
        await Promise.all([actx.close(), v1ctx.close(), v2ctx.close()]);
      } finally {
        await setBadge(false);
      }
    });
  });
}
