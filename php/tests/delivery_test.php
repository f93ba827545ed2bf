<?php
// Nothing queued is lost: the relay down at the start, killed and restarted
// mid-stream, down at process end (a later process delivers the spool),
// the queue limit overflowing to disk, and a corrupt spool file.
require __DIR__ . '/lib.php';

test('relay down when sending starts: events wait, then all arrive in order', function () {
    $addr = unused_addr();
    rtet_configure("ws://$addr", KEY, ['spool_dir' => tmpdir(), 'reconnect_max_ms' => 200]);
    $ids = [];
    for ($i = 0; $i < 300; $i++) $ids[] = rtet_send_event('down', ['i' => $i], 'down');
    check_eq(false, rtet_flush(0.2), 'nothing can be acked while the relay is down');
    $s = rtet_stats();
    check_eq(300, $s['queued'], 'all queued');
    check_eq(false, $s['connected'], 'not connected');
    check(str_contains((string)$s['last_error'], 'cannot connect'), 'last_error says why: ' . $s['last_error']);
    $r = new Relay($addr);
    check(rtet_flush(30.0), 'flush after the relay came up');
    check_eq($ids, ids_of(collect($r->url(), 'down', 300)), 'every event once, in order');
});

test('relay killed and restarted mid-stream: nothing lost, order kept', function () {
    $r = new Relay();
    $addr = $r->addr;
    [$sub, $file] = live_subscriber($r->url(), 'restart', 'never');
    rtet_configure($r->url(), KEY, ['spool_dir' => tmpdir(), 'reconnect_max_ms' => 200]);
    $ids = [rtet_send_event('r', ['i' => -1], 'restart')];
    check(rtet_flush(10.0), 'connected and acked before the kill');
    for ($i = 0; $i < 3000; $i++) {
        $ids[] = rtet_send_event('r', ['i' => $i], 'restart');
        if ($i === 1000) {
            $r->kill(); // SIGKILL: whatever was in flight gets no ack
        }
    }
    rtet_send_event('end', null, 'restart');
    $before = live_events($sub, $file); // it ends when the killed relay's connection does
    $r2 = new Relay($addr);
    check(rtet_flush(30.0), 'flush after the restart; stats ' . json_encode(rtet_stats()));
    check(rtet_stats()['reconnects'] >= 1, 'reconnected');
    $after = ids_of(collect($r2->url(), 'restart', PHP_INT_MAX, 'end'));
    // The new relay got a contiguous tail of the stream, in order; the old one the head.
    $first = array_search($after[0], $ids, true);
    check($first !== false, 'the new relay got our events');
    check_eq(array_slice($ids, $first), $after, 'the rest of the stream, in order, once');
    $head = ids_of($before);
    check_eq(array_slice($ids, 0, count($head)), $head, 'the old relay got the head in order');
    // Events enqueued after the kill cannot have been acked by the old relay: all of them reached the new one.
    check($first <= 1002, "the new relay got everything from the kill on (it starts at $first)");
}); 

test('relay down at process end: the spool is delivered in order by a later process', function () {
    $addr = unused_addr();
    $dir = tmpdir();
    $url = "ws://$addr";
    [$code, $out] = run_php('rtet_configure(' . var_export($url, true) . ', ' . var_export(KEY, true) . ', ["spool_dir" => ' . var_export($dir, true) . ', "shutdown_timeout_ms" => 100]);
        $ids = []; for ($i = 0; $i < 200; $i++) { $ids[] = rtet_send_event("s", ["i" => $i], "spool"); }
        echo json_encode($ids);');
    check_eq(0, $code, "first process exits cleanly: $out");
    $ids = json_decode($out, true);
    $files = spool_files($dir);
    check_eq(1, count($files), 'one spool file');
    check_eq(0600, fileperms("$dir/{$files[0]}") & 0777, 'spool file mode 0600');
    check_eq(0700, fileperms($dir) & 0777, 'spool dir mode 0700');
    check_eq(200, count(file("$dir/{$files[0]}")), '200 events spooled');
    $r = new Relay($addr);
    [$code, $out] = run_php('rtet_configure(' . var_export($url, true) . ', ' . var_export(KEY, true) . ', ["spool_dir" => ' . var_export($dir, true) . ']);
        var_export(rtet_flush(30.0)); echo " ", rtet_stats()["spool_claimed"];');
    check_eq(0, $code, "second process: $out");
    check_eq('true 200', trim($out), 'the later process delivered the spool and flush waited for it');
    check_eq($ids, ids_of(collect($r->url(), 'spool', 200)), 'every spooled event once, in order');
    check_eq([], spool_files($dir), 'the delivered spool file is gone');
});

test('past the queue limit events go to the spool and are still delivered in order', function () {
    // A relay that hangs: it listens but never answers, so the connection attempt waits
    // (nothing is known to be down yet) and only the queue limit sends events to disk.
    $silent = stream_socket_server('tcp://127.0.0.1:0');
    $addr = stream_socket_get_name($silent, false);
    $dir = tmpdir();
    rtet_configure("ws://$addr", KEY . 'x', ['spool_dir' => $dir, 'queue_limit' => 50, 'reconnect_max_ms' => 200,
        'connect_timeout_ms' => 60000]);
    $ids = [];
    for ($i = 0; $i < 500; $i++) $ids[] = rtet_send_event('o', ['i' => $i], 'overflow');
    $s = rtet_stats();
    check_eq(450, $s['spooled'], 'everything past the limit spooled');
    check_eq(500, $s['queued'], 'all 500 waiting');
    check_eq(1, count(spool_files($dir)), 'an overflow file exists');
    fclose($silent);
    $r = new Relay($addr, ['--api-key', KEY . 'x']);
    check(rtet_flush(30.0), 'flush; stats ' . json_encode(rtet_stats()));
    check_eq($ids, ids_of(collect($r->url(), 'overflow', 500)), 'all 500 once, in order');
    check_eq([], spool_files($dir), 'overflow files removed once delivered');
});

test('an event the relay refuses is counted, logged, and does not hold back the others', function () {
    // The relay's frame limit is lower than the extension's, so only the relay can refuse it.
    $r = new Relay('127.0.0.1:0', ['--max-frame-bytes', '1024']);
    $code = 'rtet_configure(' . var_export($r->url(), true) . ', ' . var_export(KEY, true) . ', ["spool_dir" => ' . var_export(tmpdir(), true) . ']);
        $ids = [rtet_send_event("n", ["i" => 1], "public"), rtet_send_event("n", str_repeat("x", 2000), "public"), rtet_send_event("n", ["i" => 3], "public")];
        fwrite(STDOUT, json_encode($ids) . "\n");';
    // In the process: flush counts the refusal as done; stats and the error log show it.
    [$exit, $out] = run_php($code . '
        var_export(rtet_flush(10.0)); $s = rtet_stats(); echo " ", $s["acked"], " ", $s["nacked"], " ", $s["last_error"], "\n";');
    check_eq(0, $exit, "the process: $out");
    $ids = json_decode(explode("\n", $out)[0], true);
    check(str_contains($out, "\ntrue 2 1 rtet: the relay refused event {$ids[1]} on channel public (too_large)"), "flush and stats: $out");
    check_eq(2, substr_count($out, "refused event {$ids[1]}"), "logged once, besides last_error: $out");
    check_eq([$ids[0], $ids[2]], ids_of(collect($r->url(), 'public', 2)), 'the others arrived');
    // A process that ends right after sending: the refusal, answered during its final wait, is still logged.
    [$exit, $out] = run_php($code);
    check_eq(0, $exit, "the second process: $out");
    $ids = json_decode(explode("\n", trim($out))[0], true);
    check(str_contains($out, 'rtet: the relay refused event ' . $ids[1] . ' on channel public (too_large)'), "logged at process end: $out");
});

test('a corrupt spool file is set aside with a warning', function () {
    $dir = tmpdir();
    $url = 'ws://127.0.0.1:9';
    $tag = substr(hash('sha256', "rtet-spool-v1\0$url\0" . KEY), 0, 16);
    $name = "rtet-$tag-00000000000000000001-0000000001-000001.spool";
    file_put_contents("$dir/$name", "{\"type\":\"publish\",\"id\":\"a\",\"channel\":\"public\",\"event\":\"e\",\"data\":1}\nGARBAGE\n");
    [$code, $out] = run_php('set_error_handler(function ($no, $msg) { echo "WARNING: $msg\n"; return true; });
        rtet_configure(' . var_export($url, true) . ', ' . var_export(KEY, true) . ', ["spool_dir" => ' . var_export($dir, true) . ', "shutdown_timeout_ms" => 0]);
        echo "corrupt=", rtet_stats()["spool_corrupt"], "\n";');
    check_eq(0, $code, "no crash: $out");
    check(str_contains($out, 'WARNING: ') && str_contains($out, 'corrupt'), "a warning: $out");
    check(str_contains($out, 'corrupt=1'), "counted: $out");
    check(file_exists("$dir/$name.corrupt"), 'set aside as .corrupt');
    check(!file_exists("$dir/$name"), 'not left to be claimed again');
});

test('a spool directory other users can write is refused, said why, and nothing planted in it is sent', function () {
    $r = new Relay();
    $dir = tmpdir() . '/shared';
    mkdir($dir);
    chmod($dir, 0777);
    $url = $r->url();
    $tag = substr(hash('sha256', "rtet-spool-v1\0$url\0" . KEY), 0, 16);
    file_put_contents("$dir/rtet-$tag-00000000000000000001-0000000001-000001.spool",
        '{"type":"publish","id":"planted-1","channel":"public","event":"user_registered","data":{"url":"https://phish.example/"}}' . "\n");
    [$code, $out] = run_php('set_error_handler(function ($no, $msg) { echo "WARNING: $msg\n"; return true; });
        rtet_configure(' . var_export($url, true) . ', ' . var_export(KEY, true) . ', ["spool_dir" => ' . var_export($dir, true) . ']);
        echo json_encode(rtet_send_event("genuine", 1)), "\n";
        echo rtet_flush(30) ? "flushed" : "not flushed", "\n";');
    check_eq(0, $code, "no crash: $out");
    check(str_contains($out, "rtet: refusing the spool directory $dir: it is writable by group or others"), "a warning says why: $out");
    check(str_contains($out, 'flushed'), "the genuine event was delivered: $out");
    $events = collect($url, 'public', 1);
    check_eq('genuine', $events[0][0]['event'], 'the first event in the relay is the genuine one, not the planted one');
    check(file_exists("$dir/rtet-$tag-00000000000000000001-0000000001-000001.spool"), 'the planted file is left alone');
});

finish();
