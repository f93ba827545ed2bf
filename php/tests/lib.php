<?php
// Test helpers: start a real relay on a free port (it reports its own
// address), a small WebSocket subscriber, and test()/check() that print
// one PASS or FAIL line per test for run.sh to count.
declare(strict_types=1);

const KEY = 'test-key-0123456789abcdef0123456789abcdef';
const FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;

$GLOBALS['__failed'] = 0;
$GLOBALS['__cleanup'] = [];

final class CheckFailed extends Exception {}

function check(bool $cond, string $what): void {
    if (!$cond) {
        throw new CheckFailed($what);
    }
}

function check_eq($want, $got, string $what): void {
    if ($want !== $got) {
        throw new CheckFailed($what . ': expected ' . var_export($want, true) . ', got ' . var_export($got, true));
    }
}

function test(string $name, callable $fn): void {
    try {
        $fn();
        echo "PASS $name\n";
    } catch (Throwable $e) {
        $GLOBALS['__failed']++;
        echo "FAIL $name: " . get_class($e) . ': ' . $e->getMessage() . ' at ' . basename($e->getFile()) . ':' . $e->getLine() . "\n";
    }
}

function tmpdir(): string {
    $d = sys_get_temp_dir() . '/rtet-test-' . getmypid() . '-' . bin2hex(random_bytes(4));
    mkdir($d, 0700, true);
    $GLOBALS['__cleanup'][] = fn() => exec('rm -rf ' . escapeshellarg($d));
    return $d;
}

register_shutdown_function(function () {
    foreach (array_reverse($GLOBALS['__cleanup']) as $f) {
        $f();
    }
});

function relay_bin(): string {
    $b = getenv('RTET_RELAY_BIN');
    check($b !== false && is_executable($b), 'RTET_RELAY_BIN must point at rtet-relay');
    return $b;
}

/** A relay process; $listen "127.0.0.1:0" for a free port, or a port it had before (restart). */
final class Relay {
    public $proc;
    public array $pipes = [];
    public string $addr;
    public string $log;

    public function __construct(string $listen = '127.0.0.1:0', array $args = [], array $env = []) {
        $this->log = tmpdir() . '/relay.log';
        $cmd = 'exec > >(tee -p ' . escapeshellarg($this->log) . ') 2>&1; exec ' . escapeshellarg(relay_bin())
            . ' --listen ' . escapeshellarg($listen) . ' --api-key ' . escapeshellarg(KEY)
            . ' --history-size 50000'
            // collect() replays whole histories to check them: no replay bound.
            . ' --max-replay-bytes 1000000000 --replay-bytes-per-connection 1000000000 --replay-bytes-per-ip 1000000000';
        foreach (['public', 'stream', 'down', 'restart', 'spool', 'overflow', 'fork', 'fpm', 'tls', 'leak', 'engine'] as $c) {
            $cmd .= ' --anonymous-channel ' . $c;
        }
        foreach ($args as $a) {
            $cmd .= ' ' . escapeshellarg($a);
        }
        $envs = array_merge(getenv(), ['RUST_LOG' => 'info', 'NO_COLOR' => '1'], $env);
        $this->proc = proc_open(['bash', '-c', $cmd], [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w']], $this->pipes, null, $envs);
        check(is_resource($this->proc), 'relay starts');
        // Wait for the relay's own "listening" line, which names the bound address.
        while (($line = fgets($this->pipes[1])) !== false) {
            if (preg_match('/listening.*addr=(\S+)/', $line, $m)) {
                $this->addr = $m[1];
                fclose($this->pipes[1]);
                $GLOBALS['__cleanup'][] = fn() => $this->kill();
                return;
            }
        }
        throw new CheckFailed("relay did not start: " . @file_get_contents($this->log));
    }

    public function port(): int { return (int)substr($this->addr, strrpos($this->addr, ':') + 1); }
    public function url(string $scheme = 'ws'): string { return "$scheme://{$this->addr}"; }

    public function kill(): void {
        if (is_resource($this->proc)) {
            $st = proc_get_status($this->proc);
            if ($st['running']) {
                posix_kill($st['pid'], SIGKILL);
            }
            proc_close($this->proc);
        }
    }

    public function metrics(): string {
        return (string)file_get_contents("http://{$this->addr}/metrics");
    }
}

/** A minimal WebSocket client (RFC 6455) for subscribing, plain or TLS. */
final class Ws {
    private $s;
    private string $buf = '';
    private float $deadline = INF;

    public function __construct(string $url, array $ssl = []) {
        $u = parse_url($url);
        $tls = $u['scheme'] === 'wss';
        $ctx = stream_context_create(['ssl' => $ssl + ['peer_name' => $u['host']]]);
        $this->s = stream_socket_client(($tls ? 'tls://' : 'tcp://') . $u['host'] . ':' . $u['port'], $errno, $err, 10, STREAM_CLIENT_CONNECT, $ctx);
        check($this->s !== false, "connect $url: $err");
        $key = base64_encode(random_bytes(16));
        fwrite($this->s, "GET {$u['path']} HTTP/1.1\r\nHost: {$u['host']}:{$u['port']}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n");
        $head = '';
        while (!str_contains($head, "\r\n\r\n")) {
            $c = fread($this->s, 1);
            check($c !== '' && $c !== false, 'upgrade answer');
            $head .= $c;
        }
        check(str_starts_with($head, 'HTTP/1.1 101'), "upgrade: $head");
        stream_set_timeout($this->s, 5);
    }

    public function send(string $text): void {
        $len = strlen($text);
        $h = chr(0x81);
        if ($len < 126) { $h .= chr(0x80 | $len); }
        elseif ($len < 65536) { $h .= chr(0x80 | 126) . pack('n', $len); }
        else { $h .= chr(0x80 | 127) . pack('J', $len); }
        $mask = random_bytes(4);
        $masked = '';
        for ($i = 0; $i < $len; $i++) { $masked .= $text[$i] ^ $mask[$i % 4]; }
        fwrite($this->s, $h . $mask . $masked);
    }

    private function need(int $n): bool {
        while (strlen($this->buf) < $n) {
            // A test waiting for frames that never come fails instead of hanging
            // (the relay's pings alone would keep the socket busy).
            check(microtime(true) < $this->deadline, 'no message from the relay within 30 s');
            $c = fread($this->s, 65536);
            if ($c === '' || $c === false) {
                if (feof($this->s)) return false;
                continue;
            }
            $this->buf .= $c;
        }
        return true;
    }

    /** The next text frame, or null when the connection ends. */
    public function recv(): ?string {
        $msg = '';
        $this->deadline = microtime(true) + 30;
        while (true) {
            if (!$this->need(2)) return null;
            $b0 = ord($this->buf[0]); $b1 = ord($this->buf[1]);
            $len = $b1 & 0x7f; $off = 2;
            if ($len === 126) { if (!$this->need(4)) return null; $len = unpack('n', substr($this->buf, 2, 2))[1]; $off = 4; }
            elseif ($len === 127) { if (!$this->need(10)) return null; $len = unpack('J', substr($this->buf, 2, 8))[1]; $off = 10; }
            if (!$this->need($off + $len)) return null;
            $payload = substr($this->buf, $off, $len);
            $this->buf = substr($this->buf, $off + $len);
            $op = $b0 & 0x0f;
            if ($op === 0x9) { $this->control(0xA, $payload); continue; }
            if ($op === 0x8) return null;
            if ($op === 0xA) continue;
            $msg .= $payload;
            if ($b0 & 0x80) return $msg;
        }
    }

    private function control(int $op, string $payload): void {
        $mask = random_bytes(4); $m = '';
        for ($i = 0; $i < strlen($payload); $i++) { $m .= $payload[$i] ^ $mask[$i % 4]; }
        fwrite($this->s, chr(0x80 | $op) . chr(0x80 | strlen($payload)) . $mask . $m);
    }

    public function frame(): ?array {
        $t = $this->recv();
        return $t === null ? null : json_decode($t, true, 512, JSON_THROW_ON_ERROR);
    }
}

/** Subscribes to $channel and returns its whole history (replayed with since), then live events until $until is seen or $count events arrived. Each element: [decoded frame, raw data JSON]. */
function collect(string $url, string $channel, int $count, ?string $until = null, array $ssl = []): array {
    $ws = new Ws(rtrim($url, '/') . '/ws', $ssl);
    $ws->send(json_encode(['type' => 'subscribe', 'channel' => $channel]));
    $sub = $ws->frame();
    check(($sub['type'] ?? '') === 'subscribed', 'subscribed: ' . json_encode($sub));
    $ws->send(json_encode(['type' => 'unsubscribe', 'channel' => $channel]));
    while (($f = $ws->frame()) !== null && $f['type'] !== 'unsubscribed') {}
    $ws->send(json_encode(['type' => 'subscribe', 'channel' => $channel, 'since' => ['epoch' => $sub['epoch'], 'seq' => 0]]));
    $out = [];
    while (count($out) < $count) {
        $t = $ws->recv();
        check($t !== null, 'connection stayed open; got ' . count($out) . " of $count events");
        $f = json_decode($t, true, 512, JSON_THROW_ON_ERROR);
        if ($f['type'] === 'subscribed') { check($f['recovered'] === true, 'history recovered'); continue; }
        if ($f['type'] !== 'event') continue;
        check(preg_match('/"data":(.*),"ts":\d+\}$/s', $t, $m) === 1, 'event frame shape');
        if ($until !== null && $f['event'] === $until) break;
        $out[] = [$f, $m[1]];
    }
    return $out;
}

function php_cmd(array $ini = []): array {
    $cmd = [PHP_BINARY, '-n', '-d', 'extension=' . getenv('RTET_EXT'), '-d', 'zend.assertions=1', '-d', 'extension=posix'];
    foreach ($ini as $k => $v) { $cmd[] = '-d'; $cmd[] = "$k=$v"; }
    return $cmd;
}

/** Runs PHP code in a new process with the extension loaded; returns [exit code, stdout+stderr]. */
function run_php(string $code, array $ini = []): array {
    $f = tmpdir() . '/snippet.php';
    file_put_contents($f, "<?php\n" . $code);
    $cmd = php_cmd($ini);
    $cmd[] = $f;
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes);
    $out = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    return [proc_close($p), $out];
}

/** A loopback address nothing listens on (a port bound, then released): a relay that is down. */
function unused_addr(): string {
    $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $err);
    check($s !== false, "bind a free port: $err");
    $addr = stream_socket_get_name($s, false);
    fclose($s);
    return $addr;
}

/** The event ids of collect()'s or live_events()'s result, in order. */
function ids_of(array $events): array {
    return array_map(fn($e) => $e[0]['id'], $events);
}

function spool_files(string $dir, string $suffix = '.spool'): array {
    return array_values(array_filter(scandir($dir) ?: [], fn($n) => str_ends_with($n, $suffix)));
}

function finish(): void {
    exit($GLOBALS['__failed'] > 0 ? 1 : 0);
}

/** Starts subscriber.php for $channel; returns [process, outfile] once it is subscribed. */
function live_subscriber(string $url, string $channel, string $until, ?string $cafile = null): array {
    $outfile = tmpdir() . '/events.jsonl';
    $cmd = [PHP_BINARY, '-n', '-d', 'extension=posix', __DIR__ . '/subscriber.php', $url, $channel, $outfile, $until];
    if ($cafile !== null) $cmd[] = $cafile;
    // No descriptor 2: the subscriber inherits this process's stderr. Given as STDERR, PHP
    // would first seek that file to where its STDERR stream thinks it is (0, as nothing is
    // written through it), and a test's output file would be written over from its start.
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w']], $pipes);
    check(trim((string)fgets($pipes[1])) === 'ready', 'subscriber ready');
    fclose($pipes[1]);
    $GLOBALS['__cleanup'][] = function () use ($p) { if (is_resource($p)) { proc_terminate($p, SIGKILL); proc_close($p); } };
    return [$p, $outfile];
}

/** Waits for a live subscriber to end and returns [frame, raw data] per event. */
function live_events($proc, string $outfile, bool $kill = false): array {
    if ($kill) proc_terminate($proc, SIGKILL);
    proc_close($proc);
    $out = [];
    foreach (file($outfile, FILE_IGNORE_NEW_LINES) ?: [] as $t) {
        preg_match('/"data":(.*),"ts":\d+\}$/s', $t, $m);
        $out[] = [json_decode($t, true), $m[1] ?? null];
    }
    return $out;
}

enum Suit: string { case Hearts = 'H'; case Spades = 'S'; }
class Point { public $x = 1; protected $y = 2; private $z = 3; public $list = [1, 2]; }
class Money implements JsonSerializable {
    public function __construct(private int $cents) {}
    public function jsonSerialize(): mixed { return ['amount' => $this->cents / 100, 'currency' => 'EUR']; }
}

/** PHP values whose JSON must arrive exactly as json_encode() makes it. */
function corpus(): array {
    $o = new stdClass; $o->a = 1; $o->{'0'} = 'zero'; $o->{'b c'} = [true, null];
    return [
        null, true, false, 0, -1, PHP_INT_MAX, PHP_INT_MIN, 0.1, -0.0, 3.0, 1e100, 1.5e-7, 123456789.125,
        '', 'plain', "é/ü \"q\" \\ \n\t\x01 <>&' 😀", "\u{2028}\u{2029}", str_repeat('x', 2000),
        [], [1, 2, 3], ['a' => 1, 'b' => 2], [3 => 'x', 1 => 'y'], [0 => 'a', 2 => 'c'], ['b' => 1, 'a' => 2],
        ['nested' => ['deep' => ['deeper' => [1, ['k' => 'v']]]]], [[], new stdClass, [[]]],
        $o, new stdClass, new Point, new Money(1999), Suit::Hearts, [Suit::Spades, new Point],
        new ArrayObject([1, 2]), ['float' => 0.30000000000000004, 'int_key' => [10 => 1]],
    ];
}

/**
 * A php-fpm master started in the foreground with its own ini and pool, on a unix
 * socket, serving $script as its only page. $extensions are the php.ini lines that
 * load extensions (default: rtet.so alone, from RTET_EXT).
 */
final class Fpm {
    public $proc;
    public int $pid;
    public string $sock;
    public string $script;
    public string $dir;
    public ?int $exitCode = null;

    public function __construct(array $ini, int $workers, string $script, string $processControlTimeout = '30s', ?array $extensions = null) {
        $bin = getenv('RTET_PHP_FPM') ?: '/usr/sbin/php-fpm8.2';
        check(is_executable($bin), "php-fpm at $bin");
        $d = $this->dir = tmpdir();
        $this->sock = "$d/fpm.sock";
        $this->script = "$d/www/index.php";
        mkdir("$d/www");
        file_put_contents($this->script, $script);
        $lines = array_merge($extensions ?? ['extension=' . getenv('RTET_EXT')], ['display_errors=stderr', 'log_errors=1', "error_log=$d/php-error.log"]);
        foreach ($ini as $k => $v) $lines[] = "$k=$v";
        file_put_contents("$d/php.ini", implode("\n", $lines) . "\n");
        $user = posix_getuid() === 0 ? "user = root\ngroup = root\n" : '';
        // process_control_timeout: how long a SIGQUIT (graceful stop) lets workers finish
        // before the master sends SIGTERM; with php-fpm's default 0 it follows at once, and a
        // worker ended by SIGTERM never runs module shutdown, so it cannot wait for acks. The
        // same holds for SIGTERM/SIGINT to the master (fast stop). What a killed worker still
        // had is safe only where it was already on disk (see the last test).
        file_put_contents("$d/php-fpm.conf", "[global]\npid = $d/fpm.pid\nerror_log = $d/fpm.log\ndaemonize = no\n"
            . "process_control_timeout = $processControlTimeout\n\n[rtet]\n{$user}listen = {$this->sock}\npm = static\n"
            . "pm.max_children = $workers\ncatch_workers_output = yes\n");
        $cmd = [$bin, '-F', '-c', "$d/php.ini", '-y', "$d/php-fpm.conf"];
        if (posix_getuid() === 0) $cmd[] = '-R';
        // Only our php.ini, not Debian's conf.d: the scan dir is an empty one (proc_open
        // drops an empty PHP_INI_SCAN_DIR, and php-fpm then scans its compiled-in default).
        mkdir("$d/conf.d");
        $env = array_merge(getenv(), ['PHP_INI_SCAN_DIR' => "$d/conf.d"]);
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$d/fpm.out", 'a'], 2 => ['file', "$d/fpm.out", 'a']], $pipes, null, $env);
        check(is_resource($this->proc), 'php-fpm starts');
        $this->pid = proc_get_status($this->proc)['pid'];
        $GLOBALS['__cleanup'][] = fn() => $this->kill();
        // Ready when the master's socket accepts a connection.
        wait_until(function () {
            check($this->running(), 'php-fpm is running: ' . $this->logs());
            $s = @stream_socket_client("unix://{$this->sock}", $errno, $err, 1);
            if ($s === false) return false;
            fclose($s);
            return true;
        }, 'php-fpm accepts connections');
    }

    public function running(): bool {
        if ($this->exitCode !== null || !is_resource($this->proc)) return false;
        $st = proc_get_status($this->proc);
        if (!$st['running']) {
            $this->exitCode = $st['exitcode'];
            return false;
        }
        return true;
    }

    public function logs(): string {
        return @file_get_contents("{$this->dir}/fpm.out") . @file_get_contents("{$this->dir}/fpm.log") . @file_get_contents("{$this->dir}/php-error.log");
    }

    /** FastCGI params for one GET of the pool's script with this query. */
    public function params(array $query): array {
        $qs = http_build_query($query);
        return [
            'GATEWAY_INTERFACE' => 'FastCGI/1.0', 'REQUEST_METHOD' => 'GET', 'SERVER_PROTOCOL' => 'HTTP/1.1',
            'SCRIPT_FILENAME' => $this->script, 'SCRIPT_NAME' => '/index.php', 'REQUEST_URI' => "/index.php?$qs",
            'QUERY_STRING' => $qs, 'CONTENT_LENGTH' => '0', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_NAME' => 'localhost',
        ];
    }

    /** Runs the requests ($parallel in flight) and returns each answer's decoded JSON body. */
    public function run(array $queries, int $parallel): array {
        $answers = FastCgi::many("unix://{$this->sock}", array_map(fn($q) => $this->params($q), $queries), $parallel);
        return array_map(function ($a) {
            [$body, $stderr, $status] = $a;
            check($status === 0, "request exit status 0: $body $stderr");
            $j = json_decode($body, true);
            check(is_array($j), "JSON answer: $body $stderr");
            return $j;
        }, $answers);
    }

    /** One request to each of $n workers at once: each waits until all $n arrived, so each lands on another worker. */
    public function everyWorker(int $n, array $query): array {
        $dir = tmpdir();
        return $this->run(array_fill(0, $n, $query + ['barrier' => $dir, 'want' => $n]), $n);
    }

    /** Stops php-fpm: SIGQUIT is the graceful stop, SIGTERM the fast one. */
    public function quit(int $signal = SIGQUIT): int {
        posix_kill($this->pid, $signal);
        wait_until(fn() => !$this->running(), "php-fpm exits after signal $signal: " . $this->logs(), 60.0);
        proc_close($this->proc);
        return $this->exitCode;
    }

    /** The pids of the master's worker processes (its children), sorted. */
    public function workerPids(): array {
        $pids = array_map('intval', preg_split('/\s+/', trim((string)@file_get_contents("/proc/{$this->pid}/task/{$this->pid}/children")), -1, PREG_SPLIT_NO_EMPTY));
        sort($pids);
        return $pids;
    }

    public function kill(): void {
        if ($this->running()) {
            posix_kill($this->pid, SIGTERM);
            $deadline = microtime(true) + 10;
            while ($this->running() && microtime(true) < $deadline) usleep(10000);
            if ($this->running()) posix_kill($this->pid, SIGKILL);
        }
        if (is_resource($this->proc)) proc_close($this->proc);
    }
}

/**
 * A minimal FastCGI client (responder role, one request per connection) for
 * talking to php-fpm without a web server. $addr is "unix:///path" or
 * "tcp://127.0.0.1:port".
 */
final class FastCgi {
    /** Opens a connection and writes one whole request; the server closes it after answering (see parse()). */
    public static function start(string $addr, array $params, string $stdin = '') {
        $s = stream_socket_client($addr, $errno, $err, 10);
        check($s !== false, "connect $addr: $err");
        $id = 1;
        $out = self::record(1, $id, pack('nCx5', 1, 0)); // BEGIN_REQUEST: RESPONDER, close after the request
        $body = '';
        foreach ($params as $k => $v) {
            $body .= self::len(strlen((string)$k)) . self::len(strlen((string)$v)) . $k . $v;
        }
        foreach (str_split($body, 65535) as $chunk) {
            if ($chunk !== '') $out .= self::record(4, $id, $chunk);
        }
        $out .= self::record(4, $id, '');
        foreach (str_split($stdin, 65535) as $chunk) {
            if ($chunk !== '') $out .= self::record(5, $id, $chunk);
        }
        $out .= self::record(5, $id, '');
        for ($off = 0; $off < strlen($out); $off += $n) {
            $n = fwrite($s, substr($out, $off));
            check($n !== false && $n > 0, 'write the FastCGI request');
        }
        return $s;
    }

    /** Parses everything the server sent on a connection it closed: [stdout body without headers, stderr, app status, headers]. */
    public static function parse(string $buf): array {
        $stdout = $stderr = '';
        $status = null;
        for ($off = 0; $off + 8 <= strlen($buf);) {
            $h = unpack('Cversion/Ctype/nid/nlen/Cpad', substr($buf, $off, 7));
            $content = substr($buf, $off + 8, $h['len']);
            $off += 8 + $h['len'] + $h['pad'];
            if ($h['type'] === 6) $stdout .= $content;
            elseif ($h['type'] === 7) $stderr .= $content;
            elseif ($h['type'] === 3) { $status = unpack('N', $content)[1]; check(ord($content[4]) === 0, 'FastCGI request complete'); }
        }
        check($status !== null, 'FastCGI END_REQUEST received; got ' . strlen($buf) . ' bytes: ' . substr($stdout . $stderr, 0, 500));
        $sep = strpos($stdout, "\r\n\r\n");
        $head = $sep === false ? '' : substr($stdout, 0, $sep);
        $body = $sep === false ? $stdout : substr($stdout, $sep + 4);
        return [$body, $stderr, $status, $head];
    }

    /**
     * Runs every request of $list (each a params array), keeping up to
     * $parallel connections in flight; returns the parsed answers in $list's order.
     */
    public static function many(string $addr, array $list, int $parallel): array {
        $results = [];
        $open = []; // key => [stream, buffer]
        $next = 0;
        $keys = array_keys($list);
        while ($next < count($keys) || $open) {
            while ($next < count($keys) && count($open) < $parallel) {
                $k = $keys[$next++];
                $s = self::start($addr, $list[$k]);
                stream_set_blocking($s, false);
                $open[$k] = [$s, ''];
            }
            $read = array_map(fn($o) => $o[0], $open);
            $w = $e = null;
            $n = stream_select($read, $w, $e, 30);
            check($n !== false && $n > 0, 'php-fpm answers within 30 s (' . count($open) . ' requests open)');
            foreach ($read as $s) {
                $k = array_search($s, array_map(fn($o) => $o[0], $open), true);
                $chunk = fread($s, 65536);
                if ($chunk !== false && $chunk !== '') {
                    $open[$k][1] .= $chunk;
                } elseif (feof($s)) {
                    fclose($s);
                    $results[$k] = self::parse($open[$k][1]);
                    unset($open[$k]);
                }
            }
        }
        $ordered = [];
        foreach ($keys as $k) $ordered[$k] = $results[$k];
        return $ordered;
    }

    private static function record(int $type, int $id, string $content): string {
        $pad = (8 - strlen($content) % 8) % 8;
        return pack('CCnnCx', 1, $type, $id, strlen($content), $pad) . $content . str_repeat("\0", $pad);
    }

    private static function len(int $n): string {
        return $n < 128 ? chr($n) : pack('N', $n | 0x80000000);
    }
}

/**
 * Polls $fn (a real condition) until it returns something other than null or false, and returns
 * that, or fails after $seconds. $what says what was awaited; a Closure is asked at the time of
 * failure, so that it can tell the last values $fn saw.
 */
function wait_until(callable $fn, string|Closure $what, float $seconds = 10.0) {
    $deadline = microtime(true) + $seconds;
    while (true) {
        $v = $fn();
        if ($v !== null && $v !== false) return $v;
        if (microtime(true) >= $deadline) {
            throw new CheckFailed(($what instanceof Closure ? $what() : $what) . " (waited $seconds s)");
        }
        usleep(10000);
    }
}

/** The value of one sample of the relay's /metrics (e.g. 'rtet_connections{role="publisher"}'), null if absent. */
function metric_value(string $metrics, string $sample): ?float {
    foreach (explode("\n", $metrics) as $line) {
        if (str_starts_with($line, $sample . ' ')) return (float)substr($line, strlen($sample) + 1);
    }
    return null;
}

/**
 * redis-server on a free loopback port, its data (append-only file, fsynced
 * every second) in its own directory; stop() and start() again keep both, as
 * a restarted Redis would.
 */
final class RedisServer {
    public $proc = null;
    public int $port;
    public string $dir;

    public function __construct() {
        $this->dir = tmpdir();
        $GLOBALS['__cleanup'][] = fn() => $this->kill();
        // A port picked free can be taken before redis binds it: pick again.
        for ($attempt = 1; ; $attempt++) {
            $addr = unused_addr();
            $this->port = (int)substr($addr, strrpos($addr, ':') + 1);
            try {
                $this->start();
                return;
            } catch (CheckFailed $e) {
                if ($attempt >= 5 || !str_contains($e->getMessage(), 'in use')) throw $e;
            }
        }
    }

    public function url(): string { return "redis://127.0.0.1:{$this->port}/0"; }

    public function start(): void {
        $cmd = ['redis-server', '--bind', '127.0.0.1', '--port', (string)$this->port, '--dir', $this->dir,
            '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--daemonize', 'no'];
        $this->proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "{$this->dir}/redis.log", 'a'], 2 => ['redirect', 1]], $pipes);
        check(is_resource($this->proc), 'redis-server starts');
        wait_until(function () {
            if (!proc_get_status($this->proc)['running']) {
                throw new CheckFailed('redis-server exited: ' . @file_get_contents("{$this->dir}/redis.log"));
            }
            return $this->ping();
        }, 'redis-server answers PING');
    }

    private function ping(): bool {
        $s = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $errno, $err, 1);
        if ($s === false) return false;
        fwrite($s, "PING\r\n");
        $line = fgets($s);
        fclose($s);
        return $line === "+PONG\r\n";
    }

    /** SIGTERM (Redis writes its append-only file and exits) and waits for the exit. */
    public function stop(): void {
        $pid = proc_get_status($this->proc)['pid'];
        posix_kill($pid, SIGTERM);
        wait_until(fn() => !proc_get_status($this->proc)['running'], 'redis-server exits on SIGTERM');
        proc_close($this->proc);
        $this->proc = null;
    }

    public function kill(): void {
        if (is_resource($this->proc)) {
            $st = proc_get_status($this->proc);
            if ($st['running']) posix_kill($st['pid'], SIGKILL);
            proc_close($this->proc);
        }
    }
}

/** The HTTP status of GET $url (0 when nothing answers). */
function http_status(string $url): int {
    $ctx = stream_context_create(['http' => ['ignore_errors' => true, 'timeout' => 5]]);
    $body = @file_get_contents($url, false, $ctx);
    if ($body === false || !isset($http_response_header[0])) return 0;
    return (int)explode(' ', $http_response_header[0])[1];
}
