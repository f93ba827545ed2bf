<?php
// The extension publishing to a relay on the Redis engine while Redis goes
// away: the relay refuses what it cannot store (never acks it), the
// extension keeps those events (queue, then spool), and once Redis is back
// every event reaches a subscriber on the relay exactly once.
require __DIR__ . '/lib.php';

test('Redis stopped for 5 s while PHP publishes: nothing acked is lost, nothing doubled, the spool drains', function () {
    $redis = new RedisServer();
    $r = new Relay('127.0.0.1:0', ['--engine', $redis->url()]);
    [$sub, $file] = live_subscriber($r->url(), 'engine', 'end');
    $dir = tmpdir();
    // A small queue, so what waits out the outage goes to the spool.
    rtet_configure($r->url(), KEY, ['spool_dir' => $dir, 'queue_limit' => 100, 'reconnect_max_ms' => 200]);
    $ids = [];
    $n = 0;
    for (; $n < 300; $n++) $ids[] = rtet_send_event('e', ['i' => $n], 'engine');
    check(rtet_flush(10.0), 'acked while Redis is up');

    $redis->stop();
    wait_until(fn() => http_status("http://{$r->addr}/healthz") === 503, '/healthz answers 503 while Redis is down');
    $acked = rtet_stats()['acked'];
    $until = microtime(true) + 5;
    while (microtime(true) < $until) {
        $ids[] = rtet_send_event('e', ['i' => $n++], 'engine');
        usleep(2000);
    }
    $s = rtet_stats();
    check_eq($acked, $s['acked'], 'nothing is acked while Redis is down');
    check($s['spooled'] > 0, 'past the queue limit events went to the spool: ' . json_encode($s));
    check(count(spool_files($dir)) > 0, 'a spool file exists during the outage');
    check_eq(0.0, metric_value($r->metrics(), 'rtet_engine_up'), 'rtet_engine_up is 0 while Redis is down');

    $redis->start();
    wait_until(fn() => http_status("http://{$r->addr}/healthz") === 200, '/healthz answers 200 once Redis is back', 30.0);
    for ($k = 0; $k < 300; $k++, $n++) $ids[] = rtet_send_event('e', ['i' => $n], 'engine');
    rtet_send_event('end', null, 'engine');
    check(rtet_flush(60.0), 'every event acked once Redis is back; stats ' . json_encode(rtet_stats()));
    check_eq([], spool_files($dir), 'the spool drained');

    $got = array_values(array_filter(ids_of(live_events($sub, $file)), fn($id) => in_array($id, $ids, true)));
    $counts = array_count_values($got);
    check_eq([], array_keys(array_filter($counts, fn($c) => $c > 1)), 'no event delivered twice to the live subscriber');
    check_eq([], array_values(array_diff($ids, $got)), 'every event reached the live subscriber');
    $history = ids_of(collect($r->url(), 'engine', PHP_INT_MAX, 'end'));
    check_eq(count($ids), count($history), 'the channel history holds each event once');
    check_eq([], array_values(array_diff($ids, $history)), 'every event is in the channel history');
    echo '# ', count($ids), ' events, ', $s['spooled'], " spooled during the outage\n";
});

finish();
