#!/usr/bin/env node
/**
 * A WordPress site for php/bench/run.sh's `wp_remote_post` row: starts the
 * local site of stack.mjs (MariaDB, php-fpm WITHOUT rtet.so, nginx, Debian's
 * WordPress) with no plugin installed and no relay of its own (the benchmark
 * starts its own relay), prints one JSON line on stdout once WordPress is
 * installed and answering:
 *
 *   {"dir":"/tmp/rtet-site-…","wpLoad":"/tmp/rtet-site-…/wordpress/wp-load.php",
 *    "host":"127.0.0.1:PORT","url":"http://127.0.0.1:PORT","wpVersion":"6.1.9"}
 *
 * and then keeps the site up until its stdin ends (the parent closed the pipe
 * or died), or SIGTERM / SIGINT / SIGHUP, and tears everything down.
 * Progress goes to stderr.
 *
 *   node scripts/site/wp-bench-site.mjs
 *
 * The site's wp-config.php reaches MariaDB over loopback TCP (DB_HOST
 * 127.0.0.1:PORT, user wp), so any PHP CLI process with mysqli can
 * `require` wpLoad, as Site.wpEval() does (set $_SERVER['HTTP_HOST'] first).
 */
import { startSite } from './stack.mjs';

const log = (m) => process.stderr.write(`# wp-bench-site: ${m}\n`);

let site = null;
let stopping = false;
async function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log(`stopping (${why}): nginx, php-fpm, MariaDB`);
  if (!site) return; // still starting: the code after startSite() stops it
  try {
    await site.stop();
  } finally {
    process.exit(0);
  }
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => shutdown(sig));
// stdin's end is the parent's way of saying "done" (and what happens if it dies).
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

try {
  site = await startSite({ extension: false, plugin: false, relay: false, workers: 1, log });
} catch (e) {
  log(`could not start the site: ${e.message}`);
  process.exit(1);
}
if (stopping) {
  // A signal or EOF arrived while starting, when shutdown() had no site to stop.
  await site.stop();
  process.exit(0);
}
const wpVersion = (await site.wpEval('echo $GLOBALS["wp_version"];', {}, { extension: false })).trim();
process.stdout.write(`${JSON.stringify({
  dir: site.dir,
  wpLoad: `${site.wpDir}/wp-load.php`,
  host: `127.0.0.1:${site.ports.http}`,
  url: site.url,
  wpVersion,
})}\n`);
log(`WordPress ${wpVersion} up at ${site.url}; close stdin or send SIGTERM to stop`);
