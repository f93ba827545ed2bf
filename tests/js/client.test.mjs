/**
 * The browser client (rtet-client.js) as a page runs it: in jsdom, with the
 * settings the plugin prints into the real page, the npm `ws` package as its
 * WebSocket, the real token endpoint of a real WordPress and a real relay.
 */
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';
import WebSocket from 'ws';
import { startSite, waitFor } from '../../scripts/site/stack.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = fs.readFileSync(path.join(here, '..', '..', 'plugin', 'real-time-event-trigger', 'assets', 'js', 'rtet-client.js'), 'utf8');
const SEE = 30000;
const VECTORS = path.join(here, '..', 'protocol-vectors');
const vectors = (name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'));

/** The settings the plugin printed into a page (window.rtetSettings). */
function pageSettings(html) {
  const m = html.match(/window\.rtetSettings = (\{.*?\});\n/);
  if (!m) throw new Error('the page carries no rtetSettings: is the client enqueued?');
  return JSON.parse(m[1]);
}

/** Logs a user in through wp-login.php; returns the Cookie header. */
async function login(site, user, password) {
  const res = await fetch(`${site.url}/wp-login.php`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: 'wordpress_test_cookie=WP%20Cookie%20check' },
    body: new URLSearchParams({ log: user, pwd: password, 'wp-submit': 'Log In', testcookie: '1' }),
  });
  await res.arrayBuffer();
  const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]).filter((c) => /^wordpress_logged_in_/.test(c) || /^wordpress_[0-9a-f]+=/.test(c));
  if (!cookies.length) throw new Error(`login of ${user} failed: HTTP ${res.status}`);
  return cookies.join('; ');
}

/**
 * Opens the site's front page as a browser would and runs the client in it.
 * Returns what the page saw: fired events, token fetches, sockets and frames sent.
 */
async function openPage(site, { cookie = '', override = {}, path = '/' } = {}) {
  const res = await fetch(`${site.url}${path}`, { headers: cookie ? { cookie } : {} });
  const settings = { ...pageSettings(await res.text()), ...override };
  const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: `${site.url}${path}`, runScripts: 'outside-only' });
  const win = dom.window;
  const page = { win, settings, fetches: 0, fetched: [], sockets: [], sent: [], events: [], connected: 0, disconnected: [], tokens: 0, resync: 0 };
  win.fetch = (url, opts = {}) => {
    page.fetches++;
    page.fetched.push(url);
    return fetch(url, { headers: { ...opts.headers, ...(cookie ? { cookie } : {}) } });
  };
  win.WebSocket = class extends WebSocket {
    constructor(url) {
      super(url, { origin: site.url });
      // A browser's WebSocket reports a failed connection as an `error` event and then `close`;
      // ws would also throw it from its EventEmitter when nothing listens.
      this.on('error', () => {});
      page.sockets.push(this);
      const send = this.send.bind(this);
      this.send = (data) => { page.sent.push(JSON.parse(data)); send(data); };
    }
  };
  const on = (name, fn) => win.document.addEventListener(`rtet:${name}`, (e) => fn(e.detail));
  on('event', (d) => page.events.push(d));
  on('connected', () => { page.connected++; });
  on('disconnected', (d) => page.disconnected.push(d));
  on('token', () => { page.tokens++; });
  on('resync', () => { page.resync++; });
  page.presence = [];
  for (const name of ['presence', 'join', 'leave', 'presence_count']) on(name, (d) => page.presence.push({ type: name, ...d }));
  page.hooks = [];
  // wp.hooks as WordPress loads it before the client: the client fires its actions through doAction.
  win.wp = { hooks: { doAction: (name, ...args) => page.hooks.push([name, ...args]) } };
  win.rtetSettings = settings;
  win.eval(CLIENT);
  openPages.add(page);
  return page;
}

/** Pages not closed yet: a test that fails half-way leaves its page to afterEach. */
const openPages = new Set();

function closePage(page) {
  if (!openPages.delete(page)) return;
  page.win.rtet.stop();
  page.win.close();
}

/** Publishes through the relay's HTTP endpoint with the site's key; returns the relay's answer. */
async function publish(site, channel, event, data) {
  const res = await fetch(`${site.relayHttp}/api/send-event`, {
    method: 'POST',
    headers: { authorization: `Bearer ${site.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: event, data, channel }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

const until = (what, check) => waitFor(what, check, SEE);

describe('the browser client', () => {
  let site;

  before(async () => {
    // No clock leeway: an expired token is refused at once, so the refresh test means something.
    site = await startSite({ fixtures: true, relayArgs: ['--token-leeway', '0s'] });
  });

  afterEach(() => {
    for (const page of [...openPages]) closePage(page);
  });

  after(async () => {
    await site?.stop();
  });

  it('a visitor connects without asking the site for a token and receives public events', async () => {
    const page = await openPage(site);
    assert.equal(page.settings.nonce, '', 'a visitor page has no nonce');
    assert.deepEqual(page.settings.anonymous, ['public']);
    await until('connected', () => page.connected === 1);
    const ev = await publish(site, 'public', 'js_visitor', { n: 1 });
    await until('the event', () => page.events.some((e) => e.id === ev.id));
    assert.equal(page.fetches, 0, 'no token request');
    assert.deepEqual(page.sent, [{ type: 'subscribe', channel: 'public' }]);
    closePage(page);
  });

  it('subscribes to exactly the anonymous channels the protocol allows (tests/protocol-vectors/names.json)', async () => {
    const { channel } = vectors('names.json');
    const page = await openPage(site, { override: { anonymous: [...channel.invalid, ...channel.valid, 42, null] } });
    // At least: the relay refuses the non-anonymous ones, and the client's reconnect may subscribe again before the next look.
    await until('subscribed', () => page.sent.filter((f) => f.type === 'subscribe').length >= channel.valid.length);
    closePage(page);
    const subscribed = page.sent.filter((f) => f.type === 'subscribe').map((f) => f.channel);
    assert.deepEqual(subscribed.slice(0, channel.valid.length), channel.valid);
    assert.ok(subscribed.every((c) => channel.valid.includes(c)), 'never an invalid name');
  });

  it('resumes with since: events published while it was offline arrive once each, in order', async () => {
    const page = await openPage(site);
    await until('connected', () => page.connected === 1);
    const first = await publish(site, 'public', 'js_resume', { n: 1 });
    await until('the first event', () => page.events.some((e) => e.id === first.id));

    page.win.rtet.stop();
    const missed = [await publish(site, 'public', 'js_resume', { n: 2 }), await publish(site, 'public', 'js_resume', { n: 3 })];
    page.win.rtet.start();
    await until('reconnected', () => page.connected === 2);
    await until('the missed events', () => missed.every((m) => page.events.some((e) => e.id === m.id)));

    const subscribe = page.sent.filter((f) => f.type === 'subscribe');
    assert.deepEqual(subscribe[1].since.seq, first.seq, 'resumed after the last event seen');
    const mine = page.events.filter((e) => e.event === 'js_resume').map((e) => e.data.n);
    assert.deepEqual(mine, [1, 2, 3]);
    closePage(page);
  });

  it('shows a published post\'s title as text and links only to http(s) URLs', async () => {
    const page = await openPage(site);
    await until('connected', () => page.connected === 1);
    const doc = page.win.document;
    const title = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
    await publish(site, 'public', 'post_published', { id: 1, title, link: 'javascript:window.pwned=3' });
    await until('a toast', () => doc.querySelectorAll('.rtet-toast').length === 1);
    const t1 = doc.querySelector('.rtet-toast');
    assert.equal(t1.querySelector('.rtet-toast__text').textContent, `New post: ${title}`);
    assert.equal(t1.querySelector('img, script'), null, 'no markup from the title');
    assert.equal(t1.querySelector('a'), null, 'no link for a javascript: URL');

    await publish(site, 'public', 'post_published', { id: 2, title: 'Fine', link: 'https://example.test/fine/' });
    await until('a second toast', () => doc.querySelectorAll('.rtet-toast').length === 2);
    const link = doc.querySelectorAll('.rtet-toast')[1].querySelector('a');
    assert.equal(link.href, 'https://example.test/fine/');
    assert.equal(page.win.pwned, undefined);
    closePage(page);
  });

  it('asks for at most the plugin\'s limit of posts (RTET_Channels::MAX_POSTS), and only post IDs', async () => {
    const php = fs.readFileSync(path.join(here, '..', '..', 'plugin', 'real-time-event-trigger', 'includes', 'class-rtet-channels.php'), 'utf8');
    const max = Number(php.match(/const MAX_POSTS = (\d+);/)[1]);
    const ids = Array.from({ length: max + 5 }, (_, i) => i + 1);
    const page = await openPage(site, { override: { posts: ['7', -1, 1.5, null, ...ids] } });
    await until('connected', () => page.connected === 1);
    assert.equal(new URL(page.fetched[0]).searchParams.get('posts'), ids.slice(0, max).join(','));
    closePage(page);
  });

  it('a visitor on a post asks the site for a token with that post, and shows its live comments as text', async () => {
    const made = JSON.parse((await site.wpEval(`
$pub = wp_insert_post( array( 'post_title' => 'Live comments', 'post_status' => 'publish', 'comment_status' => 'open' ) );
$priv = wp_insert_post( array( 'post_title' => 'Hidden', 'post_status' => 'private', 'comment_status' => 'open' ) );
echo json_encode( array( 'id' => $pub, 'path' => wp_parse_url( get_permalink( $pub ), PHP_URL_PATH ), 'private' => $priv ) );`)).trim().split('\n').pop());
    const page = await openPage(site, { path: made.path });
    assert.deepEqual(page.settings.posts, [made.id], 'the post page asks for its post');
    assert.equal(page.settings.nonce, '');
    await until('connected', () => page.connected === 1);
    assert.equal(page.fetches, 1, 'one token request');
    assert.equal(page.sent[0].type, 'auth');
    assert.deepEqual(page.sent.filter((f) => f.type === 'subscribe').map((f) => f.channel).sort(), ['post.' + made.id, 'public'].sort());

    const doc = page.win.document;
    doc.body.insertAdjacentHTML('beforeend', `<span data-rtet-comment-count="${made.id}">1</span><span data-rtet-comment-count="999">7</span>`
      + `<h3 data-rtet-comments-title="${made.id}">One response to “Live comments”</h3>`);
    const author = '<img src=x onerror="window.pwned=1">Eve';
    await publish(site, `post.${made.id}`, 'comment_approved',
      { id: 5, post: made.id, author, excerpt: 'hi', link: 'javascript:window.pwned=2', count: 2, count_title: '2 responses to “Live comments”' });
    await until('the toast', () => doc.querySelectorAll('.rtet-toast').length === 1);
    const toast = doc.querySelector('.rtet-toast');
    assert.equal(toast.querySelector('.rtet-toast__text').textContent, `New comment by ${author}`);
    assert.equal(toast.querySelector('img, a'), null, 'text only, no javascript: link');
    assert.deepEqual([...doc.querySelectorAll('[data-rtet-comment-count]')].map((e) => e.textContent), ['2', '7']);
    assert.equal(doc.querySelector('[data-rtet-comments-title]').textContent, '2 responses to “Live comments”');
    assert.equal(page.win.pwned, undefined);
    closePage(page);

    // When the site gives no token (REST blocked), the page still gets the anonymous channels.
    const blocked = await openPage(site, { path: made.path, override: { tokenUrl: `${site.url}/wp-json/rtet/v1/no-such-route` } });
    await until('connected', () => blocked.connected === 1);
    assert.equal(blocked.fetches, 1);
    assert.deepEqual(blocked.sent, [{ type: 'subscribe', channel: 'public' }]);
    closePage(blocked);

    // A page asking for a private post gets no channel for it, and stays connected to the rest.
    const other = await openPage(site, { path: made.path, override: { posts: [made.private] } });
    await until('connected', () => other.connected === 1);
    assert.deepEqual(other.sent.filter((f) => f.type === 'subscribe').map((f) => f.channel), ['public']);
    closePage(other);
  });

  it('in the block editor, editors of a post see each other join and leave; a second tab is no one new; a reader sees no one', async () => {
    const made = JSON.parse((await site.wpEval(`
$post = wp_insert_post( array( 'post_title' => 'Presence', 'post_status' => 'publish' ) );
$users = array();
foreach ( array( 'Alice', 'Bob' ) as $name ) {
	$login = strtolower( $name ) . '_' . wp_generate_password( 8, false );
	$users[] = array( 'id' => wp_insert_user( array( 'user_login' => $login, 'user_pass' => $args['password'], 'user_email' => $login . '@example.test', 'role' => 'editor', 'display_name' => $name ) ), 'login' => $login );
}
echo json_encode( array( 'post' => $post, 'users' => $users ) );`, { password: 'pw-presence-1' })).trim().split('\n').pop());
    const [alice, bob] = await Promise.all(made.users.map((u) => login(site, u.login, 'pw-presence-1')));
    const channel = `post.${made.post}.editors`;
    const editing = { posts: [made.post], editing: made.post };
    const [aliceId, bobId] = made.users.map((u) => String(u.id));
    const subs = (page) => Array.from(page.win.rtet.members(channel), (m) => m.sub);

    const a = await openPage(site, { cookie: alice, override: editing });
    await until('alice connected', () => a.connected === 1);
    assert.equal(new URL(a.fetched[0]).searchParams.get('editing'), String(made.post));
    await until('alice sees herself', () => subs(a).join() === aliceId);
    assert.deepEqual(a.win.rtet.members(channel)[0].info.name, 'Alice');

    const b = await openPage(site, { cookie: bob, override: editing });
    await until('bob sees both', () => subs(b).sort().join() === [aliceId, bobId].sort().join());
    await until('alice sees bob join', () => a.presence.some((p) => p.type === 'join' && p.members.some((m) => m.sub === bobId && m.info.name === 'Bob')));
    assert.ok(a.hooks.some(([name, d]) => name === 'rtet.join' && d.channel === channel), 'wp.hooks action rtet.join');

    // A reader of the post (no `editing`) is no member and is shown no one.
    const reader = await openPage(site, { cookie: bob, override: { posts: [made.post] } });
    await until('reader connected', () => reader.connected === 1);
    // Bob's second tab as an editor: no one new for Alice; closing it is no leave.
    const b2 = await openPage(site, { cookie: bob, override: editing });
    await until('second tab sees both', () => subs(b2).length === 2);
    closePage(b2);
    closePage(b);
    await until('alice sees bob leave', () => a.presence.some((p) => p.type === 'leave' && p.subs.includes(bobId)));
    assert.equal(a.presence.filter((p) => p.type === 'join').length, 1, 'one join for Bob, whatever his tabs');
    assert.equal(a.presence.filter((p) => p.type === 'leave').length, 1, 'one leave, when his last tab closed');
    assert.deepEqual(subs(a), [aliceId]);
    assert.ok(a.hooks.some(([name, d]) => name === 'rtet.leave' && d.subs.includes(bobId)), 'wp.hooks action rtet.leave');
    // Bob's reading page stays open: outside the editor he is no member, and is shown no presence.
    assert.ok(reader.sent.some((f) => f.type === 'subscribe' && f.channel === channel), 'an editor reading the post gets its editors\' channel for save notices');
    assert.deepEqual(reader.presence, [], 'and no presence on it');
    closePage(reader);
    closePage(a);
  });

  it('with the readers badge on, a visitor on a public post sees how many are reading and never who', async () => {
    const setBadge = (on) => site.wpEval(`$s = get_option( 'rtet_settings' ); $s['readers_badge'] = ${on ? 'true' : 'false'}; update_option( 'rtet_settings', $s );`);
    const made = JSON.parse((await site.wpEval(`
$id = wp_insert_post( array( 'post_title' => 'Readers', 'post_status' => 'publish', 'comment_status' => 'closed' ) );
echo json_encode( array( 'id' => $id, 'path' => wp_parse_url( get_permalink( $id ), PHP_URL_PATH ) ) );`)).trim().split('\n').pop());
    const off = await openPage(site, { path: made.path });
    assert.equal(off.settings.readersBadge, false, 'off by default');
    assert.deepEqual(off.settings.posts, [], 'the page asks for no post channel: comments are closed and the badge is off');
    closePage(off);

    await setBadge(true);
    try {
      const badge = (page) => Array.from(page.win.document.querySelectorAll(`[data-rtet-readers="${made.id}"]`), (el) => el.textContent);
      const v1 = await openPage(site, { path: made.path });
      assert.equal(v1.settings.readersBadge, true);
      assert.deepEqual(v1.settings.posts, [made.id]);
      await until('one reader', () => badge(v1).join() === '1 person reading');
      const v2 = await openPage(site, { path: made.path });
      await until('two readers on both pages', () => badge(v1).join() === '2 people reading' && badge(v2).join() === '2 people reading');
      closePage(v2);
      await until('one reader again', () => badge(v1).join() === '1 person reading');
      assert.ok(v1.presence.length > 0, 'the counts came as presence frames');
      for (const p of v1.presence) {
        assert.deepEqual(Object.keys(p).sort(), ['anonymous', 'channel', 'member_count', 'type'], `no identity in ${JSON.stringify(p)}`);
      }
      assert.equal(v1.win.document.querySelectorAll('.rtet-readers').length, 1, 'one badge');
      closePage(v1);
    } finally {
      await setBadge(false);
    }
  });

  describe('a logged-in user', () => {
    let cookie;
    let userId;

    before(async () => {
      const password = 'pw-' + Math.random().toString(36).slice(2);
      const out = await site.wpEval(`
$id = wp_insert_user( array( 'user_login' => $args['login'], 'user_pass' => $args['password'], 'user_email' => $args['login'] . '@example.test', 'role' => 'subscriber' ) );
echo (int) $id;`, { login: `js_${Date.now()}`, password });
      userId = Number(out.trim());
      const login_ = (await site.wpEval(`echo get_userdata( ${userId} )->user_login;`)).trim();
      cookie = await login(site, login_, password);
    });

    it('subscribes with a token to its own channel and reuses the still-valid token when it reconnects', async () => {
      const page = await openPage(site, { cookie });
      assert.notEqual(page.settings.nonce, '', 'a logged-in page has a REST nonce');
      await until('connected', () => page.connected === 1);
      assert.equal(page.fetches, 1);
      assert.equal(page.sent[0].type, 'auth');
      const mine = await publish(site, `user.${userId}`, 'js_private', { n: 1 });
      await until('the private event', () => page.events.some((e) => e.id === mine.id));

      page.sockets[0].terminate(); // the connection drops
      await until('reconnected', () => page.connected === 2);
      assert.equal(page.fetches, 1, 'the token was reused, not fetched again');
      assert.equal(page.sent.filter((f) => f.type === 'auth').length, 2);
      closePage(page);
    });

    it('stays connected past its token\'s expiry by sending fresh tokens in time', async () => {
      await site.wpEval("update_option( 'rtet_e2e_token_ttl', 6 );");
      try {
        const page = await openPage(site, { cookie });
        await until('connected', () => page.connected === 1);
        // Two refreshes: by then the first token (6 s, no leeway on the relay) has expired.
        await until('two fresh tokens', () => page.tokens >= 2);
        const late = await publish(site, `user.${userId}`, 'js_private', { n: 2 });
        await until('an event after the refreshes', () => page.events.some((e) => e.id === late.id));
        assert.equal(page.connected, 1, 'one connection throughout');
        assert.deepEqual(page.disconnected, []);
        closePage(page);
      } finally {
        await site.wpEval("delete_option( 'rtet_e2e_token_ttl' );");
      }
    });
  });

  // Last: it restarts the relay, whose history goes with it.
  it('after a relay restart the pages come back spread out, without asking the site for tokens', async () => {
    const pages = [];
    for (let i = 0; i < 12; i++) pages.push(await openPage(site));
    await until('all connected', () => pages.every((p) => p.connected === 1));

    await site.stopRelay();
    await until('all disconnected', () => pages.every((p) => p.disconnected.length >= 1));
    const min = pages[0].settings.reconnect.min;
    const waits = pages.map((p) => p.disconnected[0].retryIn);
    for (const w of waits) assert.ok(w >= 0 && w <= min, `first wait ${w} ms within [0, ${min}]`);
    assert.ok(Math.max(...waits) - Math.min(...waits) >= min / 4, `waits spread out: ${waits.join(', ')}`);

    // While the relay is down each retry's ceiling doubles.
    await until('a second failed attempt each', () => pages.every((p) => p.disconnected.length >= 2));
    for (const p of pages) assert.ok(p.disconnected[1].retryIn <= 2 * min, `second wait ${p.disconnected[1].retryIn}`);

    await site.startRelay();
    await until('all reconnected', () => pages.every((p) => p.connected === 2));
    const after = await publish(site, 'public', 'js_after_restart', {});
    await until('the event on every page', () => pages.every((p) => p.events.some((e) => e.id === after.id)));
    assert.equal(pages.reduce((n, p) => n + p.fetches, 0), 0, 'no page asked the site for a token');
    pages.forEach(closePage);
  });
});
