// Two relay nodes on one redis-server behind the nginx balancer
// (scripts/site/balancer.mjs), WordPress publishing through node A, the
// browser connected through the balancer. What a reader must see: a post
// published through A shows on a page held by B; B killed with SIGKILL, the
// page comes back through the balancer (to A) and resumes from the channel's
// history in Redis: every event once, nothing missed, no resync notice.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { balancerHttpBlock, EXAMPLE } from '../../scripts/site/balancer.mjs';
import { REPO } from '../../scripts/site/stack.mjs';
import {
  siteWithAdmin, openConnected, waitConnected, publishPost, toast, uniq, extensionBuilt, SEE_TIMEOUT,
} from './lib/harness.mjs';

const A = 0;
const B = 1;

/** Open subscriber connections on node `i`, from its /metrics (read directly, not through the balancer). */
async function subscribersOn(site, i) {
  const res = await fetch(`${site.nodeHttp(i)}/metrics`);
  const text = await res.text();
  if (!/^# TYPE rtet_connections_accepted counter/m.test(text)) {
    throw new Error(`node ${i}'s /metrics is not the relay's (HTTP ${res.status}): ${text.slice(0, 300)}`);
  }
  // A gauge's label set appears once first used: on a node no subscriber ever reached, none.
  const m = text.match(/^rtet_connections\{role="subscriber"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

/** One request that makes the site send `e2e_ping` {n} to channel `e2e` (through node A); the worker's pid. */
async function ping(site, n) {
  const res = await fetch(`${site.url}/wp-json/rtet-e2e/v1/ping?n=${n}`, { signal: AbortSignal.timeout(SEE_TIMEOUT) });
  const text = await res.text();
  assert.equal(res.status, 200, `ping ${n}: ${text.slice(0, 300)}`);
  return JSON.parse(text).pid;
}

/** The n of every e2e_ping the page received, in arrival order. */
function received(page) {
  return page.evaluate(() => window.__rtet.events.filter((e) => e.event === 'e2e_ping').map((e) => e.data.n));
}

const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

describe('several relay nodes on Redis behind a balancer', () => {
  let site;
  let browser;
  let admin;
  let rest;

  siteWithAdmin({ extension: extensionBuilt, nodes: 2, workers: 3 }, (held) => ({ site, browser, admin, rest } = held));

  it('a page on node B shows a post published through node A; B killed, the page resumes on A with every event once', async () => {
    // Put the page on B: while A is down the balancer can only reach B.
    await site.stopRelay(A);
    const page = await openConnected(admin, site, '/');
    assert.equal(await subscribersOn(site, B), 1, 'the page is connected to node B');
    await site.startRelay(A);
    assert.equal(await subscribersOn(site, A), 0, 'no page is on node A');

    const title = `Across nodes ${uniq()}`;
    await publishPost(rest, title);
    await toast(page, title).waitFor({ timeout: SEE_TIMEOUT });
    assert.equal(await toast(page, title).count(), 1, 'the toast shows once');

    // A stream of events through A; B is killed in the middle of it, and the
    // rest is sent while the page is disconnected and reconnecting.
    const TOTAL = 150;
    const KILL_AT = 50;
    const b = site.procs['relay-b'].child;
    const sentBy = new Map(); // worker pid -> the n it sent, in order
    for (const n of range(0, TOTAL)) {
      if (n === KILL_AT) b.kill('SIGKILL');
      const pid = await ping(site, n);
      sentBy.set(pid, [...(sentBy.get(pid) || []), n]);
    }
    await waitConnected(page, 2);
    assert.equal(await subscribersOn(site, A), 1, 'the page came back through the balancer to node A');

    await page.waitForFunction((total) => {
      const got = new Set(window.__rtet.events.filter((e) => e.event === 'e2e_ping').map((e) => e.data.n));
      return got.size >= total;
    }, TOTAL, { timeout: SEE_TIMEOUT, polling: 200 });
    const ns = await received(page);
    assert.deepEqual([...ns].sort((x, y) => x - y), range(0, TOTAL), 'every event shows exactly once');
    // Each php-fpm worker has its own connection to the relay, sending in the
    // background: the order holds per worker, not across workers.
    for (const [pid, sent] of sentBy) {
      assert.deepEqual(ns.filter((n) => sent.includes(n)), sent, `the events of worker ${pid} show in the order it sent them`);
    }
    assert.equal(await page.evaluate(() => window.__rtet.resync), 0,
      'no resync notice: the history the page resumed from lives in Redis, not in the killed node');
    assert.equal(await toast(page, title).count(), 1, 'the post is not shown again after the reconnect');
    await page.close();
  });
});

describe('docs/scaling.md', () => {
  it('shows the nginx balancer configuration that scripts/run.sh --nodes writes', () => {
    const doc = fs.readFileSync(`${REPO}/docs/scaling.md`, 'utf8');
    const shown = doc.match(/```nginx\n([\s\S]*?)```/);
    assert.ok(shown, 'docs/scaling.md has an nginx block');
    assert.equal(shown[1], balancerHttpBlock(EXAMPLE));
  });
});
