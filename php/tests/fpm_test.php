<?php
// Under php-fpm (several static workers, many requests, each sending an
// event) every worker keeps one publisher connection across requests, and
// no event is lost or doubled, also when php-fpm is stopped gracefully.
// php-fpm is driven over FastCGI directly (lib.php's FastCgi), no web server.
require __DIR__ . '/lib.php';

const WORKERS = 3;
const REQUESTS = 300;
const PARALLEL = 6;

/** A php-fpm master started in the foreground with its own ini and pool, on a unix socket. */
final class Fpm {
    public $proc;
    public int $pid;
    public string $sock;
    public string $script;
    public string $dir;
    public ?int $exitCode = null;

    public function __construct(array $ini, int $workers, string $processControlTimeout = '30s') {
        $bin = getenv('RTET_PHP_FPM') ?: '/usr/sbin/php-fpm8.2';
        check(is_executable($bin), "php-fpm at $bin");
        $d = $this->dir = tmpdir();
        $this->sock = "$d/fpm.sock";
        $this->script = "$d/www/index.php";
        mkdir("$d/www");
        file_put_contents($this->script, self::SCRIPT);
        $lines = ['extension=' . getenv('RTET_EXT'), 'display_errors=stderr', 'log_errors=1', "error_log=$d/php-error.log"];
        foreach ($ini as $k => $v) $lines[] = "$k=$v";
        file_put_contents("$d/php.ini", implode("\n", $lines) . "\n");
        $user = posix_getuid() === 0 ? "user = root\ngroup = root\n" : '';
        // process_control_timeout: how long a SIGQUIT (graceful stop) lets workers finish
        // before the master sends SIGTERM; with php-fpm's default 0 it follows at once, and a
        // worker ended by SIGTERM never runs module shutdown, so it cannot wait for acks. The
        // same holds for SIGTERM/SIGINT to the master (fast stop). What a killed worker still
        // had is safe only where it was already on disk (see the last test).
        file_put_contents("$d/php-fpm.conf", "[global]\npid = $d/fpm.pid\nerror_log = $d/fpm.log\ndaemonize = no\n"
            . "process_control_timeout = $processControlTimeout\n\n[rtet]\n{$user}listen = {$this->sock}\npm = static\n"
            . "pm.max_children = $workers\ncatch_workers_output = yes\n");
        $cmd = [$bin, '-F', '-c', "$d/php.ini", '-y', "$d/php-fpm.conf"];
        if (posix_getuid() === 0) $cmd[] = '-R';
        // No scan dir: only our php.ini, not Debian's conf.d.
        $env = array_merge(getenv(), ['PHP_INI_SCAN_DIR' => '']);
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$d/fpm.out", 'a'], 2 => ['file', "$d/fpm.out", 'a']], $pipes, null, $env);
        check(is_resource($this->proc), 'php-fpm starts');
        $this->pid = proc_get_status($this->proc)['pid'];
        $GLOBALS['__cleanup'][] = fn() => $this->kill();
        // Ready when the master's socket accepts a connection.
        wait_until(function () {
            check($this->running(), 'php-fpm is running: ' . $this->logs());
            $s = @stream_socket_client("unix://{$this->sock}", $errno, $err, 1);
            if ($s === false) return false;
            fclose($s);
            return true;
        }, 'php-fpm accepts connections');
    }

    public function running(): bool {
        if ($this->exitCode !== null || !is_resource($this->proc)) return false;
        $st = proc_get_status($this->proc);
        if (!$st['running']) {
            $this->exitCode = $st['exitcode'];
            return false;
        }
        return true;
    }

    public function logs(): string {
        return @file_get_contents("{$this->dir}/fpm.out") . @file_get_contents("{$this->dir}/fpm.log") . @file_get_contents("{$this->dir}/php-error.log");
    }

    /** FastCGI params for one GET of the pool's script with this query. */
    public function params(array $query): array {
        $qs = http_build_query($query);
        return [
            'GATEWAY_INTERFACE' => 'FastCGI/1.0', 'REQUEST_METHOD' => 'GET', 'SERVER_PROTOCOL' => 'HTTP/1.1',
            'SCRIPT_FILENAME' => $this->script, 'SCRIPT_NAME' => '/index.php', 'REQUEST_URI' => "/index.php?$qs",
            'QUERY_STRING' => $qs, 'CONTENT_LENGTH' => '0', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_NAME' => 'localhost',
        ];
    }

    /** Runs the requests ($parallel in flight) and returns each answer's decoded JSON body. */
    public function run(array $queries, int $parallel): array {
        $answers = FastCgi::many("unix://{$this->sock}", array_map(fn($q) => $this->params($q), $queries), $parallel);
        return array_map(function ($a) {
            [$body, $stderr, $status] = $a;
            check($status === 0, "request exit status 0: $body $stderr");
            $j = json_decode($body, true);
            check(is_array($j), "JSON answer: $body $stderr");
            return $j;
        }, $answers);
    }

    /** One request to each of $n workers at once: each waits until all $n arrived, so each lands on another worker. */
    public function everyWorker(int $n, array $query): array {
        $dir = tmpdir();
        return $this->run(array_fill(0, $n, $query + ['barrier' => $dir, 'want' => $n]), $n);
    }

    /** SIGQUIT (graceful stop) and wait for the master to exit; returns its exit code. */
    /** Stops php-fpm: SIGQUIT is the graceful stop, SIGTERM the fast one. */
    public function quit(int $signal = SIGQUIT): int {
        posix_kill($this->pid, $signal);
        wait_until(fn() => !$this->running(), "php-fpm exits after signal $signal: " . $this->logs(), 60.0);
        proc_close($this->proc);
        return $this->exitCode;
    }

    public function kill(): void {
        if ($this->running()) {
            posix_kill($this->pid, SIGTERM);
            $deadline = microtime(true) + 10;
            while ($this->running() && microtime(true) < $deadline) usleep(10000);
            if ($this->running()) posix_kill($this->pid, SIGKILL);
        }
        if (is_resource($this->proc)) proc_close($this->proc);
    }

    const SCRIPT = <<<'PHP'
<?php
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
if (isset($q['barrier'])) {
    // Arrive, then wait (with a deadline) until every expected request has arrived.
    touch($q['barrier'] . '/' . getmypid());
    $deadline = microtime(true) + 20;
    while (count(glob($q['barrier'] . '/*')) < (int)$q['want']) {
        if (microtime(true) > $deadline) { echo json_encode(['error' => 'barrier timeout']); exit; }
        usleep(1000);
    }
}
header('Content-Type: application/json');
switch ($q['op'] ?? '') {
    case 'send':
        $id = rtet_send_event('fpm.req', ['n' => (int)$q['n'], 'pid' => getmypid()], $q['channel'] ?? 'fpm');
        // k: this worker's count of events so far, i.e. the event's place in its send order.
        echo json_encode(['id' => $id, 'pid' => getmypid(), 'k' => rtet_stats()['enqueued']]);
        break;
    case 'stats':
        $flushed = rtet_flush(20.0);
        echo json_encode(['pid' => getmypid(), 'flushed' => $flushed, 'stats' => rtet_stats()]);
        break;
    default:
        echo json_encode(['error' => 'unknown op']);
}
PHP;
}

function publisher_metrics(Relay $r): array {
    $m = $r->metrics();
    return [
        'open' => metric_value($m, 'rtet_connections{role="publisher"}'),
        'accepted' => metric_value($m, 'rtet_connections_accepted_total{role="publisher"}'),
    ];
}

/** Publishes one event over the relay's HTTP endpoint (no publisher connection). */
function http_publish(Relay $r, string $event, string $channel): void {
    $ctx = stream_context_create(['http' => ['method' => 'POST', 'header' => "Authorization: Bearer " . KEY . "\r\nContent-Type: application/json",
        'content' => json_encode(['type' => $event, 'channel' => $channel, 'data' => null]), 'ignore_errors' => true]]);
    $out = file_get_contents("http://{$r->addr}/api/send-event", false, $ctx);
    check(str_contains((string)$out, '"ok":true'), "HTTP publish: $out");
}

/** Each worker's events arrived in the order that worker sent them. */
function check_in_worker_order(array $got, array $answers): void {
    $k = [];
    foreach ($answers as $a) $k[$a['id']] = $a['k'];
    $seen = [];
    foreach ($got as [$f]) {
        if (!isset($k[$f['id']])) continue;
        $pid = $f['data']['pid'];
        check(($seen[$pid] ?? 0) < $k[$f['id']], "worker $pid's events arrive in its send order");
        $seen[$pid] = $k[$f['id']];
    }
}

test('php-fpm: one publisher connection per worker across requests; no event lost or doubled, also at a graceful stop', function () {
    $relay = new Relay();
    $spool = tmpdir();
    $fpm = new Fpm(['rtet.relay_url' => $relay->url(), 'rtet.api_key' => KEY, 'rtet.spool_dir' => $spool], WORKERS);
    check_eq(0.0, publisher_metrics($relay)['accepted'], 'no publisher connection before the first request (module startup connects nothing)');

    // First, one request on every worker at once, then many requests, several in flight.
    $first = $fpm->everyWorker(WORKERS, ['op' => 'send', 'n' => -1]);
    $queries = [];
    for ($n = 0; $n < REQUESTS; $n++) $queries[] = ['op' => 'send', 'n' => $n];
    $answers = array_merge($first, $fpm->run($queries, PARALLEL));
    $sent = []; // id => pid
    foreach ($answers as $a) {
        check(isset($a['id'], $a['pid']), 'answer has id and pid: ' . json_encode($a));
        $sent[$a['id']] = $a['pid'];
    }
    check_eq(REQUESTS + WORKERS, count($sent), 'a distinct id per request');
    $pids = array_values(array_unique(array_values($sent)));
    sort($pids);
    check_eq(WORKERS, count($pids), 'every worker served requests');

    // At the relay: one publisher connection per worker, open, and never more accepted.
    $m = wait_until(function () use ($relay) {
        $m = publisher_metrics($relay);
        return $m['open'] === (float)WORKERS ? $m : null;
    }, 'the relay sees one open publisher connection per worker');
    check_eq((float)count($pids), $m['accepted'], 'publisher connections ever accepted = workers that served');

    // Each worker (again one request per worker) flushes and reports its own counters.
    $stats = $fpm->everyWorker(WORKERS, ['op' => 'stats']);
    $byPid = [];
    foreach ($stats as $s) $byPid[$s['pid']] = $s;
    ksort($byPid);
    check_eq($pids, array_keys($byPid), 'the same workers answer');
    $perPid = array_count_values(array_values($sent));
    foreach ($byPid as $pid => $s) {
        check_eq(true, $s['flushed'], "worker $pid: everything acked");
        check_eq(1, $s['stats']['connects'], "worker $pid: one connection over all its requests");
        check_eq(0, $s['stats']['reconnects'], "worker $pid: no reconnect");
        check_eq(true, $s['stats']['connected'], "worker $pid: still connected");
        check_eq($pid, $s['stats']['pid'], "worker $pid: stats are its own");
        check_eq($perPid[$pid], $s['stats']['enqueued'], "worker $pid: enqueued = its requests");
        check_eq($perPid[$pid], $s['stats']['acked'], "worker $pid: acked = its requests");
    }
    check_eq(['open' => (float)WORKERS, 'accepted' => (float)WORKERS], publisher_metrics($relay), 'still one connection per worker after the stats requests');

    // Graceful stop: workers end, their connections close, nothing is spooled or lost.
    check_eq(0, $fpm->quit(), 'php-fpm exits 0 after SIGQUIT; log: ' . $fpm->logs());
    wait_until(fn() => publisher_metrics($relay)['open'] === 0.0, 'publisher connections closed after php-fpm stopped');
    check_eq((float)WORKERS, publisher_metrics($relay)['accepted'], 'no connection was made at shutdown');
    check_eq([], array_values(array_diff(scandir($spool), ['.', '..'])), 'nothing left in the spool dir');

    http_publish($relay, 'fpm.end', 'fpm');
    $got = collect($relay->url(), 'fpm', PHP_INT_MAX, 'fpm.end');
    $ids = ids_of($got);
    check_eq(count($ids), count(array_unique($ids)), 'no event arrives twice');
    $want = array_keys($sent);
    sort($want);
    sort($ids);
    check_eq($want, $ids, 'every id a request returned arrives, once');
    foreach ($got as [$f]) {
        check_eq($sent[$f['id']], $f['data']['pid'], 'the event carries the pid of the worker that returned its id');
    }
    check_in_worker_order($got, $answers);
    $ns = array_map(fn($e) => $e[0]['data']['n'], $got);
    sort($ns);
    check_eq(array_merge(array_fill(0, WORKERS, -1), range(0, REQUESTS - 1)), $ns, 'every request number once');
    check_eq('', (string)@file_get_contents("{$fpm->dir}/php-error.log"), 'nothing in the workers\' PHP error log');
    $log = (string)file_get_contents("{$fpm->dir}/fpm.log");
    check(!str_contains($log, 'WARNING') && !str_contains($log, 'ERROR'), "no warning in php-fpm's log: $log");
});

/**
 * Sends events through php-fpm while the relay is down, stops php-fpm with $signal, then
 * checks that the workers left every event in the spool and a later process delivers each once.
 */
function stopped_while_down(int $signal, string $processControlTimeout): void {
    $addr = unused_addr();
    $spool = tmpdir();
    $fpm = new Fpm(['rtet.relay_url' => "ws://$addr", 'rtet.api_key' => KEY, 'rtet.spool_dir' => $spool,
        'rtet.shutdown_timeout_ms' => 200, 'rtet.reconnect_max_ms' => 100], WORKERS, $processControlTimeout);
    $queries = [];
    for ($n = 0; $n < 60; $n++) $queries[] = ['op' => 'send', 'n' => $n, 'channel' => 'spool'];
    $answers = array_merge($fpm->everyWorker(WORKERS, ['op' => 'send', 'n' => -1, 'channel' => 'spool']), $fpm->run($queries, PARALLEL));
    $rc = $fpm->quit($signal);
    if ($signal === SIGQUIT) check_eq(0, $rc, 'php-fpm exits 0 after SIGQUIT; log: ' . $fpm->logs());
    $files = spool_files($spool);
    check_eq(WORKERS, count($files), 'one spool file per worker');
    $lines = 0;
    foreach ($files as $f) $lines += count(file("$spool/$f"));
    check_eq(count($answers), $lines, 'every event spooled');

    $relay = new Relay($addr);
    [$code, $out] = run_php('var_export(rtet_flush(30.0)); echo " ", rtet_stats()["spool_claimed"];',
        ['rtet.relay_url' => "ws://$addr", 'rtet.api_key' => KEY, 'rtet.spool_dir' => $spool]);
    check_eq(0, $code, "the later process: $out");
    check_eq('true ' . count($answers), trim($out), 'the later process claimed every spooled event and flush waited for them');
    check_eq([], spool_files($spool), 'no spool file left');
    http_publish($relay, 'fpm.end', 'spool');
    $got = collect($relay->url(), 'spool', PHP_INT_MAX, 'fpm.end');
    $ids = ids_of($got);
    $want = array_map(fn($a) => $a['id'], $answers);
    sort($ids);
    sort($want);
    check_eq($want, $ids, 'every id a request returned arrives, once');
    check_in_worker_order($got, $answers);
}

test('php-fpm stopped gracefully while the relay is down: the workers spool, a later process delivers every event once', function () {
    stopped_while_down(SIGQUIT, '30s');
});

test("php-fpm's fast stop (SIGTERM, workers killed without module shutdown) while the relay is down loses nothing", function () {
    // While the relay is unreachable the extension writes events to the spool as they are
    // sent, so a worker killed without its module shutdown has nothing only in memory.
    stopped_while_down(SIGTERM, '0');
});

finish();
