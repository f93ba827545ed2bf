/**
 * The local rtet site: MariaDB, php-fpm (with or without rtet.so), nginx,
 * WordPress (Debian's package, copied into a working directory with its own
 * wp-config.php) with the plugin active and configured, and rtet-relay.
 * Everything listens on loopback, on free ports, and runs from one
 * directory that stop() removes.
 *
 * With `nodes: N`, the relay is N nodes on one redis-server (AOF, everysec)
 * behind an nginx balancer (scripts/site/balancer.mjs): WordPress publishes
 * through the first node, browsers connect through the balancer.
 *
 * Used by `scripts/run.sh` (through up.mjs) and by the end-to-end tests.
 * Only Node's standard library: no npm packages needed to run the site.
 *
 * Runs as root on a fresh Debian 12 (mariadbd --user=root, php-fpm -R,
 * nginx `user root`) or as an ordinary user who can run those binaries.
 */
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { balancerConfig } from './balancer.mjs';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

/** The repository root. */
export const REPO = path.resolve(here, '..', '..');
/** Where the plugin lives in the repository. */
export const PLUGIN_DIR = path.join(REPO, 'plugin', 'real-time-event-trigger');

const TARGET = process.env.RTET_TARGET_DIR || process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');

/** Default path of the relay binary (override with RTET_RELAY_BIN). */
export const RELAY_BIN = process.env.RTET_RELAY_BIN || path.join(TARGET, 'release', 'rtet-relay');
/** Default path of the extension (override with RTET_EXTENSION). */
export const EXTENSION_SO = process.env.RTET_EXTENSION || path.join(TARGET, 'release', 'librtet.so');

const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const PHP_FPM = process.env.RTET_PHP_FPM || '/usr/sbin/php-fpm8.2';
const PHP_CLI = process.env.RTET_PHP || 'php';
const WP_SOURCE = process.env.RTET_WORDPRESS || '/usr/share/wordpress';

/** Asks the kernel for a free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when `check()` returns a truthy value; polls every 100 ms for at most `timeoutMs`. */
export async function waitFor(what, check, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function httpOk(url) {
  const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
  return res.status < 500;
}

/** One child process with its log file; stop() sends SIGTERM and waits (SIGKILL after 10 s). */
class Proc {
  constructor(name, cmd, args, { logFile, env, cwd } = {}) {
    this.name = name;
    const out = fs.openSync(logFile, 'a');
    // Its own process group: Ctrl-C reaches only us (we stop the servers in order), and
    // killGroup() can take a server's workers along if we must end abruptly.
    this.child = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, ...env }, cwd, detached: true });
    fs.closeSync(out);
    this.logFile = logFile;
    this.exited = new Promise((resolve) => this.child.once('exit', (code, sig) => resolve({ code, sig })));
    this.done = false;
    this.exited.then(() => { this.done = true; });
  }

  async stop(signal = 'SIGTERM') {
    if (this.done) return;
    this.child.kill(signal);
    const t = setTimeout(() => { if (!this.done) this.child.kill('SIGKILL'); }, 10000);
    await this.exited;
    clearTimeout(t);
  }

  /** SIGKILL to the whole process group (master and workers), for abrupt exits. */
  killGroup() {
    if (this.done) return;
    try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }

  assertRunning() {
    if (this.done) {
      const tail = fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8').slice(-2000) : '';
      const err = new Error(`${this.name} exited early; log ${this.logFile}:\n${tail}`);
      err.fatal = true;
      err.portTaken = /address already in use|bind on tcp\/ip port/i.test(tail);
      throw err;
    }
  }
}

async function run(cmd, args, opts = {}) {
  try {
    return await execFileP(cmd, args, { maxBuffer: 64 * 1024 * 1024, ...opts });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout || ''}\n${e.stderr || ''}`);
  }
}

/**
 * Starts the whole site. Options:
 * - `extension` (bool): load rtet.so into php-fpm (default: when it is built).
 * - `workers` (int): php-fpm static workers (default 2).
 * - `relayBin`, `extensionPath`: binaries to use.
 * - `dir`: working directory (default: a new one under /tmp).
 * - `relayArgs`: extra flags for rtet-relay.
 * - `relayLog`: RUST_LOG for the relay (default info).
 * - `nodes` (int): run that many relay nodes on Redis behind an nginx balancer
 *   (default: one relay with its in-memory engine, no Redis, no balancer).
 * - `plugin` (bool, default true): install the plugin from the repository (false: only its settings).
 * - `fixtures` (bool): install the test-only must-use plugins of tests/e2e/fixtures.
 * - `wpCron` (bool, default true): false sets DISABLE_WP_CRON, so requests spawn no
 *   wp-cron.php that would run alongside a test (it still runs when requested).
 * - `log(msg)`: progress output.
 */
export async function startSite(opts = {}) {
  const site = new Site(opts);
  try {
    await site.start();
  } catch (e) {
    await site.stop({ keepDir: true });
    e.message += `\n(logs kept in ${site.dir})`;
    throw e;
  }
  return site;
}

export class Site {
  constructor(opts) {
    this.opts = opts;
    this.log = opts.log || (() => {});
    this.relayBin = opts.relayBin || RELAY_BIN;
    this.extensionPath = opts.extensionPath || EXTENSION_SO;
    this.extension = opts.extension ?? fs.existsSync(this.extensionPath);
    this.workers = opts.workers || 2;
    this.dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'rtet-site-'));
    this.apiKey = randomBytes(24).toString('hex'); // 48 chars
    this.admin = { user: 'admin', password: randomBytes(9).toString('base64url'), email: 'admin@example.test' };
    this.dbPassword = randomBytes(12).toString('hex');
    this.nodes = opts.nodes || 0;
    this.procs = {};
    // If this process ends without stop() (a crash, a test runner's timeout), take the servers with it.
    this.onExit = () => {
      for (const proc of Object.values(this.procs)) proc.killGroup();
    };
    process.once('exit', this.onExit);
  }

  /** The site's URL, e.g. http://127.0.0.1:43123 */
  get url() { return `http://127.0.0.1:${this.ports.http}`; }
  /** The relay's base URL for WebSockets. */
  get relayUrl() { return `ws://127.0.0.1:${this.ports.relay}`; }
  /** The relay's base URL for HTTP (healthz, metrics). */
  get relayHttp() { return `http://127.0.0.1:${this.ports.relay}`; }
  /** The relay URL browsers use: the balancer with several nodes, else the relay. */
  get publicUrl() { return this.nodes ? `ws://127.0.0.1:${this.ports.balancer}` : this.relayUrl; }
  /** The Redis URL the nodes are started with (`--engine`). */
  get engineUrl() { return `redis://127.0.0.1:${this.ports.redis}/0`; }

  /** Key in `procs` and `ports` of relay node `i` (0, the node WordPress publishes through, is `relay`). */
  static nodeKey(i) { return i === 0 ? 'relay' : `relay-${String.fromCharCode(97 + i)}`; }
  /** WebSocket base URL of node `i`, directly (not through the balancer). */
  nodeUrl(i) { return `ws://127.0.0.1:${this.ports[Site.nodeKey(i)]}`; }
  /** HTTP base URL of node `i` (healthz, metrics). */
  nodeHttp(i) { return `http://127.0.0.1:${this.ports[Site.nodeKey(i)]}`; }

  async start() {
    if (this.opts.relay !== false && !fs.existsSync(this.relayBin)) {
      throw new Error(`relay binary not found at ${this.relayBin}; build it with cargo build --release -p rtet-relay`);
    }
    if (this.extension && !fs.existsSync(this.extensionPath)) {
      throw new Error(`extension not found at ${this.extensionPath}`);
    }
    // Each port is picked just before its server binds it; a port taken in between
    // (another program's outgoing connection) means another pick, not a failure.
    this.ports = {};
    this.log(`working directory ${this.dir}`);
    await Promise.all([this.startDatabase(), this.copyWordPress()]);
    await this.withFreePort('fpm', () => this.startPhp());
    await this.withFreePort('http', () => this.startNginx());
    this.writeWpConfig();
    if (this.nodes) {
      await this.withFreePort('redis', () => this.startRedis());
      for (let i = 0; i < this.nodes; i++) await this.withFreePort(Site.nodeKey(i), () => this.startRelay(i));
      await this.withFreePort('balancer', () => this.startBalancer());
    } else if (this.opts.relay !== false) await this.withFreePort('relay', () => this.startRelay());
    else this.ports.relay = await freePort();
    await this.installWordPress();
  }

  /** Picks a free port for `key` and runs `start`; picks again (up to 5 times) when the port was taken. */
  async withFreePort(key, start) {
    for (let attempt = 1; ; attempt++) {
      this.ports[key] = await freePort();
      try {
        await start();
        return;
      } catch (e) {
        if (!e.portTaken || attempt >= 5) throw e;
        this.log(`port ${this.ports[key]} was taken before ${key} could bind it; picking another`);
      }
    }
  }

  async startDatabase() {
    const d = this.dir;
    const datadir = path.join(d, 'db');
    this.dbSocket = path.join(d, 'mysql.sock');
    this.log('initialising MariaDB');
    const userArgs = IS_ROOT ? ['--user=root'] : [];
    await run('mariadb-install-db', ['--no-defaults', `--datadir=${datadir}`, ...userArgs,
      '--auth-root-authentication-method=socket', '--skip-test-db']);
    await this.withFreePort('db', () => this.startDatabaseServer(datadir, userArgs));
    const sql = [
      'CREATE DATABASE wordpress CHARACTER SET utf8mb4',
      `CREATE USER 'wp'@'127.0.0.1' IDENTIFIED BY '${this.dbPassword}'`,
      `CREATE USER 'wp'@'localhost' IDENTIFIED BY '${this.dbPassword}'`,
      "GRANT ALL ON wordpress.* TO 'wp'@'127.0.0.1'",
      "GRANT ALL ON wordpress.* TO 'wp'@'localhost'",
    ].join(';');
    await run('mariadb', ['--no-defaults', '-S', this.dbSocket, '-u', 'root', '-e', sql]);
    this.log(`MariaDB on 127.0.0.1:${this.ports.db}`);
  }

  async startDatabaseServer(datadir, userArgs) {
    const d = this.dir;
    this.procs.db = new Proc('mariadbd', 'mariadbd', ['--no-defaults', `--datadir=${datadir}`, ...userArgs,
      `--socket=${this.dbSocket}`, `--port=${this.ports.db}`, '--bind-address=127.0.0.1',
      `--pid-file=${path.join(d, 'mariadb.pid')}`, '--skip-log-bin', '--skip-name-resolve',
      '--innodb-buffer-pool-size=64M', '--innodb-log-file-size=16M', '--skip-innodb-use-native-aio'],
    { logFile: path.join(d, 'mariadb.log') });
    await waitFor('MariaDB', async () => {
      this.procs.db.assertRunning();
      if (!fs.existsSync(this.dbSocket)) return false;
      await run('mariadb', ['--no-defaults', '-S', this.dbSocket, '-u', 'root', '-e', 'SELECT 1']);
      return true;
    }, 60000);
  }

  async copyWordPress() {
    const wp = path.join(this.dir, 'wordpress');
    this.wpDir = wp;
    // Debian's package has symlinks into /usr/share/javascript and /etc/wordpress: -L copies their targets.
    await run('cp', ['-rL', WP_SOURCE, wp]).catch(async () => {
      // A dangling link (e.g. .htaccess -> /etc/wordpress/htaccess on a trimmed system) must not stop us.
      await run('cp', ['-r', WP_SOURCE, wp]);
    });
    fs.rmSync(path.join(wp, '.htaccess'), { force: true });
    fs.rmSync(path.join(wp, 'wp-content', 'languages'), { recursive: true, force: true });
    if (this.opts.plugin !== false) {
      fs.symlinkSync(PLUGIN_DIR, path.join(wp, 'wp-content', 'plugins', 'real-time-event-trigger'));
    }
    // Test-only helpers (tests/e2e/fixtures/mu-plugins), when asked for.
    const extra = path.join(REPO, 'tests', 'e2e', 'fixtures', 'mu-plugins');
    if (this.opts.fixtures && fs.existsSync(extra)) {
      fs.mkdirSync(path.join(wp, 'wp-content', 'mu-plugins'), { recursive: true });
      for (const f of fs.readdirSync(extra)) {
        fs.symlinkSync(path.join(extra, f), path.join(wp, 'wp-content', 'mu-plugins', f));
      }
    }
  }

  /** Writes wp-config.php (needs the database and site ports). */
  writeWpConfig() {
    const wp = this.wpDir;
    const salts = ['AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT',
      'LOGGED_IN_SALT', 'NONCE_SALT'].map((k) => `define( '${k}', '${randomBytes(32).toString('hex')}' );`).join('\n');
    fs.writeFileSync(path.join(wp, 'wp-config.php'), `<?php
// Written by scripts/site/stack.mjs for a throwaway local site. Debian's own
// wp-config.php (which reads /etc/wordpress) is replaced.
define( 'DB_NAME', 'wordpress' );
define( 'DB_USER', 'wp' );
define( 'DB_PASSWORD', '${this.dbPassword}' );
define( 'DB_HOST', '127.0.0.1:${this.ports.db}' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
${salts}
$table_prefix = 'wp_';
define( 'WP_HOME', '${'http://127.0.0.1:' + this.ports.http}' );
define( 'WP_SITEURL', '${'http://127.0.0.1:' + this.ports.http}' );
define( 'WP_HTTP_BLOCK_EXTERNAL', true ); // no calls to wordpress.org from a test site
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_AUTO_UPDATE_CORE', false );
${this.opts.wpCron === false ? "define( 'DISABLE_WP_CRON', true ); // no wp-cron.php spawned by requests: the tests run it themselves\n" : ''}define( 'WP_DEBUG', true );
define( 'WP_DEBUG_DISPLAY', false );
define( 'WP_DEBUG_LOG', '${path.join(this.dir, 'wp-debug.log')}' );
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
`);
  }

  /**
   * Starts relay node `i` (0 unless `nodes` is set) on its port, which is kept
   * across restarts. With `nodes`, on the Redis engine, trusting the balancer's
   * X-Forwarded-For, with its share of the machine's CPUs.
   */
  async startRelay(i = 0) {
    const key = Site.nodeKey(i);
    // The key goes by a file only this user can read, never on the command line (ps shows that to everyone).
    const keyFile = path.join(this.dir, 'relay.key');
    fs.writeFileSync(keyFile, `${this.apiKey}\n`, { mode: 0o600 });
    // Nodes sharing this machine each get their share of its CPUs (docs/scaling.md).
    const nodeArgs = this.nodes
      ? ['--engine', this.engineUrl, '--trusted-proxy', '127.0.0.1',
        '--worker-threads', String(Math.max(1, Math.floor(os.availableParallelism() / this.nodes)))]
      : [];
    const args = ['--listen', `127.0.0.1:${this.ports[key]}`, '--api-key-file', keyFile,
      '--allowed-origin', `http://127.0.0.1:${this.ports.http}`, ...nodeArgs, ...(this.opts.relayArgs || [])];
    this.procs[key] = new Proc(`rtet-relay ${key}`, this.relayBin, args, {
      logFile: path.join(this.dir, `${key}.log`), env: { RUST_LOG: this.opts.relayLog || process.env.RUST_LOG || 'info', NO_COLOR: '1' },
    });
    await waitFor(`rtet-relay ${key} /healthz`, async () => {
      this.procs[key].assertRunning();
      return httpOk(`${this.nodeHttp(i)}/healthz`);
    });
    this.log(`rtet-relay${this.nodes ? ` node ${key} (engine ${this.engineUrl})` : ''} on ${this.nodeUrl(i)}`);
  }

  /** Stops the relay, or node `i` (with the memory engine its history goes with it). */
  async stopRelay(i = 0, signal = 'SIGTERM') {
    await this.procs[Site.nodeKey(i)]?.stop(signal);
  }

  /**
   * redis-server on a free loopback port, data in its own directory with
   * the append-only file fsynced every second (what docs/scaling.md advises).
   */
  async startRedis() {
    const dir = path.join(this.dir, 'redis');
    fs.mkdirSync(dir, { recursive: true });
    this.procs.redis = new Proc('redis-server', 'redis-server', ['--bind', '127.0.0.1', '--port', String(this.ports.redis),
      '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--daemonize', 'no'],
    { logFile: path.join(this.dir, 'redis.log') });
    await waitFor('redis-server', async () => {
      this.procs.redis.assertRunning();
      if (!(await tcpOpen(this.ports.redis))) return false;
      const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(this.ports.redis), 'PING']);
      return stdout.trim() === 'PONG';
    });
    this.log(`redis-server on ${this.engineUrl} (AOF everysec in ${dir})`);
  }

  /** The nginx balancer (scripts/site/balancer.mjs) in front of every relay node. */
  async startBalancer() {
    const d = this.dir;
    for (const t of ['client', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(d, 'nginx-tmp', t), { recursive: true });
    const nodes = Array.from({ length: this.nodes }, (_, i) => `127.0.0.1:${this.ports[Site.nodeKey(i)]}`);
    fs.writeFileSync(path.join(d, 'balancer.conf'), balancerConfig({ dir: d, listen: `127.0.0.1:${this.ports.balancer}`, nodes, asRoot: IS_ROOT }));
    this.procs.balancer = new Proc('nginx balancer', 'nginx', ['-c', path.join(d, 'balancer.conf'), '-p', d],
      { logFile: path.join(d, 'balancer.out') });
    await waitFor('nginx balancer', async () => {
      this.procs.balancer.assertRunning();
      return tcpOpen(this.ports.balancer);
    });
    this.log(`nginx balancer on ${this.publicUrl} in front of ${nodes.join(', ')}`);
  }

  async startPhp() {
    const d = this.dir;
    const confd = path.join(d, 'php-conf.d');
    fs.rmSync(confd, { recursive: true, force: true });
    fs.mkdirSync(confd, { recursive: true });
    if (this.extension) {
      fs.writeFileSync(path.join(confd, '90-rtet.ini'), `extension=${this.extensionPath}\n`);
    }
    const user = IS_ROOT ? 'user = root\ngroup = root\n' : '';
    fs.writeFileSync(path.join(d, 'php-fpm.conf'), `[global]
pid = ${path.join(d, 'php-fpm.pid')}
error_log = ${path.join(d, 'php-fpm.log')}
daemonize = no
; workers get time to wait for acks on a restart (see docs/install-wordpress.md)
process_control_timeout = 5s

[www]
${user}listen = 127.0.0.1:${this.ports.fpm}
pm = static
pm.max_children = ${this.workers}
catch_workers_output = yes
clear_env = no
php_admin_value[error_log] = ${path.join(d, 'php-error.log')}
php_admin_flag[log_errors] = on
`);
    const env = { PHP_INI_SCAN_DIR: `/etc/php/8.2/fpm/conf.d:${confd}` };
    this.procs.php = new Proc('php-fpm', PHP_FPM, ['-F', '-y', path.join(d, 'php-fpm.conf'), ...(IS_ROOT ? ['-R'] : [])],
      { logFile: path.join(d, 'php-fpm.out'), env });
    await waitFor('php-fpm', async () => {
      this.procs.php.assertRunning();
      return tcpOpen(this.ports.fpm);
    });
    this.log(`php-fpm (${this.workers} workers, ${this.extension ? 'with rtet.so' : 'without rtet.so: HTTP fallback'}) on 127.0.0.1:${this.ports.fpm}`);
  }

  /** Restarts php-fpm, with or without the extension. */
  async restartPhp({ extension = this.extension } = {}) {
    await this.procs.php?.stop('SIGQUIT');
    this.extension = extension;
    await this.startPhp();
  }

  async startNginx() {
    const d = this.dir;
    // Debian's fastcgi_params passes HTTP_HOST as $host, which drops the port: WordPress would then
    // redirect every request to itself. Our server has one loopback port, so $host:$server_port is exact.
    const params = fs.readFileSync('/etc/nginx/fastcgi_params', 'utf8').split('\n')
      .filter((l) => !/^\s*fastcgi_param\s+HTTP_HOST\b/.test(l)).join('\n');
    fs.writeFileSync(path.join(d, 'fastcgi_params'), `${params}\nfastcgi_param  HTTP_HOST  $host:$server_port;\n`);
    for (const t of ['client', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(d, 'nginx-tmp', t), { recursive: true });
    fs.writeFileSync(path.join(d, 'nginx.conf'), `${IS_ROOT ? 'user root;\n' : ''}worker_processes 1;
pid ${path.join(d, 'nginx.pid')};
error_log ${path.join(d, 'nginx-error.log')} warn;
daemon off;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log ${path.join(d, 'nginx-access.log')};
  client_body_temp_path ${path.join(d, 'nginx-tmp', 'client')};
  proxy_temp_path ${path.join(d, 'nginx-tmp', 'proxy')};
  fastcgi_temp_path ${path.join(d, 'nginx-tmp', 'fastcgi')};
  uwsgi_temp_path ${path.join(d, 'nginx-tmp', 'uwsgi')};
  scgi_temp_path ${path.join(d, 'nginx-tmp', 'scgi')};
  client_max_body_size 16m;
  server {
    listen 127.0.0.1:${this.ports.http};
    server_name 127.0.0.1;
    root ${this.wpDir};
    index index.php;
    location / { try_files $uri $uri/ /index.php?$args; }
    location ~ \\.php$ {
      try_files $uri =404;
      include ${path.join(d, 'fastcgi_params')};
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass 127.0.0.1:${this.ports.fpm};
      fastcgi_read_timeout 120s;
    }
  }
}
`);
    this.procs.nginx = new Proc('nginx', 'nginx', ['-c', path.join(d, 'nginx.conf'), '-p', d],
      { logFile: path.join(d, 'nginx.out') });
    await waitFor('nginx', async () => {
      this.procs.nginx.assertRunning();
      return tcpOpen(this.ports.http);
    });
    this.log(`nginx on ${this.url}`);
  }

  /** Runs PHP code inside WordPress (CLI), returns stdout. `$args` holds the JSON-decoded `args`. */
  async wpEval(code, args = {}, { extension = this.extension } = {}) {
    const file = path.join(this.dir, `eval-${randomBytes(4).toString('hex')}.php`);
    fs.writeFileSync(file, `<?php
$_SERVER['HTTP_HOST'] = '127.0.0.1:${this.ports.http}';
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
$args = json_decode( getenv( 'RTET_EVAL_ARGS' ), true );
${code.includes('WP_INSTALLING') ? '' : `require '${this.wpDir}/wp-load.php';`}
${code}
`);
    try {
      const extArgs = extension ? ['-d', `extension=${this.extensionPath}`] : [];
      const { stdout } = await run(PHP_CLI, [...extArgs, file], { env: { ...process.env, RTET_EVAL_ARGS: JSON.stringify(args) } });
      return stdout;
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  /**
   * What the block editor holds to call the REST API as `user` (the
   * administrator unless told): the login's cookies and a REST nonce.
   */
  async restSession({ user = this.admin.user, password = this.admin.password } = {}) {
    const login = await fetch(`${this.url}/wp-login.php`, {
      method: 'POST', redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: 'wordpress_test_cookie=WP%20Cookie%20check' },
      body: new URLSearchParams({ log: user, pwd: password, testcookie: '1' }),
    });
    const cookies = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const nonce = (await (await fetch(`${this.url}/wp-admin/admin-ajax.php?action=rest-nonce`, { headers: { Cookie: cookies } })).text()).trim();
    if (!/^[0-9a-f]{10}$/.test(nonce)) throw new Error(`no REST nonce for ${user} (got ${JSON.stringify(nonce.slice(0, 80))})`);
    return { cookies, nonce };
  }

  /**
   * `n` drafts by the user `login` (the administrator unless told), made in
   * one PHP process without the plugin's transport (a draft sends nothing):
   * posts for a benchmark to publish. Their ids.
   */
  async drafts(n, login = this.admin.user) {
    const out = await this.wpEval(`
$user = get_user_by( 'login', $args['user'] );
if ( ! $user ) { fwrite( STDERR, 'no user ' . $args['user'] ); exit( 1 ); }
wp_set_current_user( $user->ID );
$ids = array();
for ( $i = 0; $i < $args['n']; $i++ ) {
	$ids[] = wp_insert_post( array( 'post_title' => 'Draft ' . $i . ' ' . uniqid(), 'post_content' => '<!-- wp:paragraph --><p>Words.</p><!-- /wp:paragraph -->', 'post_status' => 'draft', 'post_author' => $user->ID ) );
}
echo json_encode( $ids );`, { n, user: login }, { extension: false });
    return JSON.parse(out.trim().split('\n').pop());
  }

  async installWordPress() {
    this.log('installing WordPress');
    const out = await this.wpEval(`
define( 'WP_INSTALLING', true );
require '${this.wpDir}/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$r = wp_install( 'rtet local site', $args['user'], $args['email'], true, '', wp_slash( $args['password'] ) );
update_option( 'permalink_structure', '/%postname%/' );
update_option( 'users_can_register', 1 );
echo json_encode( array( 'user_id' => $r['user_id'] ) );
`, { user: this.admin.user, email: this.admin.email, password: this.admin.password }, { extension: false });
    JSON.parse(out.trim().split('\n').pop());
    await this.wpEval(`
require_once ABSPATH . 'wp-admin/includes/plugin.php';
flush_rewrite_rules();
if ( $args['activate'] ) {
	$r = activate_plugin( 'real-time-event-trigger/real-time-event-trigger.php' );
	if ( is_wp_error( $r ) ) { fwrite( STDERR, $r->get_error_message() ); exit( 1 ); }
}
$s = get_option( 'rtet_settings', array() );
$s['websocket_server_url'] = $args['relay'];
if ( $args['activate'] ) {
	$s['public_url'] = $args['public']; // without the plugin: only the original recipe's two keys
}
$s['api_key'] = $args['key'];
update_option( 'rtet_settings', $s );
`, { relay: this.relayUrl, public: this.publicUrl, key: this.apiKey, activate: this.opts.plugin !== false }, { extension: false });
    await waitFor('WordPress front page', () => httpOk(`${this.url}/`));
    if (this.opts.plugin !== false) await this.checkFrontPage();
    this.log(`WordPress on ${this.url} (admin: ${this.admin.user} / ${this.admin.password})`);
  }

  /**
   * Fails at once, saying why, when the front page does not carry the
   * browser client: without it every browser test would only time out.
   */
  async checkFrontPage() {
    const res = await fetch(`${this.url}/`, { signal: AbortSignal.timeout(15000) });
    const html = await res.text();
    if (/<script[^>]+id=["']rtet-client-js["']/.test(html)) return;
    const why = [];
    const themes = path.join(this.wpDir, 'wp-content', 'themes');
    const installed = fs.existsSync(themes) ? fs.readdirSync(themes).filter((d) => !d.startsWith('.')) : [];
    if (installed.length === 0) {
      why.push(`no WordPress theme is installed (${WP_SOURCE}/wp-content/themes is empty), so the front page renders nothing; `
        + 'Debian\'s wordpress package only recommends one: run scripts/setup.sh, which installs wordpress-theme-twentytwentythree');
    }
    const active = await this.wpEval(`echo in_array( 'real-time-event-trigger/real-time-event-trigger.php', (array) get_option( 'active_plugins' ), true ) ? 'yes' : 'no';`)
      .catch((e) => `unknown (${e.message})`);
    if (active.trim() !== 'yes') why.push(`the plugin is not active (active: ${active.trim()})`);
    if (res.status !== 200) why.push(`the front page answered HTTP ${res.status}`);
    if (why.length === 0) why.push(`the page has no <script id="rtet-client-js"> (first 300 bytes: ${JSON.stringify(html.slice(0, 300))})`);
    const err = new Error(`the site's front page does not load the rtet browser client: ${why.join('; ')}`);
    err.fatal = true;
    throw err;
  }

  /** The last lines of the site's server logs, for a failure message that says what the servers saw. */
  logTails(bytes = 1500) {
    const logs = ['php-error.log', 'wp-debug.log', 'php-fpm.log', 'nginx-error.log', 'nginx-access.log', 'relay.log'];
    return logs.map((name) => {
      const file = path.join(this.dir, name);
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').slice(-bytes).trim() : '';
      return text ? `--- ${name} (last ${bytes} bytes)\n${text}` : `--- ${name}: empty`;
    }).join('\n');
  }

  /** Tears everything down; the working directory goes too unless keepDir. */
  async stop({ keepDir = false } = {}) {
    const nodes = Array.from({ length: this.nodes }, (_, i) => Site.nodeKey(i)).filter((k) => k !== 'relay');
    const order = ['nginx', 'balancer', 'php', 'relay', ...nodes, 'redis', 'db'];
    for (const name of order) {
      try { await this.procs[name]?.stop(name === 'php' ? 'SIGQUIT' : 'SIGTERM'); } catch { /* already gone */ }
    }
    process.removeListener('exit', this.onExit);
    if (!keepDir && !process.env.RTET_KEEP_SITE) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
