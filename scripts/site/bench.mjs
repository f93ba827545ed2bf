#!/usr/bin/env node
/**
 * Benchmark: the wall time of publishing a post on a real local site
 * (scripts/site/stack.mjs), in one run, for:
 *
 *   - the plugin with rtet.so loaded,
 *   - the plugin on its HTTP fallback (no extension),
 *   - the original blog recipe (save_post → blocking wp_remote_post),
 *   - no plugin at all,
 *
 * each measured two ways: `wp_insert_post()` in a PHP CLI process, and a
 * `POST /wp-json/wp/v2/posts` through nginx and php-fpm; with the relay up,
 * stopped (connection refused) and hung (SIGSTOP: it accepts TCP but never
 * answers, like an overloaded or unreachable host).
 *
 *   node scripts/site/bench.mjs [--n 30] [--n-hung 6] [--rounds 3]
 *
 * Prints a Markdown table (median and p95 in ms).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startSite, EXTENSION_SO } from './stack.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const N = opt('--n', 30);
const N_HUNG = opt('--n-hung', 6);
const ROUNDS = opt('--rounds', 3);
const log = (m) => process.stderr.write(`# ${m}\n`);

if (!fs.existsSync(EXTENSION_SO)) {
  console.error(`${EXTENSION_SO} is not built`);
  process.exit(1);
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p95: q(0.95), n: s.length };
}
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));

const site = await startSite({ extension: true, workers: 2, log });
try {
  const recipeDir = path.join(site.wpDir, 'wp-content', 'plugins', 'rtet-recipe');
  fs.mkdirSync(recipeDir, { recursive: true });
  fs.copyFileSync(path.join(here, 'recipe', 'rtet-recipe.php'), path.join(recipeDir, 'rtet-recipe.php'));

  /** Activates exactly the given plugins among ours. */
  async function plugins(active) {
    await site.wpEval(`
require_once ABSPATH . 'wp-admin/includes/plugin.php';
// Every variant starts clean: no undelivered events or back-off left by the previous one.
delete_option( 'rtet_pending_events' );
delete_transient( 'rtet_relay_slow' );
$all = array( 'real-time-event-trigger/real-time-event-trigger.php', 'rtet-recipe/rtet-recipe.php' );
foreach ( $all as $p ) {
  if ( in_array( $p, $args['active'], true ) ) { activate_plugin( $p ); } else { deactivate_plugins( $p, true ); }
}
`, { active }, { extension: false });
  }

  /** wp_insert_post() N times in one CLI process; returns per-call ms and, for the fallback, the deferred send. */
  async function cli(n, extension) {
    const out = await site.wpEval(`
wp_set_current_user( 1 );
$times = array();
for ( $i = 0; $i < $args['n']; $i++ ) {
  $t = hrtime( true );
  $id = wp_insert_post( array( 'post_title' => 'Bench ' . $i . ' ' . uniqid(), 'post_content' => 'x', 'post_status' => 'publish' ) );
  $times[] = ( hrtime( true ) - $t ) / 1e6;
}
$deferred = 0;
if ( class_exists( 'RTET_Sender' ) && ! RTET_Sender::extension_available() ) {
  $t = hrtime( true );
  RTET_Sender::flush();
  $deferred = ( hrtime( true ) - $t ) / 1e6;
}
echo json_encode( array( 'times' => $times, 'deferred' => $deferred ) );
`, { n }, { extension });
    return JSON.parse(out.trim().split('\n').pop());
  }

  // Cookie login once; a REST nonce for the HTTP runs.
  const session = await site.restSession();

  async function http(n) {
    const times = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const res = await fetch(`${site.url}/wp-json/wp/v2/posts`, {
        method: 'POST',
        headers: { Cookie: session.cookies, 'X-WP-Nonce': session.nonce, 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: `Bench HTTP ${i}`, content: 'x', status: 'publish' }),
      });
      await res.arrayBuffer();
      times.push(performance.now() - t);
      if (res.status !== 201) throw new Error(`publish answered ${res.status}`);
    }
    return times;
  }

  const variants = [
    { name: 'plugin + rtet.so', extension: true, active: ['real-time-event-trigger/real-time-event-trigger.php'] },
    { name: 'plugin, HTTP fallback', extension: false, active: ['real-time-event-trigger/real-time-event-trigger.php'] },
    { name: 'original recipe (save_post + blocking wp_remote_post)', extension: false, active: ['rtet-recipe/rtet-recipe.php'] },
    { name: 'no plugin', extension: false, active: [] },
  ];
  let hung = false;
  const relayRunning = () => site.procs.relay && !site.procs.relay.done;
  const relayStates = [
    { name: 'up', n: N, set: async () => {
      if (hung) { site.procs.relay.child.kill('SIGCONT'); hung = false; }
      if (!relayRunning()) await site.startRelay();
    } },
    { name: 'stopped', n: N, set: async () => {
      if (hung) { site.procs.relay.child.kill('SIGCONT'); hung = false; }
      await site.stopRelay();
    } },
    { name: 'hung (SIGSTOP)', n: N_HUNG, set: async () => {
      if (!relayRunning()) await site.startRelay();
      site.procs.relay.child.kill('SIGSTOP');
      hung = true;
    } },
  ];

  // Rounds over the whole grid, so that a noisy minute on a shared machine
  // spreads over every variant instead of landing on one.
  const results = new Map();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const state of relayStates) {
      log(`round ${round}/${ROUNDS}: relay ${state.name}`);
      await state.set();
      const n = Math.max(1, Math.round(state.n / ROUNDS));
      for (const v of variants) {
        if (site.extension !== v.extension) {
          log(`restarting php-fpm ${v.extension ? 'with' : 'without'} rtet.so`);
          await site.restartPhp({ extension: v.extension });
        }
        await plugins(v.active);
        await http(1); // warm the workers and opcache
        log(`${v.name}: wp_insert_post x${n}, HTTP x${n}`);
        const c = await cli(n, v.extension);
        const h = await http(n);
        const key = `${state.name}|${v.name}`;
        const r = results.get(key) || { relay: state.name, variant: v.name, cli: [], http: [], deferred: 0, n: 0 };
        r.cli.push(...c.times);
        r.http.push(...h);
        r.deferred += c.deferred;
        r.n += n;
        results.set(key, r);
      }
    }
  }
  if (hung) site.procs.relay.child.kill('SIGCONT');
  const rows = [...results.values()].map((r) => ({ ...r, cli: stats(r.cli), http: stats(r.http), deferred: r.deferred / r.n }));

  const cpu = os.cpus()[0]?.model || 'unknown CPU';
  console.log(`Machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; PHP ${execFileSync('php', ['-r', 'echo PHP_VERSION;']).toString()}, WordPress from Debian's package; php-fpm 2 static workers behind nginx, MariaDB, all on loopback.`);
  console.log(`Command: node scripts/site/bench.mjs --n ${N} --n-hung ${N_HUNG} --rounds ${ROUNDS}\n`);
  console.log('| relay | variant | wp_insert_post median ms | p95 ms | HTTP fallback send deferred to shutdown, ms/post | POST /wp/v2/posts via nginx median ms | p95 ms |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.relay} | ${r.variant} | ${fmt(r.cli.median)} | ${fmt(r.cli.p95)} | ${r.deferred ? fmt(r.deferred) : '–'} | ${fmt(r.http.median)} | ${fmt(r.http.p95)} |`);
  }
} finally {
  try { site.procs.relay?.child.kill('SIGCONT'); } catch { /* gone */ }
  await site.stop();
}
