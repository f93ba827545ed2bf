// After 200 requests that each send an event, the relay has seen at most
// one publisher connection per php-fpm worker (the extension pools them), and a
// page subscribed to the channel received all 200 events, each once.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startTestSite, launchBrowser, newContext, openConnected, login, extensionBuilt, SEE_TIMEOUT,
} from './lib/harness.mjs';

const REQUESTS = 200;
const WORKERS = 2;

describe('publisher connections (with the extension)', { skip: extensionBuilt ? false : 'rtet.so is not built' }, () => {
  let site;
  let browser;

  before(async () => {
    site = await startTestSite({ extension: true, workers: WORKERS });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await site?.stop();
  });

  it(`${REQUESTS} requests each sending an event use at most one relay connection per php-fpm worker`, async () => {
    const admin = await newContext(browser);
    await login(admin, site, site.admin.user, site.admin.password);
    const page = await openConnected(admin, site, '/');

    const pids = new Set();
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const n = next++;
        const res = await fetch(`${site.url}/wp-json/rtet-e2e/v1/ping?n=${n}`);
        assert.equal(res.status, 200);
        const body = await res.json();
        // The extension makes the id (tests/protocol-vectors/event-ids.json: a ULID).
        assert.match(body.id, /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/, `request ${n}: ${JSON.stringify(body)}`);
        pids.add(body.pid);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);

    await page.waitForFunction((k) => window.__rtet.events.filter((e) => e.event === 'e2e_ping').length >= k,
      REQUESTS, { timeout: SEE_TIMEOUT });
    const ns = await page.evaluate(() => window.__rtet.events.filter((e) => e.event === 'e2e_ping').map((e) => e.data.n));
    assert.equal(ns.length, REQUESTS, 'each event arrives once');
    assert.deepEqual([...ns].sort((a, b) => a - b), Array.from({ length: REQUESTS }, (_, i) => i));

    assert.ok(pids.size <= WORKERS, `requests were served by ${pids.size} workers`);
    // The relay counts every publisher connection it ever accepted.
    const metrics = await (await fetch(`${site.relayHttp}/metrics`)).text();
    const m = metrics.match(/^rtet_connections_accepted_total\{role="publisher"\} (\d+)$/m);
    assert.ok(m, 'the relay exports rtet_connections_accepted_total for publishers');
    const connections = Number(m[1]);
    assert.ok(connections >= 1, 'the workers connected to the relay');
    assert.ok(connections <= WORKERS, `the relay accepted ${connections} publisher connections for ${WORKERS} workers`);
    await admin.close();
  });
});
