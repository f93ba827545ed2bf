<?php
// Memory a php-fpm worker gains from publishing events (issue 11, "Memory per PHP worker"):
//   php fpm_memory.php REQUESTS
// For each method, a php-fpm 8.2 pool of 2 static workers (php/tests/lib.php's Fpm, on a
// unix socket, only the extensions that method needs; FPM_MEMORY_WORKERS=N for N workers)
// serves REQUESTS requests, one per worker in flight, request r sending 1 + (r*3 % 5) events (1 to 5, 3 on average) the method's way:
//   none       no extension: the same page encodes the same payloads and sends nothing
//   rtet-up    rtet_send_event() to a relay started here (rtet.so; ini settings as a site has them)
//   rtet-down  rtet_send_event() with nothing listening at the relay URL (events go to the spool)
//   rtet-burst rtet-up, but each warm-up request sends 500 events (a bulk import: 10,000 in
//              all), so the end shows whether a worker keeps the memory of a burst
//   curl       one blocking HTTP POST per event to the relay's /api/send-event with PHP's curl,
//              a new handle (so connection) per event: the HTTP fallback's way, wp_remote_post()
//              without WordPress around it
//   redis      PUBLISH per event through phpredis on a pconnect()ed connection (REDIS_SOCK)
// Each worker's memory (mem_of(): VmRSS, Pss, private, and the resident pages of rtet.so, of
// other files and anonymous ones, from /proc/PID/smaps) is read from outside: before its first
// request, after a warm-up (20 requests over the pool) and at the end, after one last request
// per worker in which rtet flushes (relay up: everything must be acked). Each call (the
// method's send, or json_encode() alone for none) is timed with hrtime() in the page; p50 and
// p99 are over the calls after the warm-up. Prints one markdown row per method with the means
// over the 2 workers, and what a worker holds at the end over one that served the same
// requests without any extension (method none).
//   RTET_EXT_BASELINE=PATH  another build of rtet.so: adds a row for each rtet method with
//                           it, just before the row of RTET_EXT (before/after in one run)
//   FPM_MEMORY_SMAPS=DIR    also saves each worker's /proc/PID/smaps at the end, as
//                           DIR/METHOD[-baseline]-PID.smaps, and for rtet the file offsets of
//                           rtet.so's resident pages when idle and at the end
//                           (DIR/METHOD[-baseline][-idle]-PID.pages)
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

// php-fpm's static workers per pool: FPM_MEMORY_WORKERS, default 2 (Pss shares the code among them).
define('WORKERS', max(1, (int)(getenv('FPM_MEMORY_WORKERS') ?: 2)));
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
$ns = [];
for ($i = 0; $i < $k; $i++) {
    $t0 = hrtime(true);
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
    $ns[] = hrtime(true) - $t0;
}
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'ok' => $ok, 'ns' => $ns]);
PHP;

$requests = (int)($argv[1] ?? 400);
$methods = array_slice($argv, 2) ?: ['none', 'rtet-up', 'rtet-down', 'rtet-burst', 'curl', 'redis'];

/**
 * A process's memory in kB, from /proc/PID/smaps, by what a site pays for it:
 *   vmrss    resident pages it maps (VmRSS): shared pages count in full in every process
 *   pss      each resident page divided by the number of processes mapping it (Pss): with
 *            several workers, the fair share of the pages they share
 *   private  Private_Clean + Private_Dirty: pages no other process maps, what one more
 *            worker costs
 * and the resident pages (Rss) by kind: ext_rss/ext_pss of $ext's mappings (rtet.so's code
 * and data), file_rss of every other file (the PHP binary, libc, ld.so...), anon_rss of
 * anonymous memory (heap, malloc arenas, thread stacks); threads from /proc/PID/status.
 */
function mem_of(int $pid, string $ext): array {
    $m = array_fill_keys(['vmrss', 'pss', 'private', 'ext_rss', 'ext_pss', 'file_rss', 'anon_rss'], 0);
    $kind = 'anon';
    $f = fopen("/proc/$pid/smaps", 'r');
    check($f !== false, "smaps of $pid");
    while (($line = fgets($f)) !== false) {
        if (preg_match('/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/', $line, $h)) {
            $path = trim($h[1]);
            $kind = $path === '' || $path[0] === '[' ? 'anon' : ($ext !== '' && realpath($path) === realpath($ext) ? 'ext' : 'file');
            continue;
        }
        if (!preg_match('/^(Rss|Pss|Private_Clean|Private_Dirty):\s+(\d+) kB/', $line, $v)) continue;
        $kb = (int)$v[2];
        switch ($v[1]) {
            case 'Rss':
                $m['vmrss'] += $kb;
                $m["{$kind}_rss"] += $kb;
                break;
            case 'Pss':
                $m['pss'] += $kb;
                if ($kind === 'ext') $m['ext_pss'] += $kb;
                break;
            default:
                $m['private'] += $kb;
        }
    }
    fclose($f);
    check(preg_match('/^Threads:\s+(\d+)/m', (string)file_get_contents("/proc/$pid/status"), $t) === 1, "threads of $pid");
    $m['threads'] = (int)$t[1];
    return $m;
}

/** The mean over $pids of mem_of(). */
function mean_mem(array $pids, string $ext): array {
    $sum = [];
    foreach ($pids as $pid) {
        foreach (mem_of($pid, $ext) as $k => $kb) $sum[$k] = ($sum[$k] ?? 0) + $kb;
    }
    return array_map(fn($kb) => $kb / count($pids), $sum);
}

/**
 * The file offsets of $ext's pages resident in $pid (from /proc/PID/pagemap, bit 63), one per
 * line: which code a worker has mapped, to find out what it is (symbols at those offsets).
 */
function resident_ext_pages(int $pid, string $ext): string {
    $out = '';
    $pm = fopen("/proc/$pid/pagemap", 'rb');
    foreach (file("/proc/$pid/maps") as $line) {
        if (!preg_match('/^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+\s+(\S+)$/', trim($line), $h) || realpath($h[5]) !== realpath($ext)) continue;
        [$from, $to, $off] = [hexdec($h[1]), hexdec($h[2]), hexdec($h[4])];
        fseek($pm, intdiv($from, 4096) * 8);
        $entries = unpack('P*', (string)fread($pm, intdiv($to - $from, 4096) * 8));
        foreach (array_values($entries) as $i => $e) {
            if ($e < 0) $out .= sprintf("%x %s\n", $off + $i * 4096, $h[3]);
        }
    }
    fclose($pm);
    return $out;
}

/** The $p-th percentile (0-100) of $values, by nearest rank. */
function percentile(array $values, float $p): float {
    sort($values);
    return $values === [] ? NAN : $values[max(0, (int)ceil($p / 100 * count($values)) - 1)];
}

/**
 * Runs one method; returns [requests, events, memory idle, after warm-up, at end (as
 * mean_mem()), events rtet held at the end: spooled, relay down (null without rtet),
 * the time of each call after the warm-up in ns].
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
    $idle = mean_mem($pids, $ext);
    $dump = (string)getenv('FPM_MEMORY_SMAPS');
    if ($dump !== '' && str_starts_with($method, 'rtet')) {
        foreach ($pids as $pid) file_put_contents("$dump/$label-idle-$pid.pages", resident_ext_pages($pid, $ext));
    }
    $events = 0;
    $ns = [];
    $batch = function (int $from, int $to) use ($fpm, $query, $pids, &$events, &$ns, $method) {
        $qs = [];
        for ($r = $from; $r < $to; $r++) {
            $k = $method === 'rtet-burst' && $r < WARMUP ? BURST : 1 + ($r * 3) % 5;
            $events += $k;
            $qs[] = $query + ['r' => $r, 'k' => $k];
        }
        foreach ($fpm->run($qs, WORKERS) as $i => $a) {
            check($a['ok'] === $qs[$i]['k'], "request {$qs[$i]['r']}: every event went out: " . json_encode($a) . ' ' . $fpm->logs());
            check(in_array($a['pid'], $pids, true), 'answered by a worker forked at startup');
            if ($qs[$i]['r'] >= WARMUP) array_push($ns, ...$a['ns']);
        }
    };
    $batch(0, WARMUP);
    $warm = mean_mem($pids, $ext);
    $batch(WARMUP, WARMUP + $requests);
    // Last, one request per worker; with rtet it flushes (relay up) and reports the counters.
    $up = str_starts_with($method, 'rtet') && $method !== 'rtet-down';
    $held = null;
    foreach ($fpm->everyWorker(WORKERS, ['flush' => $up ? 20 : 0]) as $a) {
        if (!isset($a['stats'])) continue;
        check_eq($up, $a['flushed'], "worker {$a['pid']}: everything delivered (relay up) or not (down): " . json_encode($a['stats']));
        $held = ($held ?? 0) + $a['stats']['queued'];
    }
    $end = mean_mem($pids, $ext);
    if ($dump !== '') {
        // For finding what the memory is: each worker's mappings at the end.
        foreach ($pids as $pid) {
            copy("/proc/$pid/smaps", "$dump/$label-$pid.smaps");
            if (str_starts_with($method, 'rtet')) file_put_contents("$dump/$label-$pid.pages", resident_ext_pages($pid, $ext));
        }
    }
    check_eq($pids, $fpm->workerPids(), 'the same workers served every request');
    check_eq('', (string)@file_get_contents("{$fpm->dir}/php-error.log"), "nothing in the workers' PHP error log");
    $fpm->quit();
    $relay?->kill();
    return [$requests + WARMUP, $events, $idle, $warm, $end, $held, $ns];
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
echo "MiB per worker (mean of the " . WORKERS . " workers) at the end; \"over none\": minus a worker of the none pool, which served the same requests.\n\n";
echo "| method | events | held at end | threads | VmRSS | **VmRSS over none** | **Pss over none** | **private over none** | rtet.so Rss | rtet.so Pss | other files' Rss over none | anonymous Rss over none | VmRSS end − warm-up | call p50 µs | call p99 µs |\n";
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
foreach ($results as $label => [$n, $events, $idle, $warm, $end, $held, $ns]) {
    $over = fn(string $k) => $none === null ? 'n/a' : $gain($end[$k] - $none[$k]);
    $us = fn(float $p) => sprintf('%.1f', percentile($ns, $p) / 1000);
    echo "| $label | $events | " . ($held ?? '') . " | {$end['threads']} | {$mb($end['vmrss'])} | **{$over('vmrss')}** | **{$over('pss')}** | **{$over('private')}** | "
        . "{$mb($end['ext_rss'])} | {$mb($end['ext_pss'])} | {$over('file_rss')} | {$over('anon_rss')} | {$gain($end['vmrss'] - $warm['vmrss'])} | {$us(50)} | {$us(99)} |\n";
}
