#!/usr/bin/env node
/**
 * Brings the local site up (scripts/site/stack.mjs), prints how to use it,
 * and keeps it running until Ctrl-C (SIGINT) or SIGTERM, then tears it down.
 *
 *   node scripts/site/up.mjs [--no-extension] [--workers N] [--keep]
 */
import { startSite, EXTENSION_SO } from './stack.mjs';
import fs from 'node:fs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : def;
};

let extension = !flag('--no-extension');
if (extension && !fs.existsSync(EXTENSION_SO)) {
  console.log(`note: ${EXTENSION_SO} is not built; the plugin uses its HTTP fallback`);
  extension = false;
}

const site = await startSite({
  extension,
  workers: Number(value('--workers', '4')),
  log: (m) => console.log(`  ${m}`),
}).catch((e) => {
  console.error(`could not start the site: ${e.message}`);
  process.exit(1);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping: nginx, php-fpm, relay, MariaDB');
  await site.stop({ keepDir: flag('--keep') });
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

console.log(`
rtet is running on loopback:

  Site:      ${site.url}/
  Admin:     ${site.url}/wp-admin/   user: ${site.admin.user}   password: ${site.admin.password}
  Settings:  ${site.url}/wp-admin/admin.php?page=real-time-events
  Relay:     ${site.relayUrl}  (health: ${site.relayHttp}/healthz, metrics: ${site.relayHttp}/metrics)
  Transport: ${extension ? 'rtet.so loaded into php-fpm' : 'HTTP fallback (no extension)'}
  Files:     ${site.dir} (logs: relay.log, php-error.log, wp-debug.log, nginx-error.log)

Open the site in a browser, then publish a post in wp-admin: a notification
appears on the open page. Press Ctrl-C to stop everything.
`);

// Stay in the foreground; report a part that dies.
for (const [name, proc] of Object.entries(site.procs)) {
  proc.exited.then(({ code, sig }) => {
    if (!stopping) console.error(`${name} exited (code ${code}, signal ${sig}); see ${proc.logFile}`);
  });
}
setInterval(() => {}, 1 << 30);
