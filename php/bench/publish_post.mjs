#!/usr/bin/env node
/**
 * What the plugin adds to the time an editor waits for a publish, and the
 * CPU it costs per published post, on a real local site
 * (scripts/site/stack.mjs: MariaDB, php-fpm with 2 static workers behind
 * nginx, Debian's WordPress, rtet-relay, all on loopback).
 *
 * Variants, compared in the same run:
 *   none      no plugin
 *   ext       this plugin, rtet.so loaded
 *   http      this plugin on its HTTP fallback (CLI: rtet.so not loaded;
 *             php-fpm: the plugin's `rtet_use_extension` filter says no)
 *   recipe    the original blog recipe (scripts/site/recipe/rtet-recipe.php:
 *             save_post → blocking wp_remote_post to /api/send-event with the key)
 *   baseline  the plugin as on git ref BASELINE (default main), rtet.so loaded;
 *             left out with --baseline ''
 *
 * Two paths:
 *   cli   wp_insert_post() of a new published post in a PHP CLI process
 *         (one process per variant and round, --cli posts each); wall and
 *         CPU (getrusage, user + system, the whole process: the extension's
 *         sender thread too) of each call, and the work left for the end of
 *         the process (`shutdown`: the HTTP fallback's send), per post;
 *   rest  the block editor's publish: POST /wp-json/wp/v2/posts/ID
 *         {status: publish} on a draft, as an editor (cookie + nonce),
 *         through nginx and php-fpm; wall time from the client, CPU of the
 *         php-fpm request from a must-use plugin (getrusage from its load to
 *         the last shutdown function, so work done after the response counts).
 *
 * Relay states: up, stopped (connection refused), hung (a listener that
 * accepts connections and never answers).
 *
 * Fairness on a shared machine: each round walks every relay state; within
 * one, the REST publishes alternate variant by variant, each cycle starting
 * at the next variant (A B C D, B C D A, C D A B, …), and the CLI processes
 * run variant after variant, starting at another one each round, so a noisy
 * moment falls on all of them and no variant always runs first. All php-fpm variants run in the same workers with rtet.so
 * loaded (the variant is picked per request by the must-use plugin, through
 * `option_active_plugins`): a variant that never calls the extension pays
 * nothing for it in a request (its module startup does no work; see src/lib.rs).
 *
 *   node php/bench/publish_post.mjs [--rounds 20] [--cli 10] [--rest 10]
 *        [--states up,stopped,hung] [--hung-recipe 1] [--baseline main]
 *        [--instructions 45] [--json FILE] [--report FILE]
 *
 * Then, unless --instructions 0: the instructions each variant executes per
 * `wp_insert_post()` (valgrind's callgrind on a CLI process of 5 and of N
 * posts, the difference per post): a count no other load on the machine
 * moves, so it tells 1% apart where time on a shared machine cannot.
 *
 * Prints Markdown tables: per path, relay state and variant the median wall
 * and CPU per publish, the difference to `none` with its 95% confidence
 * interval (from the per-round ratios), and the spread of the per-round medians.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startSite, EXTENSION_SO, REPO } from '../../scripts/site/stack.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const ROUNDS = Number(opt('--rounds', 20));
const N_CLI = Number(opt('--cli', 10));
const N_REST = Number(opt('--rest', 10));
const STATES = opt('--states', 'up,stopped,hung').split(',');
const HUNG_RECIPE = Number(opt('--hung-recipe', 1));
const BASELINE = opt('--baseline', 'main');
const JSON_OUT = opt('--json', '');
const INSTR_N = Number(opt('--instructions', 45));
const log = (m) => process.stderr.write(`# ${m}\n`);
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

if (!fs.existsSync(EXTENSION_SO)) {
  console.error(`${EXTENSION_SO} is not built (cargo build --release -p rtet)`);
  process.exit(1);
}

const PLUGIN = 'real-time-event-trigger/real-time-event-trigger.php';
const RECIPE = 'rtet-recipe/rtet-recipe.php';
const BASE = 'rtet-baseline/real-time-event-trigger.php';
const VARIANTS = [
  { name: 'none', label: 'no plugin', plugins: [], ext: false },
  { name: 'ext', label: 'plugin + rtet.so', plugins: [PLUGIN], ext: true },
  { name: 'http', label: 'plugin, HTTP fallback', plugins: [PLUGIN], ext: false },
  { name: 'recipe', label: 'original recipe', plugins: [RECIPE], ext: false },
  ...(BASELINE ? [{ name: 'baseline', label: `plugin as on ${BASELINE} + rtet.so`, plugins: [BASE], ext: true }] : []),
];

/** `list` starting at its element `by` (modulo its length), wrapping around. */
function rotated(list, by) {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

const REPORT = opt('--report', '');
if (REPORT) {
  // Prints the tables again from a run saved with --json.
  const saved = JSON.parse(fs.readFileSync(REPORT, 'utf8'));
  report(saved.samples, saved.meta);
  process.exit(0);
}

const LOAD0 = load();
const site = await startSite({ extension: true, workers: 2, log });
let hungServer = null;
const hungSockets = new Set();
// Ctrl-C or a kill stops the site's servers too.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    log(`${sig}: stopping the site`);
    for (const s of hungSockets) s.destroy();
    await site.stop();
    process.exit(130);
  });
}
try {
  const wpc = path.join(site.wpDir, 'wp-content');
  fs.mkdirSync(path.join(wpc, 'plugins', 'rtet-recipe'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'scripts', 'site', 'recipe', 'rtet-recipe.php'), path.join(wpc, 'plugins', 'rtet-recipe', 'rtet-recipe.php'));
  let baselineCommit = '';
  if (BASELINE) {
    baselineCommit = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', BASELINE]).toString().trim();
    const tar = execFileSync('git', ['-C', REPO, 'archive', BASELINE, 'plugin/real-time-event-trigger']);
    const tmp = fs.mkdtempSync(path.join(site.dir, 'baseline-'));
    execFileSync('tar', ['-x', '-C', tmp], { input: tar });
    fs.renameSync(path.join(tmp, 'plugin', 'real-time-event-trigger'), path.join(wpc, 'plugins', 'rtet-baseline'));
  }

  // The variant of a request (header) or a CLI process (environment), and the request's CPU.
  const cpuLog = path.join(site.dir, 'bench-cpu.log');
  fs.mkdirSync(path.join(wpc, 'mu-plugins'), { recursive: true });
  fs.writeFileSync(path.join(wpc, 'mu-plugins', 'rtet-bench-variant.php'), `<?php
/**
 * Plugin Name: rtet publish benchmark: variant picker (written by php/bench/publish_post.mjs)
 */
$rtet_bench = isset( $_SERVER['HTTP_X_RTET_BENCH'] ) ? (string) $_SERVER['HTTP_X_RTET_BENCH'] : (string) getenv( 'RTET_BENCH_VARIANT' );
$rtet_bench_plugins = ${phpArray(Object.fromEntries(VARIANTS.map((v) => [v.name, v.plugins])))};
if ( isset( $rtet_bench_plugins[ $rtet_bench ] ) ) {
	$rtet_bench_ru = getrusage();
	$rtet_bench_t0 = hrtime( true );
	add_filter( 'option_active_plugins', static function () use ( $rtet_bench, $rtet_bench_plugins ) {
		return $rtet_bench_plugins[ $rtet_bench ];
	} );
	if ( 'http' === $rtet_bench ) {
		add_filter( 'rtet_use_extension', '__return_false' );
	}
	if ( isset( $_SERVER['HTTP_X_RTET_BENCH_ID'] ) ) {
		// Registered from a shutdown function: runs after every other one, after the response and the work done after it.
		register_shutdown_function( static function () use ( $rtet_bench_ru, $rtet_bench_t0 ) {
			register_shutdown_function( static function () use ( $rtet_bench_ru, $rtet_bench_t0 ) {
				$ru  = getrusage();
				$cpu = ( $ru['ru_utime.tv_sec'] - $rtet_bench_ru['ru_utime.tv_sec'] + $ru['ru_stime.tv_sec'] - $rtet_bench_ru['ru_stime.tv_sec'] ) * 1e6
					+ $ru['ru_utime.tv_usec'] - $rtet_bench_ru['ru_utime.tv_usec'] + $ru['ru_stime.tv_usec'] - $rtet_bench_ru['ru_stime.tv_usec'];
				file_put_contents( ${phpString(cpuLog)}, (int) $_SERVER['HTTP_X_RTET_BENCH_ID'] . ' ' . (int) $cpu . ' ' . (int) ( ( hrtime( true ) - $rtet_bench_t0 ) / 1000 ) . "\\n", FILE_APPEND | LOCK_EX );
			} );
		} );
	}
}
`);

  // An editor, logged in by cookie, with a REST nonce: what the block editor holds.
  const editor = { user: 'bench-editor', password: 'bench-' + Math.random().toString(36).slice(2) };
  const editorId = Number((await site.wpEval(`
$id = wp_insert_user( array( 'user_login' => $args['user'], 'user_pass' => $args['password'], 'user_email' => 'bench-editor@example.test', 'role' => 'editor', 'display_name' => 'Bench Editor' ) );
echo is_wp_error( $id ) ? 0 : $id;`, editor, { extension: false })).trim());
  if (!editorId) throw new Error('could not create the editor');
  await site.wpEval(`
require_once ABSPATH . 'wp-admin/includes/plugin.php';
activate_plugin( ${phpString(RECIPE)} );
${BASELINE ? `// Its activation would only create what this plugin's did; listing it is enough for the picker.
$a = (array) get_option( 'active_plugins' ); $a[] = ${phpString(BASE)}; update_option( 'active_plugins', array_values( array_unique( $a ) ) );` : ''}`, {}, { extension: false });

  const { cookies, nonce } = await site.restSession(editor);

  /** Drafts for the REST publishes, by the editor. */
  const drafts = (n) => site.drafts(n, editor.user);

  let requestId = 0;
  async function restPublish(variant, postId) {
    const id = ++requestId;
    const t = performance.now();
    const res = await fetch(`${site.url}/wp-json/wp/v2/posts/${postId}`, {
      method: 'POST',
      headers: { Cookie: cookies, 'X-WP-Nonce': nonce, 'Content-Type': 'application/json', 'X-Rtet-Bench': variant, 'X-Rtet-Bench-Id': String(id) },
      body: JSON.stringify({ status: 'publish', title: `Published ${postId}` }),
      signal: AbortSignal.timeout(60000),
    });
    await res.arrayBuffer();
    const wall = performance.now() - t;
    if (res.status !== 200) throw new Error(`publish of ${postId} (${variant}) answered ${res.status}`);
    return { id, wall };
  }

  const cliScript = path.join(site.dir, 'bench-cli.php');
  fs.writeFileSync(cliScript, `<?php
$_SERVER['HTTP_HOST'] = '127.0.0.1:${site.ports.http}';
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
// WP-Cron would spawn its own request from some processes and not others: not part of a publish.
define( 'DISABLE_WP_CRON', true );
require ${phpString(path.join(site.wpDir, 'wp-load.php'))};
function rtet_bench_cpu() {
	$ru = getrusage();
	return ( $ru['ru_utime.tv_sec'] + $ru['ru_stime.tv_sec'] ) * 1e6 + $ru['ru_utime.tv_usec'] + $ru['ru_stime.tv_usec'];
}
wp_set_current_user( (int) $argv[2] );
$wall = array();
$cpu  = array();
for ( $i = 0; $i < (int) $argv[1]; $i++ ) {
	$fields = array( 'post_title' => 'CLI ' . $i . ' ' . uniqid(), 'post_content' => 'Words.', 'post_status' => 'publish' );
	$c = rtet_bench_cpu();
	$t = hrtime( true );
	$id = wp_insert_post( $fields );
	$wall[] = ( hrtime( true ) - $t ) / 1e3;
	$cpu[]  = rtet_bench_cpu() - $c;
	if ( ! $id ) { exit( 1 ); }
}
$c0 = rtet_bench_cpu();
$t0 = hrtime( true );
// What waits for the end of the process (WordPress's \`shutdown\`), after every other shutdown function.
register_shutdown_function( static function () use ( $wall, $cpu, $c0, $t0 ) {
	register_shutdown_function( static function () use ( $wall, $cpu, $c0, $t0 ) {
		echo "\\n", json_encode( array( 'wall' => $wall, 'cpu' => $cpu, 'after_wall' => ( hrtime( true ) - $t0 ) / 1e3, 'after_cpu' => rtet_bench_cpu() - $c0 ) ), "\\n";
	} );
} );
`);
  function cliRun(variant, n, wrapper = []) {
    const ext = variant.ext ? ['-d', `extension=${EXTENSION_SO}`] : [];
    return new Promise((resolve, reject) => {
      const cmd = [...wrapper, process.env.RTET_PHP || 'php', ...ext, cliScript, String(n), String(editorId)];
      const child = spawn(cmd[0], cmd.slice(1), {
        env: { ...process.env, RTET_BENCH_VARIANT: variant.name }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      child.on('exit', (code) => {
        const last = out.trim().split('\n').pop();
        if (code !== 0) reject(new Error(`CLI ${variant.name} exited ${code}: ${err.slice(-2000)}${out.slice(-2000)}`));
        else resolve({ ...JSON.parse(last), stderr: err });
      });
    });
  }

  async function clean() {
    // Every relay state starts without undelivered events or back-off left by the one before.
    await site.wpEval(`
delete_transient( 'rtet_relay_slow' );
global $wpdb;
$wpdb->query( 'DELETE FROM ' . $wpdb->prefix . 'rtet_pending' );`, {}, { extension: false });
  }
  async function unhang() {
    if (!hungServer) return;
    for (const s of hungSockets) s.destroy();
    hungSockets.clear();
    await new Promise((r) => hungServer.close(r));
    hungServer = null;
  }
  const relayRunning = () => site.procs.relay && !site.procs.relay.done;
  const setState = {
    up: async () => { await unhang(); if (!relayRunning()) await site.startRelay(); },
    stopped: async () => { await unhang(); await site.stopRelay(); },
    hung: async () => {
      await site.stopRelay();
      if (hungServer) return;
      hungServer = net.createServer((s) => { hungSockets.add(s); s.on('error', () => {}); s.on('close', () => hungSockets.delete(s)); });
      await new Promise((resolve, reject) => { hungServer.once('error', reject); hungServer.listen(site.ports.relay, '127.0.0.1', resolve); });
    },
  };

  // samples[path][state][variant] = { rounds: [{wall: [], cpu: [], after_wall, after_cpu, n}] }
  const samples = { cli: {}, rest: {} };
  const slot = (p, state, v) => {
    samples[p][state] ??= {};
    return (samples[p][state][v] ??= { rounds: [] });
  };
  const started = Date.now();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const state of STATES) {
      await setState[state]();
      await clean();
      const nFor = (v, n) => (state === 'hung' && v.name === 'recipe' ? Math.min(n, HUNG_RECIPE) : n);
      log(`round ${round}/${ROUNDS}, relay ${state} (load ${load()}, ${((Date.now() - started) / 1000).toFixed(0)} s)`);

      // CLI: one process per variant, the order rotated every round (no variant always first).
      for (const v of rotated(VARIANTS, round)) {
        const r = await cliRun(v, nFor(v, N_CLI));
        slot('cli', state, v.name).rounds.push({ wall: r.wall, cpu: r.cpu, after_wall: r.after_wall, after_cpu: r.after_cpu, n: r.wall.length });
      }

      // REST: alternate the variants publish by publish.
      const perVariant = VARIANTS.map((v) => nFor(v, N_REST));
      const ids = await drafts(perVariant.reduce((a, b) => a + b, 0) + 1);
      const got = VARIANTS.map(() => []);
      fs.writeFileSync(cpuLog, '');
      await restPublish('none', ids.pop()); // one request to warm the route after the state change (not counted)
      for (let i = 0; i < Math.max(...perVariant); i++) {
        // Each cycle starts at another variant: a publish's place in the cycle (what ran just
        // before it in the same workers) is spread evenly over the variants.
        for (const k of rotated(VARIANTS.map((_, k) => k), i + round)) {
          if (i < perVariant[k]) got[k].push(await restPublish(VARIANTS[k].name, ids.pop()));
        }
      }
      // The CPU lines are written after the response, when the request is done: wait for all of them.
      const want = new Set(got.flat().map((g) => g.id));
      const cpuById = new Map();
      const deadline = Date.now() + 30000;
      while (Date.now() < deadline) {
        for (const line of fs.readFileSync(cpuLog, 'utf8').split('\n')) {
          const [id, cpu, wall] = line.split(' ').map(Number);
          if (want.has(id)) cpuById.set(id, { cpu, wall });
        }
        if (cpuById.size === want.size) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      if (cpuById.size !== want.size) throw new Error(`only ${cpuById.size} of ${want.size} requests logged their CPU`);
      VARIANTS.forEach((v, k) => {
        slot('rest', state, v.name).rounds.push({
          wall: got[k].map((g) => g.wall * 1000),
          cpu: got[k].map((g) => cpuById.get(g.id).cpu),
          server_wall: got[k].map((g) => cpuById.get(g.id).wall),
          after_wall: 0, after_cpu: 0, n: got[k].length,
        });
      });
    }
  }
  // Instructions per published post (valgrind's callgrind, the whole CLI process and its threads):
  // unlike time, not moved by what else runs on the machine. 5 and INSTR_N posts, the difference per post.
  const instructions = {};
  if (INSTR_N > 5) {
    await setState.up();
    await clean();
    for (const v of VARIANTS) {
      const count = async (n) => {
        const r = await cliRun(v, n, ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null']);
        return Number((r.stderr.match(/Collected : (\d+)/) || [])[1]);
      };
      log(`instructions: ${v.name}`);
      instructions[v.name] = ((await count(INSTR_N)) - (await count(5))) / (INSTR_N - 5);
    }
  }
  await unhang();
  const LOAD1 = load();
  const meta = { baselineCommit, LOAD0, LOAD1, seconds: (Date.now() - started) / 1000, argv, instructions, instrN: INSTR_N };
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ samples, meta }));
  report(samples, meta);
} finally {
  for (const s of hungSockets) s.destroy();
  hungServer?.close();
  await site.stop();
}

function phpString(s) {
  return `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
function phpArray(o) {
  if (Array.isArray(o)) return `array( ${o.map(phpArray).join(', ')} )`;
  if (o && typeof o === 'object') return `array( ${Object.entries(o).map(([k, v]) => `${phpString(k)} => ${phpArray(v)}`).join(', ')} )`;
  return phpString(o);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
function sd(xs) {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
}
/** Student's t for a two-sided 95% interval. */
function t95(df) {
  const table = { 1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00 };
  const keys = Object.keys(table).map(Number).filter((k) => k <= df);
  return df >= 120 ? 1.98 : table[Math.max(...keys)] ?? 12.71;
}
/** Mean and 95% half-interval of per-round values. */
function ci(xs) {
  return { mean: mean(xs), half: xs.length > 1 ? t95(xs.length - 1) * sd(xs) / Math.sqrt(xs.length) : NaN };
}

/**
 * The paired comparison: the i-th publish of a variant against the i-th of
 * `none` in the same round (for REST, the publishes right next to each other
 * in time), as the median of the ratios (or differences) over all pairs,
 * with a 95% bootstrap interval (pairs resampled).
 */
function paired(rs, base, key, diff) {
  const xs = [];
  rs.forEach((r, i) => {
    const b = base[i][key];
    for (let k = 0; k < Math.min(r[key].length, b.length); k++) xs.push(diff ? r[key][k] - b[k] : r[key][k] / b[k] - 1);
  });
  if (xs.length === 0) return { mid: NaN, lo: NaN, hi: NaN };
  let seed = 12345;
  const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x80000000; };
  const boots = [];
  for (let b = 0; b < 1000; b++) {
    const sample = Array.from({ length: xs.length }, () => xs[Math.floor(rand() * xs.length)]);
    boots.push(median(sample));
  }
  boots.sort((a, b) => a - b);
  return { mid: median(xs), lo: boots[25], hi: boots[974] };
}

function report(samples, meta) {
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');
  const ms = (us) => (us >= 100000 ? (us / 1000).toFixed(0) : (us / 1000).toFixed(2));
  const pct = (c) => `${c.mid >= 0 ? '+' : ''}${f(c.mid * 100, 1)}% (${f(c.lo * 100, 1)} … ${f(c.hi * 100, 1)})`;
  const msd = (c) => `${f(c.mid / 1000, 3)} (${f(c.lo / 1000, 3)} … ${f(c.hi / 1000, 3)})`;
  const cpuModel = os.cpus()[0]?.model || 'unknown CPU';
  console.log(`Machine: ${os.cpus().length} × ${cpuModel}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}; PHP ${execFileSync('php', ['-r', 'echo PHP_VERSION;']).toString()}, WordPress from Debian's package, MariaDB, php-fpm 2 static workers behind nginx, all on loopback.`);
  console.log(`Load average (1, 5, 15 min): ${meta.LOAD0} at start, ${meta.LOAD1} at end; ${meta.seconds.toFixed(0)} s.`);
  console.log(`Command: php/bench/publish_post.sh ${meta.argv.filter((a, i, all) => a !== '--json' && all[i - 1] !== '--json').join(' ')}`.trim() + (meta.baselineCommit ? ` (baseline ${BASELINE} = ${meta.baselineCommit})` : ''));
  for (const p of ['cli', 'rest']) {
    console.log(`\n### ${p === 'cli' ? '`wp_insert_post()` in PHP CLI (a new published post)' : '`POST /wp-json/wp/v2/posts/ID` {status: publish} through nginx and php-fpm, as an editor'}\n`);
    console.log(p === 'cli'
      ? '| relay | variant | posts | wall median ms | vs none, wall (95% CI) | round spread | CPU median ms | vs none, CPU ms (95% CI) | after the calls (shutdown) ms wall / CPU per post | CPU in total vs none, ms per post (95% CI) |'
      : '| relay | variant | posts | wall median ms | vs none, wall (95% CI) | round spread | CPU median ms (whole request, incl. after the response) | vs none, CPU ms (95% CI) | php-fpm request wall, median ms | CPU mean vs none, ms per post (95% CI) |');
    console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const state of Object.keys(samples[p])) {
      const byV = samples[p][state];
      if (!byV) continue;
      const base = byV.none.rounds;
      for (const v of VARIANTS.filter((x) => byV[x.name])) {
        const rs = byV[v.name].rounds;
        const all = (k) => rs.flatMap((r) => r[k]);
        const wallMed = median(all('wall'));
        const cpuMed = median(all('cpu'));
        const roundMed = rs.map((r) => median(r.wall));
        const spread = sd(roundMed) / mean(roundMed);
        const wallRatio = paired(rs, base, 'wall', false);
        const cpuDiff = paired(rs, base, 'cpu', true);
        const totalPer = (r) => (r.cpu.reduce((a, b) => a + b, 0) + r.after_cpu) / r.n;
        const totalDiff = ci(rs.map((r, i) => (totalPer(r) - totalPer(base[i])) / 1000));
        const posts = rs.reduce((a, r) => a + r.n, 0);
        const afterCol = p === 'cli'
          ? `${f(mean(rs.map((r) => r.after_wall / r.n)) / 1000)} / ${f(mean(rs.map((r) => r.after_cpu / r.n)) / 1000, 3)}`
          : ms(median(all('server_wall')));
        const isBase = v.name === 'none';
        console.log(`| ${state} | ${v.label} | ${posts} | ${ms(wallMed)} | ${isBase ? '–' : pct(wallRatio)} | ±${f(spread * 100, 1)}% | ${f(cpuMed / 1000, 3)} | ${isBase ? '–' : msd(cpuDiff)} | ${afterCol} | ${isBase ? '–' : `${f(totalDiff.mean, 3)} ± ${f(totalDiff.half, 3)}`} |`);
      }
    }
  }
  const instr = meta.instructions || {};
  if (instr.none) {
    console.log(`\n### Instructions per published post (\`wp_insert_post()\` in PHP CLI, relay up; valgrind --tool=callgrind, the whole process, ${meta.instrN} posts minus 5 posts)\n`);
    console.log('| variant | instructions per post | vs none |');
    console.log('|---|---:|---:|');
    for (const v of VARIANTS.filter((x) => instr[x.name])) {
      const d = instr[v.name] - instr.none;
      console.log(`| ${v.label} | ${Math.round(instr[v.name]).toLocaleString('en')} | ${v.name === 'none' ? '–' : `${d >= 0 ? '+' : ''}${Math.round(d).toLocaleString('en')} (${d >= 0 ? '+' : ''}${f((d / instr.none) * 100, 2)}%)`} |`);
    }
  }
  console.log('\n"vs none, wall" and "vs none, CPU": each publish of the variant paired with the no-plugin publish of the same round and position (REST: the one next to it in time); the median of the ratios (CPU: of the differences, ms) and its 95% bootstrap interval. "CPU in total" (CLI: the calls and the work at the end of the process; REST: the whole php-fpm request, work after the response included): the mean per post minus the no-plugin mean, per round; the mean of the rounds ± its 95% interval (Student\'s t). "round spread": the standard deviation of the per-round wall medians over their mean.');
}
