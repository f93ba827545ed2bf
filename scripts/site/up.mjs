#!/usr/bin/env node
/**
 * Brings the local site up (scripts/site/stack.mjs), prints how to use it,
 * and keeps it running until Ctrl-C (SIGINT) or SIGTERM, then tears it down.
 *
 *   node scripts/site/up.mjs [--no-extension] [--workers N] [--nodes N] [--keep]
 *
 * --nodes N: N relay nodes on one redis-server behind an nginx balancer
 * (see stack.mjs and balancer.mjs) instead of one relay with its memory engine.
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

const nodes = Number(value('--nodes', '0'));
if (!Number.isInteger(nodes) || nodes < 0 || nodes > 26) {
  console.error(`--nodes takes a number of relay nodes from 1 to 26, not ${value('--nodes')}`);
  process.exit(2);
}

const site = await startSite({
  extension,
  nodes,
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
  console.log(`\nstopping: nginx, php-fpm, ${nodes ? 'balancer, relay nodes, Redis' : 'relay'}, MariaDB`);
  await site.stop({ keepDir: flag('--keep') });
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

const relayLines = nodes
  ? [`Browsers:  ${site.publicUrl}  (nginx balancer, least_conn, passive health checks; config: ${site.dir}/balancer.conf)`,
    ...Array.from({ length: nodes }, (_, i) => `Node ${String.fromCharCode(65 + i)}:    ${site.nodeUrl(i)}  (health: ${site.nodeHttp(i)}/healthz, metrics: ${site.nodeHttp(i)}/metrics)${i === 0 ? '  <- WordPress publishes here' : ''}`),
    `Engine:    ${site.engineUrl}  (redis-server, AOF everysec)`].join('\n  ')
  : `Relay:     ${site.relayUrl}  (health: ${site.relayHttp}/healthz, metrics: ${site.relayHttp}/metrics)`;

console.log(`
rtet is running on loopback:

  Site:      ${site.url}/
  Admin:     ${site.url}/wp-admin/   user: ${site.admin.user}   password: ${site.admin.password}
  Settings:  ${site.url}/wp-admin/admin.php?page=real-time-events
  ${relayLines}
  Transport: ${extension ? 'rtet.so loaded into php-fpm' : 'HTTP fallback (no extension)'}
  Files:     ${site.dir} (logs: relay*.log, php-error.log, wp-debug.log, nginx-error.log${nodes ? ', redis.log, balancer-error.log' : ''})

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
