<?php
// 10,000 events from one process reach a live subscriber in order, once
// each, with the data exactly as json_encode() makes it.
require __DIR__ . '/lib.php';

test('10,000 events arrive in order, once, with json_encode-equal data', function () {
    $r = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000', '--subscriber-queue', '20000']);
    [$sub, $file] = live_subscriber($r->url(), 'stream', 'end');
    rtet_configure($r->url(), KEY, ['spool_dir' => tmpdir()]);
    $corpus = corpus();
    $n = 10000;
    $ids = [];
    for ($i = 0; $i < $n; $i++) {
        $ids[] = rtet_send_event('item', ['i' => $i, 'v' => $corpus[$i % count($corpus)]], 'stream');
    }
    rtet_send_event('end', null, 'stream');
    check(rtet_flush(60.0), 'flush: every event acked; stats ' . json_encode(rtet_stats()));
    $events = live_events($sub, $file);
    check_eq($n + 1, count($events), 'events received (the last is "end")');
    $seq = null;
    for ($i = 0; $i < $n; $i++) {
        [$f, $raw] = $events[$i];
        check_eq($ids[$i], $f['id'], "event $i id (order)");
        check_eq('item', $f['event'], "event $i name");
        if ($seq !== null) check_eq($seq + 1, $f['seq'], "event $i seq follows");
        $seq = $f['seq'];
        $want = json_encode(['i' => $i, 'v' => $corpus[$i % count($corpus)]], FLAGS);
        check_eq($want, $raw, "event $i data bytes");
    }
    $s = rtet_stats();
    check_eq($n + 1, $s['acked'], 'acked');
    check_eq(0, $s['nacked'], 'nacked');
    check_eq(0, $s['queued'], 'queued');
});

finish();
