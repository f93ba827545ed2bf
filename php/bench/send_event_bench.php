<?php
// Per-call cost of publishing one event from PHP, one way per process:
//   php send_event_bench.php MODE ITERATIONS
// MODE: rtet-up    rtet_send_event() to a warm relay (started here via php/tests/lib.php)
//       rtet-down  rtet_send_event() with nothing listening at the relay URL
//       curl       a new curl handle per event POSTing JSON to the relay's /api/send-event
//                  with PHP's curl extension directly (a fresh connection per event)
//       wp_remote_post  WordPress's wp_remote_post() of the same POST, with WordPress loaded:
//                  RTET_WP_SITE is the JSON line of scripts/site/wp-bench-site.mjs (wpLoad, host);
//                  WordPress 6.1's Requests 1.8 makes a new cURL handle, so a fresh connection, per call
//       redis      PUBLISH through phpredis on a pconnect()ed connection (REDIS_SOCK, a unix socket)
// Every call is timed with hrtime(); prints one markdown table row:
// | method | n | p50 µs | p99 µs | mean µs | max µs | CPU µs/call | memory_get_usage gain | VmRSS gain | notes |
// (CPU µs/call: user + system time of the whole PHP process, all threads, over the loop
// (for rtet-*, until after the final rtet_flush()), divided by the calls; the relay's is not in it.)
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

[$mode, $n] = [$argv[1] ?? 'rtet-up', (int)($argv[2] ?? 20000)];
if ($mode === 'wp_remote_post') {
    // Load WordPress at the global scope, as a request would (wp-config.php reaches the
    // site's MariaDB over loopback TCP). Not timed and before the memory baseline.
    $wp_site = json_decode((string)getenv('RTET_WP_SITE'), true);
    check(is_array($wp_site) && is_file($wp_site['wpLoad'] ?? ''), 'RTET_WP_SITE must be the JSON line of scripts/site/wp-bench-site.mjs');
    $_SERVER['HTTP_HOST'] = $wp_site['host'];
    $_SERVER['SERVER_NAME'] = '127.0.0.1';
    $_SERVER['REQUEST_URI'] = '/';
    // A failed check() should print its message, not WordPress's "critical error" page.
    define('WP_DISABLE_FATAL_ERROR_HANDLER', true);
    require $wp_site['wpLoad'];
    check(function_exists('wp_remote_post'), 'WordPress loaded');
    // WP_DEBUG_DISPLAY is off in the site's wp-config.php (errors go to WP_DEBUG_LOG only).
    set_exception_handler(function (Throwable $e) {
        fwrite(STDERR, 'wp_remote_post: ' . get_class($e) . ': ' . $e->getMessage() . ' at ' . $e->getFile() . ':' . $e->getLine() . "\n");
        exit(1);
    });
}
$event = 'post.updated';
$data = ['id' => 123, 'title' => 'Hello world', 'url' => 'https://example.test/?p=123', 'tags' => ['a', 'b']];
$t = array_fill(0, $n, 0);   // allocated before the baseline so it does not count as "gain"

function vmrss_kb(): int {
    preg_match('/^VmRSS:\s+(\d+)\s+kB/m', (string)file_get_contents('/proc/self/status'), $m);
    return (int)$m[1];
}

/** CPU time of this process, all threads, user + system, in µs. */
function cpu_us(): float {
    $r = getrusage();
    return ($r['ru_utime.tv_sec'] + $r['ru_stime.tv_sec']) * 1e6 + $r['ru_utime.tv_usec'] + $r['ru_stime.tv_usec'];
}

$notes = '';
$relay = null;
if ($mode === 'rtet-up' || $mode === 'curl' || $mode === 'wp_remote_post') {
    $relay = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']);
}
$spool = tmpdir();
gc_collect_cycles();
$mem0 = memory_get_usage();
$rss0 = vmrss_kb();

switch ($mode) {
    case 'rtet-up':
    case 'rtet-down':
        $url = $mode === 'rtet-up' ? $relay->url('ws') : 'ws://' . unused_addr();
        rtet_configure($url, KEY, ['spool_dir' => $spool]);
        // Warm up: the first event connects; wait for it to be acked (up) or give up (down).
        rtet_send_event($event, $data);
        if ($mode === 'rtet-up') {
            check(rtet_flush(5.0), 'warm-up event acked');
        } else {
            usleep(200000);
        }
        $cpu0 = cpu_us();
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            rtet_send_event($event, $data);
            $t[$i] = hrtime(true) - $a;
        }
        $f0 = hrtime(true);
        $flushed = rtet_flush($mode === 'rtet-up' ? 30.0 : 0.0);
        $flush_ms = (hrtime(true) - $f0) / 1e6;
        $cpu1 = cpu_us();   // after the flush: the sender thread's work is in it too
        $st = rtet_stats();
        $notes = sprintf('after: flush %s in %.0f ms; acked %d, spooled %d, queued %d, connected %s',
            $flushed ? 'ok' : 'not done', $flush_ms, $st['acked'] ?? -1, $st['spooled'] ?? -1,
            $st['queued'] ?? -1, var_export($st['connected'] ?? null, true));
        if ($mode === 'rtet-up') {
            check($flushed, 'all events acked after the run');
        }
        break;

    case 'curl':
        $endpoint = $relay->url('http') . '/api/send-event';
        $hdr = ['Content-Type: application/json', 'Authorization: Bearer ' . KEY];
        $post = function () use ($endpoint, $hdr, $event, $data): int {
            $c = curl_init($endpoint);
            curl_setopt_array($c, [
                CURLOPT_POST => true,
                CURLOPT_POSTFIELDS => json_encode(['type' => $event, 'data' => $data, 'channel' => 'public'], FLAGS),
                CURLOPT_HTTPHEADER => $hdr,
                CURLOPT_RETURNTRANSFER => true,
                CURLOPT_TIMEOUT => 5,
            ]);
            curl_exec($c);
            $code = (int)curl_getinfo($c, CURLINFO_RESPONSE_CODE);
            curl_close($c);
            return $code;
        };
        check($post() === 200, 'warm-up POST answered 200');
        $bad = 0;
        $cpu0 = cpu_us();
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $code = $post();
            $t[$i] = hrtime(true) - $a;
            $bad += $code !== 200;
        }
        $cpu1 = cpu_us();
        check($bad === 0, "$bad POSTs did not answer 200");
        $notes = "all $n answered 200; PHP's curl extension directly (no WordPress), new handle per call; libcurl " . curl_version()['version'];
        break;

    case 'wp_remote_post':
        $endpoint = $relay->url('http') . '/api/send-event';
        $post = function () use ($endpoint, $event, $data) {
            return wp_remote_post($endpoint, [
                'headers' => ['Content-Type' => 'application/json', 'Authorization' => 'Bearer ' . KEY],
                'body' => wp_json_encode(['type' => $event, 'data' => $data, 'channel' => 'public']),
            ]);
        };
        // Warm-up, and a check that each call is a new connection on the cURL transport:
        // Requests passes curl_getinfo() of its handle to this hook after every request.
        $seen = [];
        $hook = function ($headers, $info) use (&$seen) {
            $seen[] = ($info['local_port'] ?? 0) . '/' . (($info['connect_time'] ?? 0) > 0 ? 'connected' : 'reused');
        };
        add_action('requests-curl.after_request', $hook, 10, 2);
        for ($i = 0; $i < 5; $i++) {
            $r = $post();
            check(!is_wp_error($r), 'warm-up wp_remote_post: ' . (is_wp_error($r) ? $r->get_error_message() : ''));
            check(wp_remote_retrieve_response_code($r) === 200, 'warm-up answered ' . wp_remote_retrieve_response_code($r));
        }
        remove_action('requests-curl.after_request', $hook, 10);
        check(count($seen) === 5, 'warm-up went through the cURL transport (hook ran ' . count($seen) . ' times)');
        check(count(array_unique($seen)) === 5 && !preg_grep('/reused/', $seen),
            'each warm-up call made a new connection: ' . implode(' ', $seen));
        // WP_DEBUG is on in the site's wp-config.php: a notice in the loop would be logged (and timed).
        $debug_log = is_string(WP_DEBUG_LOG) ? WP_DEBUG_LOG : '';
        $debug_size = function () use ($debug_log): int {
            clearstatcache();
            return $debug_log !== '' && is_file($debug_log) ? (int)filesize($debug_log) : 0;
        };
        $debug0 = $debug_size();
        $bad = 0;
        $bad_what = '';
        $cpu0 = cpu_us();
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $r = $post();
            $t[$i] = hrtime(true) - $a;
            // Checked outside the timed part; a 200 from the relay is {"ok":true,...}.
            $code = is_wp_error($r) ? $r->get_error_message() : wp_remote_retrieve_response_code($r);
            if ($code !== 200 || !str_starts_with(wp_remote_retrieve_body($r), '{"ok":true')) {
                $bad++;
                $bad_what = (string)$code;
            }
        }
        $cpu1 = cpu_us();
        check($bad === 0, "$bad wp_remote_post() calls did not answer 200 {\"ok\":true} (last: $bad_what)");
        check($debug_size() === $debug0, 'PHP errors were logged during the loop: '
            . substr((string)file_get_contents($debug_log, false, null, $debug0), 0, 2000));
        $notes = sprintf('all %d answered 200; WordPress %s, Requests %s, cURL transport, new connection per call (checked on the warm-up)',
            $n, $GLOBALS['wp_version'], Requests::VERSION);
        break;

    case 'redis':
        $sock = getenv('REDIS_SOCK');
        check($sock !== false && file_exists($sock), 'REDIS_SOCK must name the redis-server unix socket');
        $r = new Redis();
        check($r->pconnect($sock), 'pconnect');
        $r->publish('public', json_encode(['event' => $event, 'data' => $data], FLAGS));   // warm-up
        $cpu0 = cpu_us();
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $r->publish('public', json_encode(['event' => $event, 'data' => $data], FLAGS));
            $t[$i] = hrtime(true) - $a;
        }
        $cpu1 = cpu_us();
        $notes = 'unix socket (redis-server --port 0), no subscribers; phpredis ' . phpversion('redis');
        break;

    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}

$mem1 = memory_get_usage();
$rss1 = vmrss_kb();
sort($t);
$us = fn(float $ns) => $ns / 1000;
$pct = fn(float $p) => $t[min($n - 1, (int)ceil($p * $n) - 1)];
printf("| %s | %d | %.2f | %.2f | %.2f | %.0f | %.2f | %+d B | %+d kB | %s |\n",
    $mode, $n, $us($pct(0.50)), $us($pct(0.99)), $us(array_sum($t) / $n), $us($t[$n - 1]),
    ($cpu1 - $cpu0) / $n, $mem1 - $mem0, $rss1 - $rss0, $notes);
