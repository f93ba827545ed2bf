<?php
// Under php-fpm (several static workers, many requests, each sending an
// event) every worker keeps one publisher connection across requests, and
// no event is lost or doubled, also when php-fpm is stopped gracefully.
// php-fpm is driven over FastCGI directly (lib.php's FastCgi), no web server.
require __DIR__ . '/lib.php';

const WORKERS = 3;
const REQUESTS = 300;
const PARALLEL = 6;

/** The pool's index.php: sends an event or reports its worker's stats, as the query asks. */
const FPM_SCRIPT = <<<'PHP'
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
    $fpm = new Fpm(['rtet.relay_url' => $relay->url(), 'rtet.api_key' => KEY, 'rtet.spool_dir' => $spool], WORKERS, FPM_SCRIPT);
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
        'rtet.shutdown_timeout_ms' => 200, 'rtet.reconnect_max_ms' => 100], WORKERS, FPM_SCRIPT, $processControlTimeout);
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
