<?php
// Leak check: leak_loop.php (a long send loop through every function of the
// extension, valid and invalid input, two live relays, a dead one, a refused
// key, process end) runs in a real PHP under valgrind memcheck, twice: N and
// 4N iterations. Asserts no definitely, indirectly or possibly lost bytes and
// no memory errors (after leak.supp, whose entries say why each is not ours),
// that "still reachable" at exit does not grow with N, and that every event
// the loop sent arrived at its relay (or, for the dead relay, is in its spool).
// USE_ZEND_ALLOC=0 makes PHP use malloc so that valgrind sees every block;
// ZEND_DONT_UNLOAD_MODULES=1 keeps rtet.so mapped at exit so stacks resolve.
require __DIR__ . '/lib.php';

const LEAK_N = 8000;                  // iterations of the small run; the big one is 4x
const LEAK_SUPPRESSED_MAX = 16384;    // bytes: thread bookkeeping (leak.supp), not per event
const LEAK_REACHABLE_SLACK = 8192;    // bytes "still reachable" may differ between N and 4N

function valgrind_bin(): ?string {
    foreach (['/usr/bin/valgrind', '/usr/local/bin/valgrind'] as $b) {
        if (is_executable($b)) return $b;
    }
    return null;
}

/** The numbers of a memcheck log: leak summary, error summary, used suppressions, error blocks. */
function vg_parse(string $log): array {
    $r = ['definitely' => 0, 'indirectly' => 0, 'possibly' => 0, 'reachable' => 0, 'reachable_blocks' => 0,
          'suppressed_leak' => 0, 'errors' => null, 'contexts' => null, 'suppressed_errors' => 0, 'used' => [], 'blocks' => []];
    $num = fn(string $s) => (int)str_replace(',', '', $s);
    foreach (['definitely', 'indirectly', 'possibly'] as $k) {
        if (preg_match("/$k lost: ([\d,]+) bytes/", $log, $m)) $r[$k] = $num($m[1]);
    }
    if (preg_match('/still reachable: ([\d,]+) bytes in ([\d,]+) blocks/', $log, $m)) {
        $r['reachable'] = $num($m[1]);
        $r['reachable_blocks'] = $num($m[2]);
    }
    if (preg_match('/ suppressed: ([\d,]+) bytes in/', $log, $m)) $r['suppressed_leak'] = $num($m[1]);
    if (preg_match_all('/ERROR SUMMARY: ([\d,]+) errors from ([\d,]+) contexts \(suppressed: ([\d,]+) from/', $log, $m)) {
        $r['errors'] = $num(end($m[1]));
        $r['contexts'] = $num(end($m[2]));
        $r['suppressed_errors'] = $num(end($m[3]));
    }
    if (preg_match_all('/used_suppression:\s+([\d,]+) (\S+)/', $log, $m, PREG_SET_ORDER)) {
        foreach ($m as [, $count, $name]) $r['used'][$name] = ($r['used'][$name] ?? 0) + $num($count);
    }
    // Error and loss-record blocks, each as text without the ==pid== prefix.
    $block = [];
    foreach (explode("\n", $log) as $line) {
        if (!preg_match('/^==\d+== ?(.*)$/', $line, $m)) continue;
        if ($m[1] === '') {
            if ($block) $r['blocks'][] = implode("\n", $block);
            $block = [];
            continue;
        }
        $block[] = $m[1];
    }
    if ($block) $r['blocks'][] = implode("\n", $block);
    $r['blocks'] = array_values(array_filter($r['blocks'], fn($b) => preg_match(
        '/^(Thread \d+.*\n)?(Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination|Argument |Jump to|Process terminating|.* are (definitely|indirectly|possibly) lost)/', $b)));
    return $r;
}

/** Whether a valgrind block's stack goes through rtet (the extension or its Rust crates). */
function vg_ours(string $block): bool {
    return (bool)preg_match('/librtet|\brtet(_publisher|_protocol)?::/', $block);
}

/** The ids of every event the relay has on $channel (history), via an end marker sent now. */
function relay_ids(Relay $r, string $channel): array {
    rtet_configure($r->url(), KEY, ['spool_dir' => tmpdir()]);
    rtet_send_event('end', null, $channel);
    check(rtet_flush(10.0), "the end marker reached {$r->url()}");
    return ids_of(collect($r->url(), $channel, PHP_INT_MAX, 'end'));
}

/** Runs leak_loop.php with $n iterations under valgrind; returns what it found. */
function leak_run(int $n): array {
    $vg = valgrind_bin();
    check($vg !== null, 'valgrind is installed (scripts/setup.sh installs it)');
    $r1 = new Relay();
    $r2 = new Relay();
    $dead = new Relay();
    $dead_url = $dead->url();
    $dead->kill();
    $d = tmpdir();
    foreach (['spool', 'dead_spool'] as $s) mkdir("$d/$s");
    touch("$d/a-file");
    $args = ['n' => $n, 'url1' => $r1->url(), 'url2' => $r2->url(), 'dead' => $dead_url, 'spool' => "$d/spool",
             'dead_spool' => "$d/dead_spool", 'bad_spool' => "$d/a-file/spool", 'out' => "$d/out.json"];
    file_put_contents("$d/args.json", json_encode($args));
    $log = "$d/valgrind.log";
    $cmd = [$vg, '--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible',
        '--errors-for-leak-kinds=definite,indirect,possible', '--error-exitcode=99', '--num-callers=40',
        '--suppressions=' . __DIR__ . '/leak.supp', '-s', "--log-file=$log",
        PHP_BINARY, '-n', '-d', 'extension=' . getenv('RTET_EXT'), '-d', 'zend.assertions=1',
        __DIR__ . '/leak_loop.php', "$d/args.json"];
    $env = array_merge(getenv(), ['USE_ZEND_ALLOC' => '0', 'ZEND_DONT_UNLOAD_MODULES' => '1']);
    $t = microtime(true);
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$d/output", 'w'], 2 => ['redirect', 1]], $pipes, null, $env);
    check(is_resource($p), 'valgrind starts');
    $rc = proc_close($p);
    $secs = microtime(true) - $t;
    $output = (string)file_get_contents("$d/output");
    $vgtext = (string)file_get_contents($log);
    $v = vg_parse($vgtext);
    $res = json_decode((string)@file_get_contents("$d/out.json"), true) ?? [];
    return ['n' => $n, 'rc' => $rc, 'secs' => $secs, 'output' => $output, 'v' => $v, 'res' => $res,
            'r1' => $r1, 'r2' => $r2, 'dead_spool' => "$d/dead_spool", 'log' => $log];
}

function leak_summary(array $x): string {
    $v = $x['v'];
    $used = [];
    foreach ($v['used'] as $name => $c) $used[] = "$name x$c";
    $acked = $x['res']['stats']['acked'] ?? '?';
    return sprintf("valgrind N=%d: definitely lost %d B, indirectly lost %d B, possibly lost %d B, still reachable %d B in %d blocks, "
        . "suppressed leaks %d B; errors %s from %s contexts (suppressed %d: %s); %.1f s, relay 1 acked %s before the tail",
        $x['n'], $v['definitely'], $v['indirectly'], $v['possibly'], $v['reachable'], $v['reachable_blocks'],
        $v['suppressed_leak'], $v['errors'] ?? '?', $v['contexts'] ?? '?', $v['suppressed_errors'],
        $used ? implode(', ', $used) : 'none', $x['secs'], $acked);
}

$runs = [];
foreach ([LEAK_N, 4 * LEAK_N] as $n) {
    test("leak: $n iterations under valgrind: nothing lost, no memory errors, every event delivered", function () use ($n, &$runs) {
        $x = leak_run($n);
        $runs[$n] = $x;
        echo leak_summary($x), "\n";
        $v = $x['v'];
        $show = function (array $blocks): string {
            $out = '';
            foreach (array_slice($blocks, 0, 3) as $b) {
                $out .= "\n--- " . (vg_ours($b) ? '[rtet in the stack] ' : '') . implode("\n", array_slice(explode("\n", $b), 0, 25));
            }
            return $out;
        };
        check($v['errors'] !== null, "valgrind wrote its summary (exit {$x['rc']}): " . substr($x['output'], -2000));
        $ours = array_filter($v['blocks'], 'vg_ours');
        check_eq(0, count($ours), 'valgrind reports with rtet in the stack' . $show(array_values($ours)));
        check_eq(0, $v['definitely'], 'definitely lost bytes' . $show($v['blocks']));
        check_eq(0, $v['indirectly'], 'indirectly lost bytes' . $show($v['blocks']));
        check_eq(0, $v['possibly'], 'possibly lost bytes' . $show($v['blocks']));
        check_eq(0, $v['errors'], 'memcheck errors' . $show($v['blocks']));
        check($v['suppressed_leak'] <= LEAK_SUPPRESSED_MAX, "suppressed (thread bookkeeping) leaks stay small: {$v['suppressed_leak']} B");
        check_eq(0, $x['rc'], "the workload exited cleanly under valgrind; its output:\n" . substr($x['output'], -3000));
        $res = $x['res'];
        check_eq([], $res['problems'] ?? ['no result file'], 'the workload saw the extension behave as documented');
        check(str_contains($x['output'], 'rtet: cannot write the spool file'), 'spool failures went through error_log()');
        $s = $res['stats'];
        check($s['acked'] === $s['enqueued'] && $s['nacked'] === 0 && $s['acked'] > $n / 2, 'relay 1 acked everything: ' . json_encode($s));
        // Every event arrived, once, in order, at the relay it was sent to (the tail via module shutdown).
        $total = 0;
        foreach ([1 => $x['r1'], 2 => $x['r2']] as $i => $relay) {
            foreach (['leak', 'public'] as $c) {
                $want = $res['sent'][$i][$c];
                check(count($want) > $n / 10, "relay $i, $c: the loop sent a share of its events");
                check_eq($want, relay_ids($relay, $c), "relay $i, channel $c: every event once, in order");
                $total += count($want);
            }
        }
        // The dead relay's events are all in its spool, in order, for a later process.
        $lines = [];
        $files = spool_files($x['dead_spool']);
        sort($files);
        foreach ($files as $f) {
            foreach (file("{$x['dead_spool']}/$f", FILE_IGNORE_NEW_LINES) as $l) $lines[] = json_decode($l, true)['id'] ?? null;
        }
        check_eq($res['dead_ids'], $lines, "the dead relay's 40 events are in its spool");
        echo "  delivered: $total events (one per channel) to two relays, " . count($lines) . " spooled for the dead one, "
            . "{$res['thrown']} invalid calls threw, {$res['tokens']} tokens signed\n";
    });
}

test('leak: memory held at exit does not grow with N (' . LEAK_N . ' vs ' . 4 * LEAK_N . ' iterations)', function () use (&$runs) {
    check(isset($runs[LEAK_N], $runs[4 * LEAK_N]), 'both runs finished');
    $a = $runs[LEAK_N]['v'];
    $b = $runs[4 * LEAK_N]['v'];
    foreach (['definitely', 'indirectly', 'possibly'] as $k) {
        check($b[$k] <= $a[$k], "$k lost: {$a[$k]} B at N, {$b[$k]} B at 4N");
    }
    check($b['reachable'] <= $a['reachable'] + LEAK_REACHABLE_SLACK,
        "still reachable at exit: {$a['reachable']} B at N, {$b['reachable']} B at 4N (slack " . LEAK_REACHABLE_SLACK . ' B)');
    check($b['suppressed_leak'] <= LEAK_SUPPRESSED_MAX, "suppressed leaks: {$a['suppressed_leak']} B at N, {$b['suppressed_leak']} B at 4N");
    echo "  still reachable at exit: {$a['reachable']} B / {$a['reachable_blocks']} blocks at N, {$b['reachable']} B / {$b['reachable_blocks']} blocks at 4N\n";
});

finish();
