<?php
// Memory a php-fpm worker gains from publishing events (issue 11, "Memory per PHP worker"):
//   php fpm_memory.php REQUESTS
// For each method, a php-fpm 8.2 pool of 2 static workers (php/tests/lib.php's Fpm, on a
// unix socket, only the extensions that method needs) serves REQUESTS requests, two in
// flight, request r sending 1 + (r*3 % 5) events (1 to 5, 3 on average) the method's way:
//   none       no extension: the same page encodes the same payloads and sends nothing
//   rtet-up    rtet_send_event() to a relay started here (rtet.so; ini settings as a site has them)
//   rtet-down  rtet_send_event() with nothing listening at the relay URL (events go to the spool)
//   curl       one blocking HTTP POST per event to the relay's /api/send-event with PHP's curl,
//              a new handle (so connection) per event: the HTTP fallback's way, wp_remote_post()
//              without WordPress around it
//   redis      PUBLISH per event through phpredis on a pconnect()ed connection (REDIS_SOCK)
// Each worker's VmRSS and RssAnon (/proc/PID/status) is read from outside: before its first
// request, after a warm-up (20 requests over the pool) and at the end. Prints one markdown
// row per method with the mean over the 2 workers. FPM_MEMORY_SMAPS=DIR also saves each
// worker's /proc/PID/smaps at the end to DIR as METHOD-PID.smaps.
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

const WORKERS = 2;
const WARMUP = 20;
const PAGE = <<<'PHP'
<?php
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
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
$methods = array_slice($argv, 2) ?: ['none', 'rtet-up', 'rtet-down', 'curl', 'redis'];

/** [VmRSS kB, RssAnon kB] of a process. */
function rss_of(int $pid): array {
    $s = (string)file_get_contents("/proc/$pid/status");
    check(preg_match('/^VmRSS:\s+(\d+) kB/m', $s, $a) === 1 && preg_match('/^RssAnon:\s+(\d+) kB/m', $s, $b) === 1, "status of $pid");
    return [(int)$a[1], (int)$b[1]];
}

/** The mean over $pids of rss_of(). */
function mean_rss(array $pids): array {
    $sum = [0, 0];
    foreach ($pids as $pid) {
        [$v, $a] = rss_of($pid);
        $sum[0] += $v;
        $sum[1] += $a;
    }
    return [$sum[0] / count($pids), $sum[1] / count($pids)];
}

function run_method(string $method, int $requests): string {
    $ext = getenv('RTET_EXT');
    $relay = null;
    $query = ['method' => $method];
    $ini = [];
    switch ($method) {
        case 'none':
            $extensions = [];
            break;
        case 'rtet-up':
        case 'rtet-down':
            $extensions = ["extension=$ext"];
            if ($method === 'rtet-up') {
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
    $batch = function (int $from, int $to) use ($fpm, $query, $pids, &$events) {
        $qs = [];
        for ($r = $from; $r < $to; $r++) {
            $k = 1 + ($r * 3) % 5;
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
    $end = mean_rss($pids);
    if (($dir = getenv('FPM_MEMORY_SMAPS')) !== false && $dir !== '') {
        // For finding what the memory is: each worker's mappings at the end.
        foreach ($pids as $pid) copy("/proc/$pid/smaps", "$dir/$method-$pid.smaps");
    }
    check_eq($pids, $fpm->workerPids(), 'the same workers served every request');
    check_eq('', (string)@file_get_contents("{$fpm->dir}/php-error.log"), "nothing in the workers' PHP error log");
    $fpm->quit();
    $relay?->kill();
    $mb = fn(float $kb) => sprintf('%.2f', $kb / 1024);
    $gain = fn(float $kb) => sprintf('%+.2f', $kb / 1024);
    return "| $method | " . ($requests + WARMUP) . " | $events | {$mb($idle[0])} | {$mb($warm[0])} | {$mb($end[0])} | "
        . "**{$gain($end[0] - $idle[0])}** | {$gain($end[0] - $warm[0])} | {$gain($end[1] - $idle[1])} | {$gain($end[1] - $warm[1])} |";
}

echo "| method | requests | events | VmRSS idle MiB | after warm-up | at end | VmRSS gain (end − idle) | end − warm-up | RssAnon gain (end − idle) | RssAnon end − warm-up |\n";
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
foreach ($methods as $m) {
    echo run_method($m, $requests), "\n";
}
