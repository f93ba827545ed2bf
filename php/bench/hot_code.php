<?php
// Finds the code of rtet.so that a php-fpm worker runs, for src/hot_code.ld, the linker script
// that lays that code out together (see build.rs, "Hot code"). Run by php/bench/hot_code.sh:
//   php hot_code.php profile CALLGRIND_DIR     prints the functions of RTET_EXT that ran
//   php hot_code.php write OUT.ld NAMES...     writes the script from those lists
// profile: RTET_PHP_FPM is php-fpm under valgrind's callgrind (each process writes
// CALLGRIND_DIR/cg.PID). The workload is a site's: 2 static workers, requests that send 1 to 5
// events and sign a subscriber token, a few bulk requests (500 events), the end-of-request
// flush and rtet_stats(); with the relay up, and with nothing listening (events go to the
// spool), twice each. Only the workers' functions are kept: what the master runs (module
// startup) runs once, in one process, and stays out of the hot code.
declare(strict_types=1);

require __DIR__ . '/../tests/lib.php';

const PAGE = <<<'PHP'
<?php
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
if (isset($q['barrier'])) {
    // The last request of each worker (Fpm::everyWorker()): all wait for each other, so each
    // lands on another worker, then flush as a site's last request would.
    touch($q['barrier'] . '/' . getmypid());
    $deadline = microtime(true) + 60;
    while (count(glob($q['barrier'] . '/*')) < (int)$q['want'] && microtime(true) < $deadline) usleep(1000);
    echo json_encode(['pid' => getmypid(), 'flushed' => rtet_flush((float)$q['flush']), 'stats' => rtet_stats()]);
    exit;
}
for ($i = 0; $i < (int)$q['k']; $i++) {
    rtet_send_event('post.updated', ['id' => (int)$q['r'] * 10 + $i, 'title' => 'Hello world', 'url' => 'https://example.test/?p=123', 'tags' => ['a', 'b']]);
}
$token = rtet_sign_token(['public', 'user.7'], '7', 300);
echo json_encode(['pid' => getmypid(), 'token' => $token !== '']);
PHP;


// Functions a CPU feature picks at run time that valgrind's CPU lacks (the SHA extensions):
// the profile shows their portable siblings instead. Patterns, as in write_script().
const NATIVE_ONLY = ['_ZN4sha18compress3x86*', '_ZN4sha26sha2563x86*'];

$mode = $argv[1] ?? '';
if ($mode === 'profile') {
    profile((string)($argv[2] ?? ''));
} elseif ($mode === 'write') {
    write_script((string)($argv[2] ?? ''), array_slice($argv, 3));
} else {
    throw new CheckFailed('usage: php hot_code.php profile CALLGRIND_DIR | write OUT.ld NAMES...');
}

/** Runs the workload under callgrind and prints the names of the functions of RTET_EXT that ran. */
function profile(string $cgDir): void {
    check(is_dir($cgDir), "callgrind output directory $cgDir");
    // Twice each: a few paths depend on timing (a wake-up racing a timer). The relay-down pools
    // share one spool directory, so the second pool's workers claim the spool files the first
    // one's left behind, as workers started while the relay is down do (php-fpm recycling them).
    // (Spool files are per relay URL and key: both pools name the same relay.)
    [$downSpool, $downUrl] = [tmpdir(), 'ws://' . unused_addr()];
    foreach (['up', 'down', 'up', 'down'] as $relayState) {
        $relay = $relayState === 'up' ? new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']) : null;
        $ini = ['rtet.relay_url' => $relay ? $relay->url() : $downUrl, 'rtet.api_key' => KEY, 'rtet.spool_dir' => $relay ? tmpdir() : $downSpool];
        $fpm = new Fpm($ini, 2, PAGE, '60s');
        wait_until(fn() => count($fpm->workerPids()) === 2, 'php-fpm forked its workers', 60.0);
        $qs = [];
        for ($r = 0; $r < 80; $r++) $qs[] = ['r' => $r, 'k' => $r % 20 === 5 ? 500 : 1 + ($r * 3) % 5];
        foreach ($fpm->run($qs, 2) as $a) check($a['token'] ?? false, 'a request signed its token: ' . json_encode($a) . ' ' . $fpm->logs());
        foreach ($fpm->everyWorker(2, ['flush' => $relay ? 20 : 0]) as $a) {
            check_eq($relay !== null, $a['flushed'], 'delivered with the relay up, not without: ' . json_encode($a));
        }
        $fpm->quit();
        $relay?->kill();
    }

    // A function's names: LLVM merges identical functions into one, under the name of one of
    // them (its section's), the others being aliases; callgrind may report any of them.
    $addrOf = [];
    $namesAt = [];
    exec('nm --defined-only ' . escapeshellarg((string)getenv('RTET_EXT')), $nm, $rc);
    check_eq(0, $rc, 'nm reads rtet.so');
    foreach ($nm as $line) {
        $f = preg_split('/\s+/', trim($line));
        if (count($f) === 3 && stripos('tw', $f[1]) !== false) {
            $addrOf[$f[2]] = $f[0];
            $namesAt[$f[0]][] = $f[2];
        }
    }
    // The worker processes are those that sent; of what they ran, rtet.so's functions.
    $ran = [];
    $workers = 0;
    foreach (glob("$cgDir/cg.*") as $file) {
        $text = (string)file_get_contents($file);
        if (!str_contains($text, 'rtet_send_event')) continue;
        $workers++;
        preg_match_all('/^c?fn=(\S+)$/m', $text, $m);
        foreach ($m[1] as $name) {
            foreach (isset($addrOf[$name]) ? $namesAt[$addrOf[$name]] : [] as $alias) $ran[$alias] = true;
        }
    }
    check($workers >= 8, "callgrind output of the 8 workers in $cgDir (found $workers)");
    echo implode("\n", array_keys($ran)), "\n";
    fwrite(STDERR, count($ran) . " functions ran in $workers workers\n");
}

/**
 * Writes the linker script for the functions named in the files $lists (one a line), in two
 * parts. The exact names (of every build profiled: hot_code.sh profiles the builds this
 * repository's scripts make), in .text.rtet_hot. And in .text.rtet_warm, for a build not
 * profiled (other features, another toolchain: other hashes), a pattern per function: the
 * hashes in mangled names (legacy "17h<16 hex>E", v0 crate disambiguators "Cs<base62>_") and
 * LLVM's ".llvm.<n>" suffix of promoted local functions become wildcards. A pattern also
 * matches every other instance of a generic function, which is why it is only the fallback.
 */
function write_script(string $out, array $lists): void {
    check($out !== '' && $lists !== [], 'usage: php hot_code.php write OUT.ld NAMES...');
    $exact = NATIVE_ONLY;
    foreach ($lists as $list) {
        array_push($exact, ...file($list, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES));
    }
    $patterns = [];
    foreach ($exact as $name) {
        $p = preg_replace('/\.llvm\.\d+$/', '', $name);
        $p = preg_replace('/17h[0-9a-f]{16}E$/', '17h*E', $p);
        $patterns[] = preg_replace('/Cs[0-9A-Za-z]+_/', 'Cs*_', $p);
    }
    // Only what a linker script's section pattern can hold as written.
    $usable = function (array $names): array {
        $names = array_unique(array_filter($names, fn($n) => preg_match('/^[A-Za-z_][A-Za-z0-9_$.*]*$/', $n) === 1));
        sort($names);
        return $names;
    };
    [$exact, $patterns] = [$usable($exact), $usable($patterns)];
    $rule = fn(string $p) => str_contains($p, '*') || str_contains($p, '.llvm.')
        ? "    *(.text.$p .text.unlikely.$p)"
        : "    *(.text.$p .text.$p.llvm.* .text.unlikely.$p .text.unlikely.$p.llvm.*)";
    $hot = implode("\n", array_map($rule, $exact));
    $warm = implode("\n", array_map($rule, $patterns));
    file_put_contents($out, <<<LD
/* The code of rtet.so that a php-fpm worker runs, laid out together before the rest of
 * .text (see build.rs, "Hot code"), each part in whole 64 KiB windows (the kernel maps a
 * file's pages in 64 KiB windows, so a window shared with cold code would map it too).
 * Generated by php/bench/hot_code.sh from callgrind profiles of php-fpm workers; do not edit
 * by hand: run it again when the send path or the dependencies change. */
SECTIONS {
  .text.rtet_hot : ALIGN(0x10000) {
    /* The PLT: calls to libc (memcpy, memset, __tls_get_addr for thread-locals) and to PHP's
       allocator go through it on every request; left after .text, it shares a window with
       cold code. */
    *(.plt)
$hot
    . = ALIGN(0x10000);
  }
  .text.rtet_warm : {
$warm
    . = ALIGN(0x10000);
  }
} INSERT BEFORE .text;

LD);
    fwrite(STDERR, count($exact) . ' names and ' . count($patterns) . " patterns written to $out\n");
}
