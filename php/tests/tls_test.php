<?php
// wss:// against the relay's own TLS (--tls-cert/--tls-key) with a test CA
// made here by openssl: trusted through ca_file, refused without it (the
// events wait in the spool), refused for a certificate naming another host,
// and accepted by verify_tls=0 (which checks nothing).
require __DIR__ . '/lib.php';

function openssl(string ...$args): void {
    $p = proc_open(array_merge(['openssl'], $args), [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes);
    $out = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    check(proc_close($p) === 0, 'openssl ' . implode(' ', $args) . ": $out");
}

/** A CA (key + certificate) in a new directory; returns the directory. */
function make_ca(): string {
    $d = tmpdir();
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=rtet test CA', '-keyout', "$d/ca.key", '-out', "$d/ca.pem",
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    return $d;
}

/** A server certificate for $san (e.g. "IP:127.0.0.1,DNS:localhost"), signed by the CA in $ca, or self-signed when $ca is null; returns [cert, key]. */
function make_cert(?string $ca, string $san): array {
    $d = tmpdir();
    $ext = "$d/ext.cnf";
    file_put_contents($ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$san\n");
    if ($ca === null) {
        openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
            '-subj', '/CN=rtet self-signed', '-keyout', "$d/key.pem", '-out', "$d/cert.pem", '-addext', "subjectAltName=$san");
    } else {
        openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-subj', '/CN=rtet relay', '-keyout', "$d/key.pem", '-out', "$d/req.csr");
        openssl('x509', '-req', '-in', "$d/req.csr", '-CA', "$ca/ca.pem", '-CAkey', "$ca/ca.key", '-CAcreateserial',
            '-days', '2', '-extfile', $ext, '-out', "$d/cert.pem");
    }
    return ["$d/cert.pem", "$d/key.pem"];
}

function tls_relay(array $certKey): Relay {
    return new Relay('127.0.0.1:0', ['--tls-cert', $certKey[0], '--tls-key', $certKey[1]]);
}

/**
 * PHP code for run_php(): sends $n events on channel tls, waits until the sender
 * has recorded a connection failure (or connected), then prints the outcome as JSON.
 */
function send_and_report(int $n): string {
    return '$ids = []; for ($i = 0; $i < ' . $n . '; $i++) { $ids[] = rtet_send_event("t", ["i" => $i], "tls"); }
        $deadline = microtime(true) + 10;
        while (rtet_stats()["last_error"] === null && !rtet_stats()["connected"] && microtime(true) < $deadline) { usleep(10000); }
        $flushed = rtet_flush(0.2);
        echo json_encode(["flushed" => $flushed, "stats" => rtet_stats(), "ids" => $ids]);';
}

/** The channel's latest seq at the relay (0: no event yet), asked over wss. */
function channel_seq(string $url, string $channel, array $ssl): int {
    $ws = new Ws("$url/ws", $ssl);
    $ws->send(json_encode(['type' => 'subscribe', 'channel' => $channel]));
    $f = $ws->frame();
    check(($f['type'] ?? '') === 'subscribed', 'subscribed: ' . json_encode($f));
    return $f['seq'];
}

/** The report of a send_and_report() process that could not connect: it exited cleanly, never connected, flushed nothing. */
function refused_report(int $code, string $out): array {
    check_eq(0, $code, "the process exits cleanly: $out");
    $o = json_decode($out, true);
    check(is_array($o), "JSON: $out");
    check_eq(false, $o['flushed'], 'flush is false: nothing can be acked');
    check_eq(false, $o['stats']['connected'], 'not connected');
    check_eq(0, $o['stats']['connects'], 'never connected');
    return $o;
}

$ca = make_ca();
$caPem = "$ca/ca.pem";
$good = make_cert($ca, 'IP:127.0.0.1,DNS:localhost');

test('wss:// with the CA in ca_file: acked, connected, and every event arrives over wss', function () use ($caPem, $good) {
    $r = tls_relay($good);
    $url = $r->url('wss');
    rtet_configure($url, KEY, ['ca_file' => $caPem, 'spool_dir' => tmpdir()]);
    $ids = [];
    for ($i = 0; $i < 100; $i++) $ids[] = rtet_send_event('t', ['i' => $i], 'tls');
    check_eq(true, rtet_flush(10.0), 'flush; stats ' . json_encode(rtet_stats()));
    $s = rtet_stats();
    check_eq(true, $s['connected'], 'connected');
    check_eq(null, $s['last_error'], 'no error');
    check_eq(100, $s['acked'], 'all acked');
    check_eq(1, $s['connects'], 'one connection');
    $got = collect($url, 'tls', 100, null, ['cafile' => $caPem]);
    check_eq($ids, ids_of($got), 'every event once, in order, read by a wss subscriber that trusts the same CA');
    check_eq('{"i":99}', $got[99][1], 'data intact');
    // The same certificate by its DNS name.
    rtet_configure('wss://localhost:' . $r->port(), KEY, ['ca_file' => $caPem, 'spool_dir' => tmpdir()]);
    $id = rtet_send_event('t', ['i' => 100], 'tls');
    check_eq(true, rtet_flush(10.0), 'flush via wss://localhost; stats ' . json_encode(rtet_stats()));
    check_eq(array_merge($ids, [$id]), ids_of(collect($url, 'tls', 101, null, ['cafile' => $caPem])), 'the event sent via wss://localhost arrives after the others');
});

test('wss:// without the CA: refused for the certificate, nothing lost; a later process with rtet.ca_file delivers the spool once', function () use ($caPem, $good) {
    $r = tls_relay($good);
    $url = $r->url('wss');
    $spool = tmpdir();
    $ini = ['rtet.relay_url' => $url, 'rtet.api_key' => KEY, 'rtet.spool_dir' => $spool, 'rtet.shutdown_timeout_ms' => 100, 'rtet.reconnect_max_ms' => 100];
    [$code, $out] = run_php(send_and_report(30), $ini);
    $o = refused_report($code, $out);
    $err = (string)$o['stats']['last_error'];
    check(stripos($err, 'certificate') !== false && stripos($err, 'verify') !== false, "last_error names the certificate problem: $err");
    $files = spool_files($spool);
    check_eq(1, count($files), 'the events went to a spool file at process end');
    check_eq(30, count(file("$spool/{$files[0]}")), 'all 30 spooled');
    check_eq(0, channel_seq($url, 'tls', ['cafile' => $caPem]), 'nothing reached the relay');

    [$code, $out] = run_php('var_export(rtet_flush(30.0)); echo " ", rtet_stats()["spool_claimed"], " ", json_encode(rtet_stats()["last_error"]);',
        $ini + ['rtet.ca_file' => $caPem]);
    check_eq(0, $code, "the trusting process: $out");
    check_eq('true 30 null', trim($out), 'the later process (rtet.ca_file) delivered the spool and flush waited for it');
    check_eq([], spool_files($spool), 'the spool file is gone');
    check_eq($o['ids'], ids_of(collect($url, 'tls', 30, null, ['cafile' => $caPem])), 'every spooled event once, in order');
});

test('a certificate for another host name is refused even with the CA', function () use ($ca, $caPem) {
    $r = tls_relay(make_cert($ca, 'DNS:other.example'));
    [$code, $out] = run_php(send_and_report(3), ['rtet.relay_url' => $r->url('wss'), 'rtet.api_key' => KEY, 'rtet.ca_file' => $caPem,
        'rtet.spool_dir' => tmpdir(), 'rtet.shutdown_timeout_ms' => 0, 'rtet.reconnect_max_ms' => 100]);
    $o = refused_report($code, $out);
    $err = (string)$o['stats']['last_error'];
    check(stripos($err, 'mismatch') !== false, "last_error says the name does not match: $err");
    // The certificate itself is trusted: PHP's own TLS client, asked for that name, accepts it.
    $ws = new Ws($r->url('wss') . '/ws', ['cafile' => $caPem, 'peer_name' => 'other.example']);
    unset($ws);
});

test('verify_tls=0 connects to a self-signed relay without any CA (no verification at all)', function () {
    $self = make_cert(null, 'DNS:other.example');
    $r = tls_relay($self);
    $url = $r->url('wss');
    rtet_configure($url, KEY, ['verify_tls' => false, 'spool_dir' => tmpdir()]);
    $ids = [];
    for ($i = 0; $i < 10; $i++) $ids[] = rtet_send_event('t', ['i' => $i], 'tls');
    check_eq(true, rtet_flush(10.0), 'flush; stats ' . json_encode(rtet_stats()));
    check_eq(true, rtet_stats()['connected'], 'connected');
    check_eq($ids, ids_of(collect($url, 'tls', 10, null, ['cafile' => $self[0], 'peer_name' => 'other.example'])), 'every event once, in order');
    // The same relay with verification on (the default) is refused.
    [$code, $out] = run_php(send_and_report(1), ['rtet.relay_url' => $url, 'rtet.api_key' => KEY, 'rtet.spool_dir' => tmpdir(), 'rtet.shutdown_timeout_ms' => 0]);
    refused_report($code, $out);
});

finish();
