#!/usr/bin/env node
/**
 * The plugin's PHPUnit tests against a real site: brings up MariaDB, php-fpm,
 * nginx, WordPress and rtet-relay on free loopback ports (scripts/site/stack.mjs),
 * runs Debian's phpunit inside that WordPress (bootstrap.php loads its
 * wp-load.php), and tears the site down.
 *
 *   tests/plugin/run.mjs [phpunit arguments, e.g. --filter Queue]
 *
 * The CLI PHP loads rtet.so when it is built, as php-fpm does; tests of the
 * HTTP fallback switch the extension off through the plugin's own filter.
 * Ends with "plugin-php: N passed, M failed" (skipped tests are neither and
 * are listed), which scripts/test.sh adds up; exits non-zero when a test
 * failed or PHPUnit could not run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSite, EXTENSION_SO } from '../../scripts/site/stack.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PHPUNIT = process.env.RTET_PHPUNIT || '/usr/bin/phpunit';

if (!fs.existsSync(PHPUNIT)) {
  console.error(`phpunit not found at ${PHPUNIT}: install Debian's phpunit (scripts/setup.sh)`);
  process.exit(1);
}

const verbose = process.env.RTET_E2E_VERBOSE ? (m) => console.error(`# site: ${m}`) : () => {};
// Enough workers for the concurrency tests to overlap. No wp-cron.php spawned by
// the tests' requests: one running alongside a test rewrites the cron plan and
// the options it read when it started (the tests that need WP-Cron run it).
const site = await startSite({ workers: 6, log: verbose, wpCron: false });
let rc = 1;
try {
  const mu = path.join(site.wpDir, 'wp-content', 'mu-plugins');
  fs.mkdirSync(mu, { recursive: true });
  for (const f of fs.readdirSync(path.join(here, 'fixtures', 'mu-plugins'))) {
    fs.symlinkSync(path.join(here, 'fixtures', 'mu-plugins', f), path.join(mu, f));
  }
  const junit = path.join(site.dir, 'junit.xml');
  const ext = site.extension ? ['-d', `extension=${EXTENSION_SO}`] : [];
  console.log(`# site ${site.url}, relay ${site.relayUrl}, rtet.so ${site.extension ? 'loaded' : 'not built'}`);
  rc = await new Promise((resolve) => {
    const child = spawn('php', [...ext, PHPUNIT, '--configuration', path.join(here, 'phpunit.xml'),
      '--log-junit', junit, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: {
        ...process.env,
        RTET_WP_DIR: site.wpDir,
        RTET_SITE_URL: site.url,
        RTET_RELAY_URL: site.relayUrl,
        RTET_RELAY_HTTP: site.relayHttp,
        RTET_API_KEY: site.apiKey,
        RTET_SITE_DIR: site.dir,
      },
    });
    child.on('exit', (code, sig) => resolve(code ?? (sig ? 1 : 0)));
  });
  console.log(summary(junit));
} finally {
  await site.stop();
}
process.exit(rc);

/** "plugin-php: N passed, M failed" from PHPUnit's JUnit log (the root suite's totals). */
function summary(file) {
  if (!fs.existsSync(file)) return 'plugin-php: 0 passed, 1 failed (PHPUnit wrote no report)';
  const xml = fs.readFileSync(file, 'utf8');
  const root = xml.match(/<testsuite\b[^>]*>/);
  const attr = (n) => Number((root?.[0].match(new RegExp(`\\b${n}="(\\d+)"`)) || [])[1] || 0);
  const tests = attr('tests');
  const failed = attr('failures') + attr('errors');
  const skipped = attr('skipped');
  const passed = tests - failed - skipped;
  return `plugin-php: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped (not counted as passed)` : ''}`;
}
