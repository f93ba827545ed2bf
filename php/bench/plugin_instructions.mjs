#!/usr/bin/env node
/**
 * Where the plugin's instructions go in one request: valgrind's callgrind on
 * a whole PHP CLI process with rtet.so and opcache's file cache warm
 * (`opcache.file_cache_only`), on a real local site
 * (scripts/site/stack.mjs), the relay up. A count no other load on the
 * machine moves, unlike time.
 *
 * Requests:
 *   load  loads WordPress (`wp-load.php`) and exits;
 *   front the front page (`wp-blog-header.php`, the theme, the browser client);
 *   rest  the block editor's publish, `rest_do_request( POST /wp/v2/posts/ID
 *         {"status":"publish"} )` on a fresh draft as an administrator
 *         (CLI has no response to end early, so the events are worked out
 *         inside it, as php-fpm does after the response; through php-fpm:
 *         `POST /wp-json/wp/v2/posts/ID`, logged in by cookie, with a nonce).
 *
 * Variants, picked per process (CLI: environment) or request (php-fpm:
 * headers) by a must-use plugin through `option_active_plugins`:
 *   none                  no plugin;
 *   empty plugin          a plugin of a header only (what any plugin costs);
 *   plugin                this plugin;
 *   plugin -HOOK=CALLBACK this plugin with one of its hook callbacks removed
 *                         before `plugins_loaded` runs (the cost of that
 *                         hook is `plugin` minus this, plus what removing
 *                         costs: the default list's first, a callback these
 *                         requests never run, measures that);
 *   plugin -*             this plugin with every one of its callbacks removed
 *                         (not a default: walking every hook to find them
 *                         costs more than some of them);
 *   baseline              the plugin as on git ref --baseline (left out when '');
 *   NAME                  with --variant NAME=DIR: the plugin as it is in DIR
 *                         (e.g. a copy with a part cut out).
 * Every plugin variant is linked into wp-content/plugins, as the site links
 * this plugin.
 *
 * Every measured process follows one unmeasured one of the same variant (the
 * file cache and the database see the same request first), and the variants
 * alternate within each of --reps rounds. The first round's first process
 * (no plugin) counts some 0.2–0.7 M more than later ones (what the site's
 * first requests leave cached): the medians of three rounds leave it out.
 *
 *   node php/bench/plugin_instructions.mjs [--reps 3] [--requests load,rest]
 *        [--leave-out HOOK=CALLBACK,...] [--baseline REF] [--keep DIR]
 *        [--server cli|fpm] [--variant NAME=DIR ...]
 *
 * --keep DIR keeps each measured run's callgrind.out (for callgrind_annotate).
 * --server fpm measures the same requests through nginx and php-fpm instead
 * (the site's one worker under callgrind, which dumps its count after each
 * request's shutdown, work after the response included; opcache's shared
 * memory as in production, its clock-driven file checks kept out).
 *
 * Prints a Markdown table: instructions per request, per variant, and the
 * differences of the medians to `none` (or, for a left-out hook, to `plugin`).
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { execFileSync, spawn } from 'node:child_process';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const REPS = Number(opt('--reps', 3));
const REQUESTS = opt('--requests', 'load,rest').split(',');
if (!REQUESTS.every((r) => ['load', 'front', 'rest'].includes(r))) throw new Error('--requests: load, front, rest');
const BASELINE = opt('--baseline', '');
const KEEP = opt('--keep', '');
const DEFAULT_LEAVE_OUT = [
  // Never runs in these requests: what leaving a callback out costs by itself.
  'admin_menu=RTET_Admin::add_menu',
  'plugins_loaded=RTET_Plugin::upgrade',
  'init=RTET_Plugin::load_textdomain',
  'rest_api_init=RTET_REST::register_routes',
  'wp_after_insert_post=RTET_Events::on_after_insert_post',
  'wp_after_insert_post=RTET_Editor::on_after_insert_post',
  'wp_insert_post=RTET_Editor::note_revision',
  'shutdown=RTET_Comments::send_changed',
  'shutdown=RTET_Events::send_after_response',
  'shutdown=RTET_Sender::flush_at_shutdown',
];
// --variant NAME=DIR (repeatable): a copy of the plugin in DIR, e.g. one with a part cut out.
const EXTRA = argv.flatMap((a, i) => (a === '--variant' ? [argv[i + 1].split('=')] : []));
const LEAVE_OUT = opt('--leave-out', DEFAULT_LEAVE_OUT.join(',')).split(',').filter(Boolean);
const SERVER = opt('--server', 'cli');
if (!['cli', 'fpm'].includes(SERVER)) throw new Error(`--server cli or fpm, not ${SERVER}`);
const log = (m) => process.stderr.write(`# ${m}\n`);
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const phpString = (s) => `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

// php-fpm under callgrind: the site's one worker dumps its count after each request
// (--dump-after=php_request_shutdown, so the work after the response is in it).
// opcache's file check (every revalidate_freq, 2 s) and the realpath cache's
// expiry (120 s) come by the clock, half a million instructions in whatever
// request they fall: kept out, so a variant's count is its own.
const FPM_INI = '-d opcache.revalidate_freq=86400 -d realpath_cache_ttl=86400';
const CG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'rtet-fpm-callgrind-'));
if (SERVER === 'fpm') {
  const wrapper = path.join(CG_DIR, 'php-fpm-callgrind.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --trace-children=yes --dump-after=php_request_shutdown --callgrind-out-file=${CG_DIR}/cg.%p ${process.env.RTET_PHP_FPM || '/usr/sbin/php-fpm8.2'} ${FPM_INI} "$@"\n`, { mode: 0o755 });
  process.env.RTET_PHP_FPM = wrapper;
}
const { startSite, EXTENSION_SO, REPO } = await import('../../scripts/site/stack.mjs');

if (!fs.existsSync(EXTENSION_SO)) {
  console.error(`${EXTENSION_SO} is not built (cargo build --release -p rtet)`);
  process.exit(1);
}

const PLUGIN = 'real-time-event-trigger/real-time-event-trigger.php';
const BASE = 'rtet-baseline/real-time-event-trigger.php';
// A plugin of a header and nothing else: what WordPress spends on any active plugin.
const EMPTY = 'rtet-empty/rtet-empty.php';
const VARIANTS = [
  { name: 'none', plugins: [] },
  { name: 'empty plugin', plugins: [EMPTY] },
  { name: 'plugin', plugins: [PLUGIN] },
  ...LEAVE_OUT.map((l) => ({ name: `plugin -${l}`, plugins: [PLUGIN], leaveOut: l })),
  ...(BASELINE ? [{ name: 'baseline', plugins: [BASE] }] : []),
  ...EXTRA.map(([name], i) => ({ name, plugins: [`rtet-extra-${i}/real-time-event-trigger.php`] })),
];

const LOAD0 = load();
const started = Date.now();
const site = await startSite({ extension: true, workers: 1, log });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    log(`${sig}: stopping the site`);
    await site.stop();
    process.exit(130);
  });
}
try {
  const wpc = path.join(site.wpDir, 'wp-content');
  let baselineCommit = '';
  if (BASELINE) {
    baselineCommit = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', BASELINE]).toString().trim();
    const tar = execFileSync('git', ['-C', REPO, 'archive', BASELINE, 'plugin/real-time-event-trigger']);
    const tmp = fs.mkdtempSync(path.join(site.dir, 'baseline-'));
    execFileSync('tar', ['-x', '-C', tmp], { input: tar });
    // Linked, as the site links this plugin: WordPress resolves a linked plugin's paths, at a price.
    fs.symlinkSync(path.join(tmp, 'plugin', 'real-time-event-trigger'), path.join(wpc, 'plugins', 'rtet-baseline'));
  }
  EXTRA.forEach(([, dir], i) => fs.symlinkSync(path.resolve(dir), path.join(wpc, 'plugins', `rtet-extra-${i}`)));
  fs.mkdirSync(path.join(wpc, 'plugins', 'rtet-empty'), { recursive: true });
  fs.writeFileSync(path.join(wpc, 'plugins', 'rtet-empty', 'rtet-empty.php'), '<?php\n/**\n * Plugin Name: rtet instructions benchmark: an empty plugin\n */\n');
  fs.mkdirSync(path.join(wpc, 'mu-plugins'), { recursive: true });
  fs.writeFileSync(path.join(wpc, 'mu-plugins', 'rtet-bench-variant.php'), `<?php
/**
 * Plugin Name: rtet instructions benchmark: variant picker (written by php/bench/plugin_instructions.mjs)
 */
// A php-fpm request says its variant in headers, a CLI process in its environment.
$rtet_bench_plugins = json_decode( (string) ( $_SERVER['HTTP_X_RTET_BENCH_PLUGINS'] ?? getenv( 'RTET_BENCH_PLUGINS' ) ), true );
// WP-Cron would spawn its own request from some requests and not others.
defined( 'DISABLE_WP_CRON' ) || define( 'DISABLE_WP_CRON', true );
if ( is_array( $rtet_bench_plugins ) ) {
	add_filter( 'option_active_plugins', static function () use ( $rtet_bench_plugins ) {
		return $rtet_bench_plugins;
	} );
}
$rtet_bench_leave_out = (string) ( $_SERVER['HTTP_X_RTET_BENCH_LEAVE_OUT'] ?? getenv( 'RTET_BENCH_LEAVE_OUT' ) );
if ( '' !== $rtet_bench_leave_out ) {
	// Before any plugins_loaded callback: the plugin registered its hooks when its file was read.
	add_action( 'plugins_loaded', static function () use ( $rtet_bench_leave_out ) {
		global $wp_filter;
		if ( '*' === $rtet_bench_leave_out ) {
			foreach ( $wp_filter as $hook => $callbacks ) {
				foreach ( $callbacks->callbacks as $priority => $at ) {
					foreach ( $at as $id => $cb ) {
						if ( 0 === strncmp( $id, 'RTET_', 5 ) ) {
							remove_filter( $hook, $cb['function'], $priority );
						}
					}
				}
			}
			return;
		}
		list( $hook, $callback ) = explode( '=', $rtet_bench_leave_out, 2 );
		$callback = explode( '::', $callback, 2 );
		$priority = has_filter( $hook, $callback );
		if ( false === $priority || ! remove_filter( $hook, $callback, $priority ) ) {
			fwrite( STDERR, "rtet bench: no callback to leave out: $rtet_bench_leave_out\\n" );
			exit( 3 );
		}
	}, PHP_INT_MIN );
}
`);

  const adminId = Number((await site.wpEval(`echo (int) get_user_by( 'login', $args['user'] )->ID;`, { user: site.admin.user }, { extension: false })).trim());
  if (!adminId) throw new Error('no administrator');

  const script = (name, body) => {
    const file = path.join(site.dir, `instr-${name}.php`);
    fs.writeFileSync(file, `<?php
$_SERVER['HTTP_HOST'] = '127.0.0.1:${site.ports.http}';
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
// WP-Cron would spawn its own request from some processes and not others.
define( 'DISABLE_WP_CRON', true );
require ${phpString(path.join(site.wpDir, 'wp-load.php'))};
${body}
`);
    return file;
  };
  const SCRIPTS = {
    load: script('load', ''),
    front: script('front', `define( 'WP_USE_THEMES', true );
require ABSPATH . 'wp-blog-header.php';`),
    rest: script('rest', `
wp_set_current_user( ${adminId} );
$request = new WP_REST_Request( 'POST', '/wp/v2/posts/' . (int) $argv[1] );
$request->set_header( 'Content-Type', 'application/json' );
$request->set_body( '{"status":"publish"}' );
$response = rest_do_request( $request );
if ( 200 !== $response->get_status() ) {
	fwrite( STDERR, 'publish answered ' . $response->get_status() . "\\n" );
	exit( 1 );
}`),
  };

  /** Drafts for the publishes, by the administrator. */
  const drafts = (n) => site.drafts(n);

  const cacheDir = path.join(site.dir, 'opcache');
  fs.mkdirSync(cacheDir);
  const PHP_ARGS = ['-d', `extension=${EXTENSION_SO}`, '-d', 'opcache.enable_cli=1', '-d', `opcache.file_cache=${cacheDir}`, '-d', 'opcache.file_cache_only=1'];
  if (KEEP) fs.mkdirSync(KEEP, { recursive: true });

  function runCli(variant, request, arg, measured, tag) {
    const out = KEEP && measured ? path.join(KEEP, `callgrind.out.${tag}`) : '/dev/null';
    const cmd = [...(measured ? ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`] : []), process.env.RTET_PHP || 'php', ...PHP_ARGS, SCRIPTS[request], String(arg)];
    return new Promise((resolve, reject) => {
      const child = spawn(cmd[0], cmd.slice(1), {
        env: { ...process.env, RTET_BENCH_PLUGINS: JSON.stringify(variant.plugins), RTET_BENCH_LEAVE_OUT: variant.leaveOut || '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      child.stdout.resume();
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`${variant.name} ${request} exited ${code}: ${err.slice(-2000)}`));
        if (!measured) return resolve(0);
        const m = err.match(/Collected : (\d+)/);
        if (!m) return reject(new Error(`no callgrind count for ${variant.name} ${request}: ${err.slice(-2000)}`));
        resolve(Number(m[1]));
      });
    });
  }

  // php-fpm: the same requests over HTTP (nginx, the one worker under callgrind), the
  // publish as the block editor sends it, logged in by cookie with a REST nonce.
  /** The worker's dumps so far (cg.PID.N, one per request), oldest first. */
  const dumps = () => fs.readdirSync(CG_DIR).filter((f) => /^cg\.\d+\.\d+$/.test(f))
    .sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]));
  let cookies = '';
  let nonce = '';
  if (SERVER === 'fpm') {
    ({ cookies, nonce } = await site.restSession());
    fs.copyFileSync(SCRIPTS.load, path.join(site.wpDir, 'rtet-bench-load.php'));
    // WP-Cron's own requests, spawned while the site was set up, go to the same worker: let them end.
    for (let n = -1; n !== dumps().length;) {
      n = dumps().length;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  async function runFpm(variant, request, arg, measured, tag) {
    const before = dumps().length;
    const headers = { 'X-Rtet-Bench-Plugins': JSON.stringify(variant.plugins), 'X-Rtet-Bench-Leave-Out': variant.leaveOut || '' };
    const res = request === 'rest'
      ? await fetch(`${site.url}/wp-json/wp/v2/posts/${arg}`, {
        method: 'POST', body: '{"status":"publish"}', signal: AbortSignal.timeout(120000),
        headers: { ...headers, Cookie: cookies, 'X-WP-Nonce': nonce, 'Content-Type': 'application/json' },
      })
      : await fetch(`${site.url}/${request === 'load' ? 'rtet-bench-load.php' : ''}`, { headers, signal: AbortSignal.timeout(120000) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${variant.name} ${request} answered ${res.status}`);
    // The dump is written when the request's shutdown is over, after the response.
    const deadline = Date.now() + 120000;
    while (dumps().length === before) {
      if (Date.now() > deadline) throw new Error(`no callgrind dump for ${variant.name} ${request}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const list = dumps();
    if (list.length !== before + 1) throw new Error(`${list.length - before} dumps for one request (more than one worker?)`);
    const file = path.join(CG_DIR, list.at(-1));
    // The file appears before callgrind has written all of it.
    let m = null;
    while (!(m = fs.readFileSync(file, 'utf8').match(/^totals: (\d+)/m))) {
      if (Date.now() > deadline) throw new Error(`no count in ${file}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    if (KEEP && measured) fs.copyFileSync(file, path.join(KEEP, `callgrind.out.${tag}`));
    return measured ? Number(m[1]) : 0;
  }
  const run = SERVER === 'fpm' ? runFpm : runCli;

  // counts[request][variant] = [per rep]
  const counts = {};
  for (let rep = 1; rep <= REPS; rep++) {
    for (const request of REQUESTS) {
      const ids = request === 'rest' ? await drafts(VARIANTS.length * 2) : [];
      for (const [k, v] of VARIANTS.entries()) {
        log(`rep ${rep}/${REPS}, ${request}, ${v.name} (load ${load()}, ${((Date.now() - started) / 1000).toFixed(0)} s)`);
        await run(v, request, ids.pop() ?? 0, false);
        const n = await run(v, request, ids.pop() ?? 0, true, `${request}.${k}.${rep}`);
        ((counts[request] ??= {})[v.name] ??= []).push(n);
      }
    }
  }
  const LOAD1 = load();

  console.log(`\nLoad average (1, 5, 15 min): ${LOAD0} at start, ${LOAD1} at end; ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  console.log(`Plugin at ${execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).toString().trim()}${baselineCommit ? `, baseline ${baselineCommit}` : ''}; ${REPS} measured run(s) per cell, differences between their medians.\n`);
  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  const signed = (n) => (n >= 0 ? '+' : '−') + fmt(Math.abs(n));
  for (const request of REQUESTS) {
    const title = { load: 'load WordPress and exit', front: 'front page', rest: SERVER === 'fpm' ? 'REST publish, POST /wp-json/wp/v2/posts/ID as an administrator' : 'REST publish (rest_do_request)' }[request];
    console.log(`\n#### ${SERVER === 'fpm' ? 'php-fpm' : 'PHP CLI'}: ${title}\n`);
    console.log('| variant | instructions (runs) | vs none | its own cost (plugin minus this) |');
    console.log('|---|---:|---:|---:|');
    const last = (v) => median(counts[request][v]);
    for (const v of VARIANTS) {
      const own = v.leaveOut ? signed(last('plugin') - last(v.name)) : '–';
      console.log(`| ${v.name} | ${counts[request][v.name].map(fmt).join(' / ')} | ${v.name === 'none' ? '–' : signed(last(v.name) - last('none'))} | ${own} |`);
    }
  }
} finally {
  await site.stop();
  fs.rmSync(CG_DIR, { recursive: true, force: true });
}
