<?php
// A live subscriber in its own process: php subscriber.php URL CHANNEL OUTFILE UNTIL_EVENT [CAFILE]
// Prints "ready" once subscribed, appends every event frame (one per line) to
// OUTFILE, and exits when the event named UNTIL_EVENT arrives or the relay goes away.
require __DIR__ . '/lib.php';
[, $url, $channel, $outfile, $until] = $argv;
$ssl = isset($argv[5]) ? ['cafile' => $argv[5]] : [];
$ws = new Ws(rtrim($url, '/') . '/ws', $ssl);
$ws->send(json_encode(['type' => 'subscribe', 'channel' => $channel]));
$f = $ws->frame();
if (($f['type'] ?? '') !== 'subscribed') { fwrite(STDERR, "not subscribed\n"); exit(2); }
echo "ready\n";
fflush(STDOUT);
$out = fopen($outfile, 'a');
while (($t = $ws->recv()) !== null) {
    if (!str_contains($t, '"type":"event"')) continue;
    fwrite($out, $t . "\n");
    fflush($out);
    if (str_contains($t, '"event":"' . $until . '"')) break;
}
exit(0);
