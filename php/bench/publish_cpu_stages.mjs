#!/usr/bin/env node
/**
 * The CPU of the block editor's publish by stage of the plugin's work, on
 * php-fpm: `POST /wp-json/wp/v2/posts/ID {"status":"publish"}` on a fresh
 * draft as an administrator (cookie and nonce), through nginx and the site's
 * one php-fpm worker with rtet.so (scripts/site/stack.mjs), relay up.
 *
 * Variants, picked per request by a must-use plugin (through
 * `option_active_plugins` and the plugin's own hooks), rotated publish by
 * publish so a busy moment falls on all of them:
 *   none      no plugin;
 *   none-finish  no plugin, but the response ended early at `shutdown` by
 *             fastcgi_finish_request(), as the plugin does: the CPU window
 *             ends at the last shutdown function, so this moves the
 *             answer's write (which `none` does after the window) into it;
 *   plugin    the plugin;
 *   no-send   the plugin without its `shutdown` work after the response
 *             (RTET_Events::send_after_response left out: no
 *             fastcgi_finish_request(), no payload, no event);
 *   no-event  the plugin with `rtet_event_data` answering false: the
 *             payloads are built after the response, rtet.so is never called.
 * So plugin minus no-event is what handing the events to rtet.so costs in
 * CPU (its calls, its sender thread, the kernel's share), no-event minus
 * no-send the payloads and ending the response early.
 *
 * CPU is getrusage() user + system of the worker (all its threads), from a
 * must-use plugin's load to its last shutdown function; the mean per variant
 * (the split into user and system is the kernel's sampled estimate).
 * Time depends on the machine's load: compare variants of one run only.
 *
 *   node php/bench/publish_cpu_stages.mjs [--publishes 150]
 */
import fs from 'node:fs';
import path from 'node:path';
import { startSite } from '../../scripts/site/stack.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const N = Number(opt('--publishes', 150));
const VARIANTS = ['none', 'none-finish', 'plugin', 'no-send', 'no-event'];
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const LOAD0 = load();
const site = await startSite({ extension: true, workers: 1, log: (m) => process.stderr.write(`# ${m}\n`) });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    await site.stop();
    process.exit(130);
  });
}
try {
  const wpc = path.join(site.wpDir, 'wp-content');
  const cpuLog = path.join(site.dir, 'bench-cpu.log');
  fs.mkdirSync(path.join(wpc, 'mu-plugins'), { recursive: true });
  fs.writeFileSync(path.join(wpc, 'mu-plugins', 'rtet-bench-stage.php'), `<?php
/**
 * Plugin Name: rtet publish CPU by stage: variant picker (written by php/bench/publish_cpu_stages.mjs)
 */
// WP-Cron would spawn its own request from some requests and not others.
defined( 'DISABLE_WP_CRON' ) || define( 'DISABLE_WP_CRON', true );
$rtet_bench = (string) ( $_SERVER['HTTP_X_RTET_BENCH'] ?? '' );
if ( '' !== $rtet_bench ) {
	$rtet_bench_ru = getrusage();
	add_filter( 'option_active_plugins', static function () use ( $rtet_bench ) {
		return 0 === strpos( $rtet_bench, 'none' ) ? array() : array( 'real-time-event-trigger/real-time-event-trigger.php' );
	} );
	if ( 'none-finish' === $rtet_bench ) {
		add_action( 'shutdown', static function () { fastcgi_finish_request(); }, PHP_INT_MAX - 1 );
	}
	if ( 'no-send' === $rtet_bench ) {
		add_action( 'plugins_loaded', static function () {
			remove_action( 'shutdown', array( 'RTET_Events', 'send_after_response' ), PHP_INT_MAX - 1 );
		}, PHP_INT_MIN );
	}
	if ( 'no-event' === $rtet_bench ) {
		add_filter( 'rtet_event_data', '__return_false' );
	}
	// Registered from a shutdown function: runs after every other one.
	register_shutdown_function( static function () use ( $rtet_bench, $rtet_bench_ru ) {
		register_shutdown_function( static function () use ( $rtet_bench, $rtet_bench_ru ) {
			$ru = getrusage();
			$us = static function ( $k ) use ( $ru, $rtet_bench_ru ) {
				return ( $ru[ $k . '.tv_sec' ] - $rtet_bench_ru[ $k . '.tv_sec' ] ) * 1e6 + $ru[ $k . '.tv_usec' ] - $rtet_bench_ru[ $k . '.tv_usec' ];
			};
			file_put_contents( ${JSON.stringify(cpuLog)}, $rtet_bench . ' ' . (int) $us( 'ru_utime' ) . ' ' . (int) $us( 'ru_stime' ) . "\\n", FILE_APPEND | LOCK_EX );
		} );
	} );
}
`);
  const { cookies, nonce } = await site.restSession();
  const warm = 2 * VARIANTS.length;
  const ids = await site.drafts(N * VARIANTS.length + warm);
  async function publish(variant) {
    const res = await fetch(`${site.url}/wp-json/wp/v2/posts/${ids.pop()}`, {
      method: 'POST', body: '{"status":"publish"}', signal: AbortSignal.timeout(60000),
      headers: { Cookie: cookies, 'X-WP-Nonce': nonce, 'Content-Type': 'application/json', 'X-Rtet-Bench': variant },
    });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`publish (${variant}) answered ${res.status}`);
  }
  for (let i = 0; i < warm; i++) await publish(VARIANTS[i % VARIANTS.length]);
  fs.writeFileSync(cpuLog, '');
  const started = Date.now();
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < VARIANTS.length; k++) await publish(VARIANTS[(i + k) % VARIANTS.length]);
  }
  // The last line is written after the last response: wait for all of them.
  const want = N * VARIANTS.length;
  let rows = [];
  for (const deadline = Date.now() + 30000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    rows = fs.readFileSync(cpuLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' '));
    if (rows.length >= want) break;
  }
  if (rows.length < want) throw new Error(`only ${rows.length} of ${want} requests logged their CPU`);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const stats = Object.fromEntries(VARIANTS.map((v) => {
    const r = rows.filter((x) => x[0] === v);
    const cpu = r.map((x) => Number(x[1]) + Number(x[2]));
    const m = mean(cpu);
    const sd = Math.sqrt(cpu.reduce((a, b) => a + (b - m) ** 2, 0) / (cpu.length - 1));
    return [v, { n: r.length, user: mean(r.map((x) => Number(x[1]))), sys: mean(r.map((x) => Number(x[2]))), cpu: m, se: sd / Math.sqrt(cpu.length) }];
  }));
  console.log(`\nLoad average (1, 5, 15 min): ${LOAD0} at start, ${load()} at end; ${((Date.now() - started) / 1000).toFixed(0)} s of publishes.\n`);
  console.log('| variant | publishes | CPU mean ms (± SE) | user / system ms | vs none, ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const v of VARIANTS) {
    const s = stats[v];
    console.log(`| ${v} | ${s.n} | ${(s.cpu / 1000).toFixed(3)} ± ${(s.se / 1000).toFixed(3)} | ${(s.user / 1000).toFixed(2)} / ${(s.sys / 1000).toFixed(2)} | ${v === 'none' ? '–' : `${((s.cpu - stats.none.cpu) / 1000 >= 0 ? '+' : '')}${((s.cpu - stats.none.cpu) / 1000).toFixed(3)}`} |`);
  }
} finally {
  await site.stop();
}
