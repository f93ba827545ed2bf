<?php
// NOT RUN by php/tests/run.sh (the name does not end in _test.php): this fork test
// passed once and hung in two of three runs; the hang is still to be found (issue 3).
// After pcntl_fork() the child builds fresh state (it never touches the
// parent's sender or locks), and parent and child both deliver everything.
require __DIR__ . '/lib.php';

test('after pcntl_fork parent and child both deliver everything', function () {
    $r = new Relay();
    $dir = tmpdir();
    rtet_configure($r->url(), KEY, ['spool_dir' => $dir]);
    $ids = [];
    for ($i = 0; $i < 100; $i++) $ids['before'][] = rtet_send_event('f', ['who' => 'before', 'i' => $i], 'fork');
    $childIds = tmpdir() . '/child.json';
    $pid = pcntl_fork();
    check($pid >= 0, 'fork');
    if ($pid === 0) {
        $GLOBALS['__cleanup'] = []; // the relay and temp dirs are the parent's
        $mine = [];
        for ($i = 0; $i < 500; $i++) $mine[] = rtet_send_event('f', ['who' => 'child', 'i' => $i], 'fork');
        $ok = rtet_flush(30.0);
        $s = rtet_stats();
        file_put_contents($childIds, json_encode(['ok' => $ok, 'ids' => $mine, 'enqueued' => $s['enqueued'], 'pid' => $s['pid']]));
        exit(0);
    }
    for ($i = 0; $i < 500; $i++) $ids['parent'][] = rtet_send_event('f', ['who' => 'parent', 'i' => $i], 'fork');
    pcntl_waitpid($pid, $status);
    check_eq(0, pcntl_wexitstatus($status), 'child exited cleanly');
    check(rtet_flush(30.0), 'parent flush');
    $child = json_decode(file_get_contents($childIds), true);
    check_eq(true, $child['ok'], 'child flush');
    check_eq(500, $child['enqueued'], 'the child started from fresh state');
    check_eq($pid, $child['pid'], 'child stats are its own');
    $ids['child'] = $child['ids'];
    $events = collect($r->url(), 'fork', 1100);
    $got = [];
    foreach ($events as [$f]) $got[$f['data']['who']][] = $f['id'];
    foreach (['before', 'parent', 'child'] as $who) {
        check_eq($ids[$who], $got[$who] ?? [], "$who: every event once, in order");
    }
    check_eq([], spool_files($dir), 'nothing left in the spool');
});

finish();
