<?php
// The workload leak_test.php runs under valgrind: a long send loop through
// every function of the extension, valid and invalid input, two relays, a
// dead one and one that refuses the key, then process end. Not a test by
// itself (run.sh runs only *_test.php). Argument: a JSON file with n, url1,
// url2, dead, spool, dead_spool, bad_spool, out. Writes what it sent to `out` as JSON; exits 0 unless the
// extension behaved unexpectedly (then it prints why and exits 3).
declare(strict_types=1);

require __DIR__ . '/lib.php';

$a = json_decode(file_get_contents($argv[1]), true, 512, JSON_THROW_ON_ERROR);
$n = (int)$a['n'];
$problems = [];
$problem = function (string $what) use (&$problems) {
    if (count($problems) < 20) {
        $problems[] = $what;
    }
};

final class Thrower implements JsonSerializable {
    public function jsonSerialize(): mixed { throw new RuntimeException('from jsonSerialize'); }
}

// Invalid calls, each with the Rtet\Exception code it must throw ('own': the
// caller's own exception passes through unchanged).
$self = new stdClass;
$self->self = $self; // recursion; one cycle, reused
$deep = 1;
for ($d = 0; $d < 600; $d++) {
    $deep = [$deep]; // deeper than json_encode's 512
}
$mem = fopen('php://memory', 'r');
$E = Rtet\Exception::class;
$invalid = [
    [$E::INVALID_NAME, fn() => rtet_send_event('bad name!', 1, 'leak')],
    [$E::INVALID_NAME, fn() => rtet_send_event("e\xff", 1, 'leak')],
    [$E::INVALID_ARGUMENT, fn() => rtet_send_event(['not', 'a', 'string'], 1, 'leak')],
    [$E::INVALID_NAME, fn() => rtet_send_event('e', 1, 'bad channel')],
    [$E::INVALID_NAME, fn() => rtet_send_event('e', 1, [])],
    [$E::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, ['leak', 42])],
    [$E::INVALID_DATA, fn() => rtet_send_event('e', NAN, 'leak')],
    [$E::INVALID_DATA, fn() => rtet_send_event('e', ['s' => "ok", 'bad' => "\xff\xfe"], 'leak')],
    [$E::INVALID_DATA, fn() => rtet_send_event('e', $self, 'leak')],
    [$E::INVALID_DATA, fn() => rtet_send_event('e', $deep, 'leak')],
    [$E::INVALID_DATA, fn() => rtet_send_event('e', ['r' => $mem], 'leak')],
    [$E::TOO_LARGE, fn() => rtet_send_event('e', str_repeat('x', 70000), 'leak')],
    [$E::TOO_LARGE, fn() => rtet_send_event('e', str_repeat('z', 66000), ['leak', 'public'], ['id' => 'x', 'ts' => 1])],
    [$E::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, 'leak', ['bogus' => 1])],
    [$E::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, 'leak', ['ts' => -5])],
    [$E::INVALID_NAME, fn() => rtet_send_event('e', 1, 'leak', ['id' => 'bad id!'])],
    ['own', fn() => rtet_send_event('e', ['ok' => 1, 'no' => new Thrower], 'leak')],
    [$E::INVALID_NAME, fn() => rtet_sign_token(['leak', 'bad channel'])],
    [$E::INVALID_ARGUMENT, fn() => rtet_sign_token(['leak'], 'sub', 0)],
    [$E::TOO_LARGE, fn() => rtet_sign_token(array_map(fn($k) => "channel.$k", range(1, 400)))],
    [$E::INVALID_ARGUMENT, fn() => rtet_sign_token(['leak'], 's', 60, ['info' => ['name' => 'n', 'avatar' => 'data:x']])],
    [$E::INVALID_NAME, fn() => rtet_sign_token(['leak'], 's', 60, ['presence' => ['ok', 'bad channel']])],
    [$E::INVALID_ARGUMENT, fn() => rtet_flush(-1.0)],
    [$E::INVALID_ARGUMENT, fn() => rtet_configure('nope', KEY)],
    [$E::INVALID_ARGUMENT, fn() => rtet_configure($a['url1'], KEY, ['queue_limit' => 0])],
    [$E::INVALID_ARGUMENT, fn() => rtet_configure($a['url1'], KEY, ['nope' => 1])],
];
$thrown = 0;
$try_invalid = function (int $k) use ($invalid, $problem, &$thrown) {
    [$code, $fn] = $invalid[$k % count($invalid)];
    try {
        $fn();
        $problem("invalid call #$k did not throw");
    } catch (Rtet\Exception $e) {
        $thrown++;
        if ($e->getCode() !== $code) {
            $problem("invalid call #$k: code {$e->getCode()} (want $code): {$e->getMessage()}");
        }
    } catch (RuntimeException $e) {
        $thrown++;
        if ($code !== 'own' || $e->getMessage() !== 'from jsonSerialize') {
            $problem("invalid call #$k: " . get_class($e) . ': ' . $e->getMessage());
        }
    }
};

// Before any configuration: NOT_CONFIGURED.
for ($k = 0; $k < 3; $k++) {
    try {
        rtet_send_event('e', $k);
        $problem('send before configure did not throw');
    } catch (Rtet\Exception $e) {
        $thrown++;
        if ($e->getCode() !== Rtet\Exception::NOT_CONFIGURED) $problem('before configure: ' . $e->getMessage());
    }
}

/** Polls the current relay's stats until nothing is pending (flush would also wait for the dead relay). */
function drained(float $timeout): bool {
    $end = microtime(true) + $timeout;
    while (rtet_stats()['queued'] > 0) {
        if (microtime(true) > $end) return false;
        usleep(20000);
    }
    return true;
}

// A relay that is down for the whole run: its sender retries all along, its
// queue overflows to the spool, and process end spools the rest.
$dead_ids = [];
rtet_configure($a['dead'], KEY, ['spool_dir' => $a['dead_spool'], 'queue_limit' => 10,
    'reconnect_max_ms' => 50, 'connect_timeout_ms' => 200, 'shutdown_timeout_ms' => 0]);
for ($k = 0; $k < 40; $k++) {
    $dead_ids[] = rtet_send_event('dead', ['k' => $k, 'pad' => str_repeat('d', $k * 10)], 'leak');
}
$s = rtet_stats();
if ($s['spooled'] < 20 || $s['queued'] !== 40) $problem('dead relay stats: ' . json_encode($s));

// A publisher the relay refuses (a wrong key) whose spool directory cannot
// exist: a warning at start, refused handshakes all along, and failures
// logged through error_log() once its queue overflows.
$warnings = 0;
set_error_handler(function ($no, $msg) use (&$warnings) { $warnings++; return true; });
rtet_configure($a['url2'], KEY . 'other', ['spool_dir' => $a['bad_spool'], 'queue_limit' => 1,
    'reconnect_max_ms' => 100, 'shutdown_timeout_ms' => 0]);
restore_error_handler();
if ($warnings < 1) $problem("bad spool dir: $warnings warnings");
$bad_ids = [];
for ($k = 0; $k < 20; $k++) {
    $bad_ids[] = rtet_send_event('bad_spool', $k, 'public');
}

$opts = ['spool_dir' => $a['spool'], 'shutdown_timeout_ms' => 60000, 'reconnect_max_ms' => 200];
$sent = [1 => ['leak' => [], 'public' => []], 2 => ['leak' => [], 'public' => []]];
$relay = 1;
rtet_configure($a['url1'], KEY, $opts);
$corpus = corpus();
$tokens = 0;
$flushes = 0;
for ($i = 0; $i < $n; $i++) {
    if ($i === intdiv($n, 3)) {
        if (!drained(60.0)) $problem('relay 1 did not drain before the switch');
        rtet_configure($a['url1'], KEY, $opts);                       // the same relay again
        rtet_configure($a['url2'], KEY, $opts + ['queue_limit' => 500]); // another relay
        $relay = 2;
    } elseif ($i === intdiv(2 * $n, 3)) {
        if (!drained(60.0)) $problem('relay 2 did not drain before the switch back');
        rtet_configure($a['url1'], KEY, $opts);
        $relay = 1;
    }
    if ($i % 64 === 0) {
        $corpus = corpus(); // fresh objects now and then
    }
    $data = match ($i % 8) {
        0 => $corpus[$i % count($corpus)],
        1 => ['i' => $i, 's' => str_repeat(chr(97 + $i % 26), $i % 300)],
        2 => "string $i " . str_repeat('é', $i % 50),
        3 => ['list' => range(0, $i % 40), 'map' => ['a' => $i, 'b' => [$i => (string)$i]], 'f' => $i / 7],
        4 => (object)['o' => $i, 'p' => new Point, 'm' => new Money($i)],
        5 => $i % 2 ? null : ($i % 3 ? true : -$i),
        6 => [Suit::Hearts, 1.5, [null], new ArrayObject(['x' => $i])],
        7 => str_repeat('x', 1000 + $i % 3000),
    };
    [$channels, $to] = match ($i % 5) {
        0 => ['leak', ['leak']],
        1 => [['leak'], ['leak']],
        2 => [['leak', 'public'], ['leak', 'public']],
        3 => [['public', 'leak', 'leak'], ['public', 'leak']],
        4 => [null, ['public']],
    };
    $options = match ($i % 3) {
        0 => null,
        1 => ['id' => "L$i"],
        2 => ['ts' => 1700000000000 + $i],
    };
    $id = rtet_send_event('leak.' . ($i % 7), $data, $channels, $options);
    if ($options !== null && isset($options['id']) && $id !== $options['id']) $problem("id $id");
    foreach ($to as $c) {
        $sent[$relay][$c][] = $id;
    }
    if ($i % 7 === 3) {
        $try_invalid(intdiv($i, 7));
    }
    if ($i % 50 === 0) {
        $t = rtet_sign_token(['leak', "user.$i"], "sub-$i", 60 + $i % 100,
            $i % 100 === 0 ? ['presence' => ["post.$i"], 'info' => ['name' => "User $i", 'avatar' => "https://example.test/$i.png"]] : null);
        if (count(explode('.', $t)) !== 3) $problem("token $t");
        $tokens++;
        $s = rtet_stats();
        if ($s['relay_url'] !== $a["url$relay"] || !$s['started']) $problem('stats ' . json_encode($s));
        rtet_version();
    }
    if ($i % 997 === 500) {
        rtet_flush(0.001); // false while the dead relay holds events; exercises the wait
        $flushes++;
    }
}
if (!drained(120.0)) $problem('relay 1 did not drain at the end: ' . json_encode(rtet_stats()));
$stats = rtet_stats();
// Sent just before the end: delivered by module shutdown (shutdown_timeout_ms above).
for ($k = 0; $k < 25; $k++) {
    $id = rtet_send_event('tail', ['k' => $k], 'leak');
    $sent[1]['leak'][] = $id;
}
fclose($mem);
unset($self->self, $self, $deep);
gc_collect_cycles();
file_put_contents($a['out'], json_encode([
    'sent' => $sent, 'dead_ids' => $dead_ids, 'bad_ids' => $bad_ids, 'thrown' => $thrown,
    'tokens' => $tokens, 'flushes' => $flushes, 'stats' => $stats, 'problems' => $problems,
]));
if ($problems) {
    echo implode("\n", $problems), "\n";
    exit(3);
}
