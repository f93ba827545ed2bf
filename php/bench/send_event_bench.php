<?php
// Per-call cost of publishing one event from PHP, one way per process:
//   php send_event_bench.php MODE ITERATIONS
// MODE: rtet-up    rtet_send_event() to a warm relay (started here via php/tests/lib.php)
//       rtet-down  rtet_send_event() with nothing listening at the relay URL
//       curl       a new curl handle per event POSTing JSON to the relay's /api/send-event
//                  (no connection reuse: what wp_remote_post() does via Requests/curl)
//       redis      PUBLISH through phpredis on a pconnect()ed connection (REDIS_SOCK, a unix socket)
// Every call is timed with hrtime(); prints one markdown table row:
// | method | n | p50 µs | p99 µs | mean µs | max µs | memory_get_usage gain | VmRSS gain | notes |
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

[$mode, $n] = [$argv[1] ?? 'rtet-up', (int)($argv[2] ?? 20000)];
$event = 'post.updated';
$data = ['id' => 123, 'title' => 'Hello world', 'url' => 'https://example.test/?p=123', 'tags' => ['a', 'b']];
$t = array_fill(0, $n, 0);   // allocated before the baseline so it does not count as "gain"

function vmrss_kb(): int {
    preg_match('/^VmRSS:\s+(\d+)\s+kB/m', (string)file_get_contents('/proc/self/status'), $m);
    return (int)$m[1];
}

function free_port(): int {
    $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $err);
    $name = stream_socket_get_name($s, false);
    fclose($s);
    return (int)substr($name, strrpos($name, ':') + 1);
}

$notes = '';
$relay = null;
if ($mode === 'rtet-up' || $mode === 'curl') {
    $relay = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']);
}
$spool = tmpdir();
gc_collect_cycles();
$mem0 = memory_get_usage();
$rss0 = vmrss_kb();

switch ($mode) {
    case 'rtet-up':
    case 'rtet-down':
        $url = $mode === 'rtet-up' ? $relay->url('ws') : 'ws://127.0.0.1:' . free_port();
        rtet_configure($url, KEY, ['spool_dir' => $spool]);
        // Warm up: the first event connects; wait for it to be acked (up) or give up (down).
        rtet_send_event($event, $data);
        if ($mode === 'rtet-up') {
            check(rtet_flush(5.0), 'warm-up event acked');
        } else {
            usleep(200000);
        }
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            rtet_send_event($event, $data);
            $t[$i] = hrtime(true) - $a;
        }
        $f0 = hrtime(true);
        $flushed = rtet_flush($mode === 'rtet-up' ? 30.0 : 0.0);
        $flush_ms = (hrtime(true) - $f0) / 1e6;
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
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $code = $post();
            $t[$i] = hrtime(true) - $a;
            $bad += $code !== 200;
        }
        check($bad === 0, "$bad POSTs did not answer 200");
        $notes = "all $n answered 200; libcurl " . curl_version()['version'];
        break;

    case 'redis':
        $sock = getenv('REDIS_SOCK');
        check($sock !== false && file_exists($sock), 'REDIS_SOCK must name the redis-server unix socket');
        $r = new Redis();
        check($r->pconnect($sock), 'pconnect');
        $r->publish('public', json_encode(['event' => $event, 'data' => $data], FLAGS));   // warm-up
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $r->publish('public', json_encode(['event' => $event, 'data' => $data], FLAGS));
            $t[$i] = hrtime(true) - $a;
        }
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
printf("| %s | %d | %.2f | %.2f | %.2f | %.0f | %+d B | %+d kB | %s |\n",
    $mode, $n, $us($pct(0.50)), $us($pct(0.99)), $us(array_sum($t) / $n), $us($t[$n - 1]),
    $mem1 - $mem0, $rss1 - $rss0, $notes);
