<?php
// The PHP API without a relay: the stub matches the extension, every invalid
// input throws Rtet\Exception with its code and enqueues nothing, tokens,
// stats, phpinfo.
require __DIR__ . '/lib.php';

function expect_code(int $code, callable $fn, string $what, ?string $msg = null): void {
    try {
        $fn();
    } catch (Rtet\Exception $e) {
        check_eq($code, $e->getCode(), "$what: code (message: {$e->getMessage()})");
        if ($msg !== null) {
            check(str_contains($e->getMessage(), $msg), "$what: message mentions '$msg': " . $e->getMessage());
        }
        return;
    }
    throw new CheckFailed("$what: no Rtet\\Exception");
}

test('stub matches the built extension', function () {
    $stub = file_get_contents(__DIR__ . '/../rtet.stub.php');
    preg_match_all('/function (rtet_\w+)\(([^)]*)\): (\w+)/', $stub, $m, PREG_SET_ORDER);
    $ext = get_extension_funcs('rtet');
    sort($ext);
    $names = array_column($m, 1);
    sort($names);
    check_eq($ext, $names, 'the same functions');
    foreach ($m as [, $name, $params, $ret]) {
        $r = new ReflectionFunction($name);
        check_eq($ret, (string)$r->getReturnType(), "$name return type");
        $sp = $params === '' ? [] : array_map('trim', explode(',', $params));
        check_eq(count($sp), $r->getNumberOfParameters(), "$name parameter count");
        foreach ($r->getParameters() as $i => $p) {
            preg_match('/^(\S+) \$(\w+)(?: = (.*))?$/', $sp[$i], $pm);
            check_eq($pm[2], $p->getName(), "$name parameter $i name");
            check_eq(isset($pm[3]), $p->isOptional(), "$name \${$p->getName()} optional");
            $t = (string)$p->getType();
            if ($t !== 'mixed') {
                check_eq($pm[1], $t, "$name \${$p->getName()} type");
            }
            if (isset($pm[3]) && $p->isDefaultValueAvailable()) {
                check_eq(eval("return {$pm[3]};"), $p->getDefaultValue(), "$name \${$p->getName()} default");
            }
        }
    }
    preg_match_all('/const (\w+) = (\d+);/', $stub, $cm, PREG_SET_ORDER);
    $rc = new ReflectionClass(Rtet\Exception::class);
    check($rc->isSubclassOf(Exception::class), 'Rtet\Exception extends Exception');
    $consts = [];
    foreach ($cm as [, $k, $v]) { $consts[$k] = (int)$v; }
    check_eq($consts, $rc->getConstants(), 'class constants');
});

test('sending before configuring throws NOT_CONFIGURED', function () {
    expect_code(Rtet\Exception::NOT_CONFIGURED, fn() => rtet_send_event('e'), 'send', 'not configured');
    expect_code(Rtet\Exception::NOT_CONFIGURED, fn() => rtet_sign_token(['public']), 'token');
    check_eq(true, rtet_flush(0.0), 'flush with nothing queued');
    check_eq(false, rtet_stats()['started'], 'not started');
});

test('bad configuration throws INVALID_ARGUMENT', function () {
    $dir = tmpdir();
    foreach (['', 'relay.example', 'ftp://x', 'ws://'] as $url) {
        expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_configure($url, KEY), "url '$url'");
    }
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_configure('ws://127.0.0.1:9', ''), 'empty key');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_configure('ws://127.0.0.1:9', KEY, ['nope' => 1]), 'unknown option', 'nope');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_configure('ws://127.0.0.1:9', KEY, ['queue_limit' => 0]), 'queue_limit 0');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_configure('ws://127.0.0.1:9', KEY, ['connect_timeout_ms' => -1]), 'negative');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_flush(-1.0), 'negative flush timeout');
});

test('every invalid input throws its code and enqueues nothing', function () {
    $dir = tmpdir();
    // A relay that is not there: events stay queued, which is what we count.
    rtet_configure('ws://127.0.0.1:9', KEY, ['spool_dir' => $dir, 'shutdown_timeout_ms' => 0]);
    $before = rtet_stats()['enqueued'];
    $I = Rtet\Exception::INVALID_NAME; $D = Rtet\Exception::INVALID_DATA;
    expect_code($I, fn() => rtet_send_event(''), 'empty event');
    expect_code($I, fn() => rtet_send_event('bad name'), 'event with a space', 'bad name');
    expect_code($I, fn() => rtet_send_event(str_repeat('e', 65)), 'event of 65 chars');
    expect_code($I, fn() => rtet_send_event("caf\xff"), 'event not UTF-8');
    expect_code($I, fn() => rtet_send_event('e', 1, 'no/slash'), 'bad channel');
    expect_code($I, fn() => rtet_send_event('e', 1, ['public', 'bad channel']), 'bad channel in a list');
    expect_code($I, fn() => rtet_send_event('e', 1, []), 'empty channel list');
    expect_code($I, fn() => rtet_send_event('e', 1, str_repeat('c', 129)), 'channel of 129 chars');
    expect_code($I, fn() => rtet_send_event('e', 1, 'public', ['id' => 'has space']), 'bad id');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, 'public', ['idx' => 'a']), 'unknown option');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, 5), 'channel not a string');
    $max = json_decode(file_get_contents(dirname(__DIR__, 2) . '/tests/protocol-vectors/limits.json'), true)['max_channels_per_publish'];
    $most = array_map(fn($i) => "user.$i", range(1, $max));
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_send_event('e', 1, [...$most, 'public']), 'one channel over max_channels_per_publish');
    expect_code($D, fn() => rtet_send_event('e', NAN), 'NAN', 'NAN or INF');
    expect_code($D, fn() => rtet_send_event('e', ['x' => [INF]]), 'INF deep inside', 'NAN or INF');
    $res = fopen('php://memory', 'r');
    expect_code($D, fn() => rtet_send_event('e', ['r' => $res]), 'resource', 'resource');
    expect_code($D, fn() => rtet_send_event('e', "\xc3\x28"), 'invalid UTF-8', 'UTF-8');
    $a = ['x' => 1]; $a['self'] = &$a;
    expect_code($D, fn() => rtet_send_event('e', $a), 'recursive array', 'recursion');
    $o = new stdClass; $o->me = $o;
    expect_code($D, fn() => rtet_send_event('e', $o), 'recursive object', 'recursion');
    $deep = 1; for ($i = 0; $i < 600; $i++) { $deep = [$deep]; }
    expect_code($D, fn() => rtet_send_event('e', $deep), 'too deep', 'deeply');
    expect_code(Rtet\Exception::TOO_LARGE, fn() => rtet_send_event('e', str_repeat('a', 70000)), 'over the frame limit', '65536');
    expect_code(Rtet\Exception::TOO_LARGE, fn() => rtet_send_event('e', str_repeat('a', 65470), ['public', 'x']), 'over the limit with the frame around it');
    // The caller's own exception from jsonSerialize propagates unchanged.
    $js = new class implements JsonSerializable { public function jsonSerialize(): mixed { throw new DomainException('mine'); } };
    try { rtet_send_event('e', $js); throw new CheckFailed('no exception'); } catch (DomainException $e) { check_eq('mine', $e->getMessage(), 'own exception'); }
    check_eq($before, rtet_stats()['enqueued'], 'nothing was enqueued');
    // And valid ones are: one per channel, the id chosen by the caller kept.
    check_eq('my-id.1', rtet_send_event('e', null, ['public', 'user.42', 'public'], ['id' => 'my-id.1']), 'chosen id');
    check_eq($before + 2, rtet_stats()['enqueued'], 'one event per distinct channel');
    check(preg_match('/^[0-9A-HJKMNP-TV-Z]{26}$/', rtet_send_event('e')) === 1, 'a ULID by default');
});

test('tokens are HS256 JWTs with the documented claims', function () {
    rtet_configure('ws://127.0.0.1:9', KEY, ['spool_dir' => tmpdir(), 'shutdown_timeout_ms' => 0]);
    $t = rtet_sign_token(['public', 'user.42'], '42', 120);
    [$h, $p, $s] = explode('.', $t);
    $b64 = fn($x) => base64_decode(strtr($x, '-_', '+/'));
    check_eq('HS256', json_decode($b64($h), true)['alg'], 'alg');
    $claims = json_decode($b64($p), true);
    check_eq('42', $claims['sub'], 'sub');
    check_eq(['public', 'user.42'], $claims['channels'], 'channels');
    check_eq(120, $claims['exp'] - $claims['iat'], 'ttl');
    check(abs($claims['iat'] - time()) <= 5, 'iat is now');
    check_eq(rtrim(strtr(base64_encode(hash_hmac('sha256', "$h.$p", KEY, true)), '+/', '-_'), '='), $s, 'signature with the key');
    expect_code(Rtet\Exception::INVALID_NAME, fn() => rtet_sign_token(['bad channel']), 'bad channel');
    expect_code(Rtet\Exception::INVALID_ARGUMENT, fn() => rtet_sign_token(['public'], '', 0), 'ttl 0');
    $many = array_map(fn($i) => "user.$i", range(1, 400));
    expect_code(Rtet\Exception::TOO_LARGE, fn() => rtet_sign_token($many), 'too many channels');
});

test('tokens carry presence claims, checked by the relay\'s rules before signing', function () {
    rtet_configure('ws://127.0.0.1:9', KEY, ['spool_dir' => tmpdir(), 'shutdown_timeout_ms' => 0]);
    $b64 = fn($x) => base64_decode(strtr($x, '-_', '+/'));
    $claims = fn($t) => json_decode($b64(explode('.', $t)[1]), true);
    $t = rtet_sign_token(['user.7'], '7', 300, [
        'presence' => ['post.42.editors'],
        'presence_counts' => ['post.42'],
        'info' => ['name' => 'Alice', 'avatar' => 'https://example.test/a.png'],
    ]);
    $c = $claims($t);
    check_eq(['post.42.editors'], $c['presence'], 'presence');
    check_eq(['post.42'], $c['presence_counts'], 'presence_counts');
    check_eq(['name' => 'Alice', 'avatar' => 'https://example.test/a.png'], $c['info'], 'info');
    check_eq(['sub', 'channels', 'iat', 'exp', 'presence', 'presence_counts', 'info'], array_keys($c), 'claim order (as the vectors sign)');
    // Without presence claims the token is the one a caller without the argument gets.
    $plain = $claims(rtet_sign_token(['public'], '', 300, []));
    check_eq(['sub', 'channels', 'iat', 'exp'], array_keys($plain), 'no empty presence claims');
    expect_code(Rtet\Exception::INVALID_ARGUMENT,
        fn() => rtet_sign_token(['public'], '7', 300, ['info' => ['name' => 'x', 'avatar' => 'javascript:alert(1)']]), 'javascript: avatar', 'avatar');
    expect_code(Rtet\Exception::INVALID_ARGUMENT,
        fn() => rtet_sign_token(['public'], '7', 300, ['info' => ['name' => str_repeat('n', 65)]]), 'long name');
    expect_code(Rtet\Exception::INVALID_NAME,
        fn() => rtet_sign_token(['public'], '7', 300, ['presence' => ['bad channel']]), 'bad presence channel');
    expect_code(Rtet\Exception::INVALID_ARGUMENT,
        fn() => rtet_sign_token(['public'], '7', 300, ['members' => ['x']]), 'unknown option', 'members');
    expect_code(Rtet\Exception::INVALID_ARGUMENT,
        fn() => rtet_sign_token(['public'], '7', 300, ['info' => ['email' => 'a@b']]), 'unknown info field', 'email');
});

test('stats and phpinfo never show the key', function () {
    rtet_configure('ws://127.0.0.1:9', KEY, ['spool_dir' => tmpdir(), 'shutdown_timeout_ms' => 0]);
    $s = rtet_stats();
    foreach (['connected', 'queued', 'sent', 'acked', 'nacked', 'spooled', 'reconnects', 'last_error'] as $k) {
        check(array_key_exists($k, $s), "stats has $k");
    }
    check_eq('ws://127.0.0.1:9', $s['relay_url'], 'relay_url');
    ob_start(); phpinfo(INFO_MODULES); $info = ob_get_clean();
    check(str_contains($info, 'rtet support'), 'phpinfo section');
    check(str_contains($info, 'ws://127.0.0.1:9'), 'phpinfo relay URL');
    check(!str_contains($info, KEY), 'phpinfo hides the key');
    check(!str_contains(print_r($s, true), KEY), 'stats hide the key');
});

test('rtet_version() and phpinfo() say which commit and PHP the extension was built for', function () {
    $root = dirname(__DIR__, 2);
    exec('git -C ' . escapeshellarg($root) . ' rev-parse --short=12 HEAD 2>/dev/null', $out, $rc);
    $commit = $rc === 0 && isset($out[0]) ? $out[0] : 'unknown';
    ob_start(); phpinfo(INFO_GENERAL); $general = ob_get_clean();
    check((bool)preg_match('/^PHP API => (\d+)$/m', $general, $m), 'phpinfo names the PHP API');
    $api = $m[1];
    check_eq(
        phpversion('rtet') . " (commit $commit; PHP " . PHP_VERSION . ", API $api)",
        rtet_version(),
        'rtet_version(): the module version, the checkout this test runs in, the PHP running it'
    );
    ob_start(); phpinfo(INFO_MODULES); $info = ob_get_clean();
    foreach (["built from commit => $commit", 'built for PHP => ' . PHP_VERSION, "built for PHP API => $api"] as $row) {
        check(str_contains($info, $row), "phpinfo shows '$row'");
    }
});

test('php.ini directives configure the extension', function () {
    $dir = tmpdir();
    [$code, $out] = run_php('echo json_encode([rtet_stats()["relay_url"], ini_get("rtet.queue_limit"), strlen(rtet_sign_token(["public"])) > 0], JSON_UNESCAPED_SLASHES);',
        ['rtet.relay_url' => 'ws://127.0.0.1:9', 'rtet.api_key' => KEY, 'rtet.queue_limit' => '7', 'rtet.spool_dir' => $dir, 'rtet.shutdown_timeout_ms' => '0']);
    check_eq(0, $code, "exit code ($out)");
    check_eq('["ws://127.0.0.1:9","7",true]', trim($out), 'ini values used');
});

test('rtet_configure() applies the php.ini directives under the relay it names', function () {
    $dir = tmpdir();
    $relay = 'ws://' . unused_addr() . '/publish';
    // The frame limit from php.ini refuses a large event at once; the small ones, for a
    // relay that is down, end in the spool directory php.ini names when the process ends.
    [$code, $out] = run_php('rtet_configure(' . var_export($relay, true) . ', ' . var_export(KEY, true) . ');
        $refused = "";
        rtet_send_event("small", [], ["public"]);
        try { rtet_send_event("large", str_repeat("x", 400), ["public"]); } catch (Throwable $e) { $refused = $e->getMessage(); }
        rtet_send_event("small", [], ["public"]);
        echo json_encode([rtet_stats()["relay_url"], $refused], JSON_UNESCAPED_SLASHES);',
        ['rtet.max_frame_bytes' => '300', 'rtet.spool_dir' => $dir, 'rtet.shutdown_timeout_ms' => '0']);
    check_eq(0, $code, "exit code ($out)");
    [$url, $refused] = json_decode(trim($out), true);
    check_eq($relay, $url, 'the relay from the call');
    check(str_contains($refused, "the relay's limit is 300 bytes"), "the frame limit from php.ini: $refused");
    $lines = array_sum(array_map(fn($f) => count(file("$dir/$f")), spool_files($dir)));
    check_eq(2, $lines, 'both small events in the spool directory php.ini names, once the process ended');
});

finish();
