// The packaged plugin: dist/real-time-event-trigger.zip (scripts/dist.sh) installs
// through wp-admin's "Upload Plugin", activates, and keeps a recipe site's settings.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../../scripts/site/stack.mjs';
import { startTestSite, launchBrowser, newContext, login, openConnected, restClient, publishPost, toast, uniq, SEE_TIMEOUT } from './lib/harness.mjs';

describe('packaging', () => {
  let site;
  let browser;
  const zip = path.join(REPO, 'dist', 'real-time-event-trigger.zip');

  before(async () => {
    execFileSync(path.join(REPO, 'scripts', 'dist.sh'), ['--no-build'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, CARGO_TARGET_DIR: process.env.RTET_TARGET_DIR || path.join(REPO, 'target') },
    });
    // A site without the plugin, whose rtet_settings were written by the original recipe.
    site = await startTestSite({ plugin: false, extension: false });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await site?.stop();
  });

  it('the plugin zip installs with "Upload Plugin", activates, and works with the recipe\'s settings', async () => {
    assert.ok(fs.existsSync(zip));
    const admin = await newContext(browser);
    await login(admin, site, site.admin.user, site.admin.password);
    const page = await admin.newPage();
    await page.goto(`${site.url}/wp-admin/plugin-install.php?tab=upload`);
    await page.setInputFiles('#pluginzip', zip);
    await Promise.all([page.waitForLoadState('load'), page.click('#install-plugin-submit')]);
    await page.getByText('Plugin installed successfully.').waitFor({ timeout: SEE_TIMEOUT });
    await Promise.all([page.waitForURL(/plugins\.php/), page.getByRole('link', { name: 'Activate Plugin' }).click()]);
    await page.getByText('Plugin activated.').waitFor();

    await page.goto(`${site.url}/wp-admin/admin.php?page=real-time-events`);
    assert.equal(await page.locator('h1').first().textContent(), 'Real-time Events');
    assert.match(await page.locator('#rtet-status-relay td').textContent(), /Reachable/);

    const visitor = await newContext(browser);
    const vpage = await openConnected(visitor, site, '/');
    const rest = await restClient(admin, site);
    const title = `From the uploaded plugin ${uniq()}`;
    await publishPost(rest, title);
    await toast(vpage, title).waitFor({ timeout: SEE_TIMEOUT });
    await visitor.close();
    await admin.close();
  });
});
