<?php
// After pcntl_fork() each process builds fresh state: the child never touches
// the parent's sender, socket or locks, makes ids of its own, and both deliver
// everything once, in order.
require __DIR__ . '/lib.php';

/** Forks a child that sends $n events tagged $who and reports what it saw to a JSON file; returns [pid, file]. */
function fork_sender(string $who, int $n, string $dir): array {
    $report = "$dir/$who.json";
    $pid = pcntl_fork();
    check($pid >= 0, 'fork');
    if ($pid > 0) {
        return [$pid, $report];
    }
    $GLOBALS['__cleanup'] = []; // the relay and temp dirs are the parent's to remove
    $ids = [];
    for ($i = 0; $i < $n; $i++) $ids[] = rtet_send_event('f', ['who' => $who, 'i' => $i], 'fork');
    $ok = rtet_flush(30.0);
    $s = rtet_stats();
    file_put_contents($report, json_encode(['ok' => $ok, 'ids' => $ids, 'stats' => $s]));
    exit(0);
}

test('after pcntl_fork parent and children deliver everything once, in order, with ids of their own', function () {
    $r = new Relay();
    $spool = tmpdir();
    $reports = tmpdir();
    rtet_configure($r->url(), KEY, ['spool_dir' => $spool]);
    $ids = [];
    // Events still queued or in flight at the moment of the fork stay the parent's.
    for ($i = 0; $i < 300; $i++) $ids['before'][] = rtet_send_event('f', ['who' => 'before', 'i' => $i], 'fork');
    $children = ['child1' => fork_sender('child1', 500, $reports), 'child2' => fork_sender('child2', 500, $reports)];
    // Parent and children send in the same milliseconds: ids must still differ.
    for ($i = 0; $i < 500; $i++) $ids['parent'][] = rtet_send_event('f', ['who' => 'parent', 'i' => $i], 'fork');
    foreach ($children as $who => [$pid, $report]) {
        pcntl_waitpid($pid, $status);
        check_eq(0, pcntl_wexitstatus($status), "$who exited cleanly");
        $child = json_decode(file_get_contents($report), true);
        check_eq(true, $child['ok'], "$who: rtet_flush saw every event acked");
        check_eq(500, $child['stats']['enqueued'], "$who started from fresh state (only its own events)");
        check_eq(1, $child['stats']['connects'], "$who opened its own connection");
        check_eq($pid, $child['stats']['pid'], "$who: stats are its own");
        $ids[$who] = $child['ids'];
    }
    check(rtet_flush(30.0), 'parent flush');
    $s = rtet_stats();
    check_eq(800, $s['acked'], 'the parent delivered its own events, those from before the fork included');
    check_eq(0, $s['reconnects'], "the children's exits did not disturb the parent's connection");
    $all = array_merge(...array_values($ids));
    check_eq(count($all), count(array_unique($all)), 'no id is made twice across processes');
    $events = collect($r->url(), 'fork', 1800);
    $got = [];
    foreach ($events as [$f]) $got[$f['data']['who']][] = $f['id'];
    foreach (['before', 'parent', 'child1', 'child2'] as $who) {
        check_eq($ids[$who], $got[$who] ?? [], "$who: every event once, in order");
    }
    check_eq(0, (int)preg_match('/^rtet_duplicates_total [1-9]/m', $r->metrics()), 'the relay dropped nothing as a duplicate');
    check_eq([], spool_files($spool), 'nothing left in the spool');
});

test('a child that ends without flushing spools its events for a later process, not its parent', function () {
    $r = new Relay();
    $spool = tmpdir();
    rtet_configure($r->url(), KEY, ['spool_dir' => $spool]);
    check(rtet_flush(5.0), 'parent connected');
    $down = 'ws://' . unused_addr();
    $pid = pcntl_fork();
    check($pid >= 0, 'fork');
    if ($pid === 0) {
        $GLOBALS['__cleanup'] = [];
        // A relay nobody listens on: the events can only go to the spool at exit.
        rtet_configure($down, KEY, ['spool_dir' => $spool, 'shutdown_timeout_ms' => 200]);
        for ($i = 0; $i < 50; $i++) rtet_send_event('f', ['i' => $i], 'fork');
        exit(0);
    }
    pcntl_waitpid($pid, $status);
    check_eq(0, pcntl_wexitstatus($status), 'child exited cleanly');
    check_eq(1, count(spool_files($spool)), "the child's events are in one spool file");
    // The parent's own relay is unaffected and it does not take the other relay's spool.
    $id = rtet_send_event('f', ['who' => 'parent'], 'fork');
    check(rtet_flush(5.0), 'parent still delivers');
    check_eq(0, rtet_stats()['spool_claimed'], 'the parent claimed nothing');
    check_eq([$id], ids_of(collect($r->url(), 'fork', 1)), 'the parent event arrived');
});

finish();
