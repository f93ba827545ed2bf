<?php
// What a php-fpm worker holds because of rtet.so, read from outside the worker
// (/proc/PID/status, smaps, pagemap): no thread before the first send,
// the code it runs laid out together, and a burst's memory given back.
require __DIR__ . '/lib.php';

/** The pool's index.php: sends $q['k'] events (none when absent) with a body of $q['body'] bytes, flushes when asked. */
const PAGE = <<<'PHP'
<?php
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
$body = str_repeat('x', (int)($q['body'] ?? 0));
for ($i = 0; $i < (int)($q['k'] ?? 0); $i++) {
    rtet_send_event('post.updated', ['id' => $i, 'title' => 'Hello world', 'tags' => ['a', 'b'], 'body' => $body]);
}
$out = ['pid' => getmypid()];
if (isset($q['flush'])) {
    $out['flushed'] = rtet_flush((float)$q['flush']);
    $out['stats'] = rtet_stats();
}
header('Content-Type: application/json');
echo json_encode($out);
PHP;

/** A pool of one worker configured for $relay (or for an address nothing listens at); returns [Fpm, worker pid]. */
function one_worker(?Relay $relay): array {
    $url = $relay ? $relay->url() : 'ws://' . unused_addr();
    $fpm = new Fpm(['rtet.relay_url' => $url, 'rtet.api_key' => KEY, 'rtet.spool_dir' => tmpdir()], 1, PAGE);
    $pid = wait_until(fn() => $fpm->workerPids()[0] ?? null, 'php-fpm forked its worker');
    return [$fpm, $pid];
}

function request(Fpm $fpm, array $query): array {
    return $fpm->run([$query], 1)[0];
}

function status_field(int $pid, string $field): int {
    check(preg_match("/^$field:\\s+(\\d+)/m", (string)file_get_contents("/proc/$pid/status"), $m) === 1, "$field of $pid");
    return (int)$m[1];
}

/**
 * Private memory of each of a process's anonymous mappings (the heap, malloc's arenas, Zend
 * MM's chunks, thread stacks), in KiB, keyed by start address and name: what only this process
 * holds and no file backs. File pages are left out: they are page cache, and whether they count
 * as private or dirty depends on other processes (a page of php-fpm's code is private only
 * while no other process maps it, so it rises and falls as other php-fpm processes on the
 * machine start and end) and on the disk (a just-built rtet.so's pages are dirty until written
 * back).
 */
function private_anonymous(int $pid): array {
    $out = [];
    $mapping = null;
    foreach (file("/proc/$pid/smaps") as $line) {
        if (preg_match('/^([0-9a-f]+)-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/', $line, $m)) {
            // Inode 0: no file behind the mapping.
            $mapping = $m[2] === '0' ? $m[1] . ' ' . ($m[3] === '' ? 'anonymous' : $m[3]) : null;
        } elseif ($mapping !== null && preg_match('/^Private_(?:Clean|Dirty):\s+(\d+) kB/', $line, $m)) {
            $out[$mapping] = ($out[$mapping] ?? 0) + (int)$m[1];
        }
    }
    check($out !== [], "the mappings of $pid");
    return $out;
}

/** The mappings whose private memory grew from $before to $after, most first. */
function growth(array $before, array $after): string {
    $grew = [];
    foreach ($after as $mapping => $kib) {
        if ($kib > ($before[$mapping] ?? 0)) $grew[$mapping] = $kib - ($before[$mapping] ?? 0);
    }
    arsort($grew);
    return implode(', ', array_map(fn($m, $kib) => "$m +$kib KiB", array_keys($grew), $grew)) ?: 'none';
}

/** [file offset, size] of each of rtet.so's sections whose name starts with .text. */
function text_sections(string $so): array {
    exec('readelf -SW ' . escapeshellarg($so), $lines, $rc);
    check_eq(0, $rc, 'readelf reads rtet.so');
    $out = [];
    foreach ($lines as $l) {
        if (preg_match('/\]\s+(\.text\S*)\s+PROGBITS\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)/', $l, $m)) {
            $out[$m[1]] = [hexdec($m[2]), hexdec($m[3])];
        }
    }
    return $out;
}

/** The file offsets of $so's pages that $pid has mapped (resident, from /proc/PID/pagemap). */
function resident_offsets(int $pid, string $so): array {
    $out = [];
    $pm = fopen("/proc/$pid/pagemap", 'rb');
    foreach (file("/proc/$pid/maps") as $line) {
        if (!preg_match('/^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \S+\s+(\S+)$/', trim($line), $h) || realpath($h[4]) !== realpath($so)) continue;
        [$from, $to, $off] = [hexdec($h[1]), hexdec($h[2]), hexdec($h[3])];
        fseek($pm, intdiv($from, 4096) * 8);
        foreach (array_values(unpack('P*', (string)fread($pm, intdiv($to - $from, 4096) * 8))) as $i => $entry) {
            // Bit 63: the page is present.
            if ($entry < 0) $out[] = $off + $i * 4096;
        }
    }
    fclose($pm);
    return $out;
}

test('a php-fpm worker starts no thread until its first send, then one sender for all its requests', function () {
    $relay = new Relay();
    [$fpm, $pid] = one_worker($relay);
    check_eq(1, status_field($pid, 'Threads'), 'threads of a worker that served nothing');
    request($fpm, []);
    check_eq(1, status_field($pid, 'Threads'), 'threads after a request that sent nothing');
    request($fpm, ['k' => 1]);
    check_eq(2, status_field($pid, 'Threads'), 'threads after the first send: the sender');
    for ($i = 0; $i < 5; $i++) request($fpm, ['k' => 3]);
    $a = request($fpm, ['flush' => 20]);
    check($a['flushed'], 'every event acked: ' . json_encode($a));
    check_eq([2, 1], [status_field($pid, 'Threads'), $a['stats']['connects']], 'threads and connections after 6 sending requests');
    $fpm->quit();
    $relay->kill();
});

test("the code a worker runs is laid out together: it maps little of rtet.so's other code", function () {
    $so = (string)getenv('RTET_EXT');
    $sections = text_sections($so);
    check(isset($sections['.text.rtet_hot'], $sections['.text']), 'rtet.so has its hot code section (build.rs, src/hot_code.ld): ' . json_encode(array_keys($sections)));
    [$coldFrom, $coldSize] = $sections['.text'];
    foreach ([null, new Relay()] as $relay) {
        [$fpm, $pid] = one_worker($relay);
        for ($r = 0; $r < 30; $r++) request($fpm, ['k' => 1 + $r % 5]);
        $a = request($fpm, ['flush' => $relay ? 20 : 0]);
        check_eq($relay !== null, $a['flushed'], 'delivered with the relay up, not without: ' . json_encode($a));
        $pages = resident_offsets($pid, $so);
        check(count($pages) > 0, 'the worker maps rtet.so');
        $cold = count(array_filter($pages, fn($o) => $o >= $coldFrom && $o < $coldFrom + $coldSize));
        // The kernel maps code in 64 KiB windows: without the hot code a worker maps 1.4 MiB
        // of .text. A few windows come from paths the profile did not see (a connection
        // failing another way under load, a change to the send path since the profile).
        check($cold * 4 <= 384, sprintf('relay %s: %d KiB of .text outside the hot code is mapped (at most 384): run php/bench/hot_code.sh', $relay ? 'up' : 'down', $cold * 4));
        $fpm->quit();
        $relay?->kill();
    }
});

test('a worker gives back the memory a burst made it hold: 10,000 small events, or 200 of 40 KB', function () {
    $relay = new Relay('127.0.0.1:0', ['--publishes-per-sec', '1000000']);
    foreach ([['k' => 10000, 'body' => 0], ['k' => 200, 'body' => 40000]] as $burst) {
        [$fpm, $pid] = one_worker($relay);
        for ($r = 0; $r < 5; $r++) request($fpm, ['k' => 3]);
        check(request($fpm, ['flush' => 20])['flushed'], 'the warm-up acked');
        $before = private_anonymous($pid);
        request($fpm, $burst);
        $a = request($fpm, ['flush' => 20]);
        check($a['flushed'], 'the burst acked: ' . json_encode($a['stats']));
        // What the queue and the in-flight list grew to, and the events freed on the sender's
        // thread, go back to the system once the relay acked it all (the sender does that on
        // its own thread, just after the last ack). Kept without that: 1 to 3 MiB. What stays
        // with it is the allocator's working set, about 80 to 250 KiB: partly used pages, and
        // the top of the sender thread's arena, which glibc keeps up to its trim threshold.
        $after = $before;
        wait_until(
            function () use ($pid, $before, &$after) {
                $after = private_anonymous($pid);
                return array_sum($after) - array_sum($before) <= 512;
            },
            function () use ($burst, $before, &$after) {
                return sprintf('%d events of a %d-byte body: private anonymous memory back within 512 KiB of the %d KiB before the burst: %d KiB; grew: %s',
                    $burst['k'], $burst['body'], array_sum($before), array_sum($after), growth($before, $after));
            },
        );
        $fpm->quit();
    }
    $relay->kill();
});

finish();
