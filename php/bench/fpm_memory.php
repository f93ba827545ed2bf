<?php
// Memory a php-fpm worker gains from publishing events (issue 11, "Memory per PHP worker"):
//   php fpm_memory.php REQUESTS
// For each method, a php-fpm 8.2 pool of 2 static workers (php/tests/lib.php's Fpm, on a
// unix socket, only the extensions that method needs) serves REQUESTS requests, two in
// flight, request r sending 1 + (r*3 % 5) events (1 to 5, 3 on average) the method's way:
//   none       no extension: the same page encodes the same payloads and sends nothing
//   rtet-up    rtet_send_event() to a relay started here (rtet.so; ini settings as a site has them)
//   rtet-down  rtet_send_event() with nothing listening at the relay URL (events go to the spool)
//   rtet-burst rtet-up, but each warm-up request sends 500 events (a bulk import: 10,000 in
//              all), so the end shows whether a worker keeps the memory of a burst
//   curl       one blocking HTTP POST per event to the relay's /api/send-event with PHP's curl,
//              a new handle (so connection) per event: the HTTP fallback's way, wp_remote_post()
//              without WordPress around it
//   redis      PUBLISH per event through phpredis on a pconnect()ed connection (REDIS_SOCK)
// Each worker's VmRSS, RssAnon, RssFile (/proc/PID/status) and private memory
// (/proc/PID/smaps_rollup) is read from outside: before its first request, after a warm-up
// (20 requests over the pool) and at the end, after one last request per worker in which
// rtet flushes (relay up: everything must be acked). Prints one markdown row per method
// with the means over the 2 workers, and what a worker holds at the end over one that
// served the same requests without any extension (method none).
//   RTET_EXT_BASELINE=PATH  another build of rtet.so: adds a row for each rtet method with
//                           it, just before the row of RTET_EXT (before/after in one run)
//   FPM_MEMORY_SMAPS=DIR    also saves each worker's /proc/PID/smaps at the end, as
//                           DIR/METHOD[-baseline]-PID.smaps
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

const WORKERS = 2;
const WARMUP = 20;
const BURST = 500;
const PAGE = <<<'PHP'
<?php
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
if (isset($q['barrier'])) {
    // The last request of each worker (see Fpm::everyWorker()): rtet waits until what the
    // worker sent is delivered (up to $q['flush'] seconds), so the end is measured after it.
    touch($q['barrier'] . '/' . getmypid());
    $deadline = microtime(true) + 20;
    while (count(glob($q['barrier'] . '/*')) < (int)$q['want'] && microtime(true) < $deadline) usleep(1000);
    $out = ['pid' => getmypid()];
    if (function_exists('rtet_flush')) {
        $out['flushed'] = rtet_flush((float)$q['flush']);
        $out['stats'] = rtet_stats();
    }
    echo json_encode($out);
    exit;
}
$k = (int)$q['k'];
$ok = 0;
for ($i = 0; $i < $k; $i++) {
    $data = ['id' => (int)$q['r'] * 10 + $i, 'title' => 'Hello world', 'url' => 'https://example.test/?p=123', 'tags' => ['a', 'b']];
    switch ($q['method']) {
        case 'none':
            $ok += json_encode(['type' => 'post.updated', 'data' => $data, 'channel' => 'public'], JSON_UNESCAPED_SLASHES) !== false;
            break;
        case 'rtet-up':
        case 'rtet-down':
        case 'rtet-burst':
            $ok += rtet_send_event('post.updated', $data) !== '';
            break;
        case 'curl':
            $c = curl_init($q['endpoint']);
            curl_setopt_array($c, [
                CURLOPT_POST => true,
                CURLOPT_POSTFIELDS => json_encode(['type' => 'post.updated', 'data' => $data, 'channel' => 'public'], JSON_UNESCAPED_SLASHES),
                CURLOPT_HTTPHEADER => ['Content-Type: application/json', 'Authorization: Bearer ' . $q['key']],
                CURLOPT_RETURNTRANSFER => true,
                CURLOPT_TIMEOUT => 5,
            ]);
            curl_exec($c);
            $ok += curl_getinfo($c, CURLINFO_RESPONSE_CODE) === 200;
            curl_close($c);
            break;
        case 'redis':
            static $redis = null;
            if ($redis === null) {
                $redis = new Redis();
                $redis->pconnect($q['sock']);
            }
            $ok += $redis->publish('public', json_encode(['event' => 'post.updated', 'data' => $data], JSON_UNESCAPED_SLASHES)) !== false;
            break;
    }
}
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'ok' => $ok]);
PHP;

$requests = (int)($argv[1] ?? 400);
$methods = array_slice($argv, 2) ?: ['none', 'rtet-up', 'rtet-down', 'rtet-burst', 'curl', 'redis'];

/**
 * [VmRSS, RssAnon, RssFile, private] of a process, in kB. Private (Private_Clean +
 * Private_Dirty of /proc/PID/smaps_rollup) is the memory no other process maps: what one
 * more worker costs. RssFile counts pages of files (code of the PHP binary, rtet.so, libc...)
 * that every worker maps from the same page cache.
 */
function rss_of(int $pid): array {
    $s = (string)file_get_contents("/proc/$pid/status");
    $out = [];
    foreach (['VmRSS', 'RssAnon', 'RssFile'] as $field) {
        check(preg_match("/^$field:\\s+(\\d+) kB/m", $s, $m) === 1, "$field of $pid");
        $out[] = (int)$m[1];
    }
    $r = (string)file_get_contents("/proc/$pid/smaps_rollup");
    check(preg_match('/^Private_Clean:\s+(\d+) kB/m', $r, $c) === 1 && preg_match('/^Private_Dirty:\s+(\d+) kB/m', $r, $d) === 1, "smaps_rollup of $pid");
    $out[] = (int)$c[1] + (int)$d[1];
    return $out;
}

/** The mean over $pids of rss_of(). */
function mean_rss(array $pids): array {
    $sum = [0, 0, 0, 0];
    foreach ($pids as $pid) {
        foreach (rss_of($pid) as $i => $kb) $sum[$i] += $kb;
    }
    return array_map(fn($kb) => $kb / count($pids), $sum);
}

/**
 * Runs one method; returns [requests, events, RSS idle, after warm-up, at end (RSS as
 * mean_rss()), events rtet held at the end: spooled, relay down (null without rtet)].
 */
function run_method(string $method, int $requests, string $ext, string $label): array {
    $relay = null;
    $query = ['method' => $method];
    $ini = [];
    switch ($method) {
        case 'none':
            $extensions = [];
            break;
        case 'rtet-up':
        case 'rtet-down':
        case 'rtet-burst':
            $extensions = ["extension=$ext"];
            if ($method !== 'rtet-down') {
                $relay = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']);
            }
            $ini = ['rtet.relay_url' => $relay ? $relay->url() : 'ws://' . unused_addr(), 'rtet.api_key' => KEY, 'rtet.spool_dir' => tmpdir()];
            break;
        case 'curl':
            $extensions = ['extension=curl'];
            $relay = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']);
            $query += ['endpoint' => $relay->url('http') . '/api/send-event', 'key' => KEY];
            break;
        case 'redis':
            $extensions = ['extension=igbinary', 'extension=redis'];
            $sock = (string)getenv('REDIS_SOCK');
            check(file_exists($sock), 'REDIS_SOCK names the redis-server unix socket');
            $query['sock'] = $sock;
            break;
        default:
            throw new CheckFailed("unknown method $method");
    }
    $fpm = new Fpm($ini, WORKERS, PAGE, '30s', $extensions);
    $pids = wait_until(fn() => count($fpm->workerPids()) === WORKERS ? $fpm->workerPids() : null, 'php-fpm forked its workers');
    $idle = mean_rss($pids);
    $events = 0;
    $batch = function (int $from, int $to) use ($fpm, $query, $pids, &$events, $method) {
        $qs = [];
        for ($r = $from; $r < $to; $r++) {
            $k = $method === 'rtet-burst' && $r < WARMUP ? BURST : 1 + ($r * 3) % 5;
            $events += $k;
            $qs[] = $query + ['r' => $r, 'k' => $k];
        }
        foreach ($fpm->run($qs, WORKERS) as $i => $a) {
            check($a['ok'] === $qs[$i]['k'], "request {$qs[$i]['r']}: every event went out: " . json_encode($a) . ' ' . $fpm->logs());
            check(in_array($a['pid'], $pids, true), 'answered by a worker forked at startup');
        }
    };
    $batch(0, WARMUP);
    $warm = mean_rss($pids);
    $batch(WARMUP, WARMUP + $requests);
    // Last, one request per worker; with rtet it flushes (relay up) and reports the counters.
    $up = str_starts_with($method, 'rtet') && $method !== 'rtet-down';
    $held = null;
    foreach ($fpm->everyWorker(WORKERS, ['flush' => $up ? 20 : 0]) as $a) {
        if (!isset($a['stats'])) continue;
        check_eq($up, $a['flushed'], "worker {$a['pid']}: everything delivered (relay up) or not (down): " . json_encode($a['stats']));
        $held = ($held ?? 0) + $a['stats']['queued'];
    }
    $end = mean_rss($pids);
    if (($dir = getenv('FPM_MEMORY_SMAPS')) !== false && $dir !== '') {
        // For finding what the memory is: each worker's mappings at the end.
        foreach ($pids as $pid) copy("/proc/$pid/smaps", "$dir/$label-$pid.smaps");
    }
    check_eq($pids, $fpm->workerPids(), 'the same workers served every request');
    check_eq('', (string)@file_get_contents("{$fpm->dir}/php-error.log"), "nothing in the workers' PHP error log");
    $fpm->quit();
    $relay?->kill();
    return [$requests + WARMUP, $events, $idle, $warm, $end, $held];
}

$baseline = (string)getenv('RTET_EXT_BASELINE');
$results = [];
foreach ($methods as $m) {
    if ($baseline !== '' && str_starts_with($m, 'rtet')) {
        $results["$m, baseline"] = run_method($m, $requests, $baseline, "$m-baseline");
    }
    $results[$m] = run_method($m, $requests, (string)getenv('RTET_EXT'), $m);
}
$mb = fn(float $kb) => sprintf('%.2f', $kb / 1024);
$gain = fn(float $kb) => sprintf('%+.2f', $kb / 1024);
$none = $results['none'][4] ?? null;
echo "| method | requests | events | held at end | VmRSS idle MiB | after warm-up | at end | gain (end − idle) | end − warm-up | **VmRSS over no extension** (end) | RssAnon over no extension | RssFile over no extension | private over no extension |\n";
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
foreach ($results as $label => [$n, $events, $idle, $warm, $end, $held]) {
    $over = fn(int $i) => $none === null ? 'n/a' : $gain($end[$i] - $none[$i]);
    echo "| $label | $n | $events | " . ($held ?? '') . " | {$mb($idle[0])} | {$mb($warm[0])} | {$mb($end[0])} | {$gain($end[0] - $idle[0])} | "
        . "{$gain($end[0] - $warm[0])} | **{$over(0)}** | {$over(1)} | {$over(2)} | {$over(3)} |\n";
}
