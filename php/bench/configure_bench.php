<?php
// What one rtet_configure() call costs once the process's publisher runs: a
// site's plugin calls it on every request that publishes. Best of 7 rounds of
// 20,000 calls; the relay address is unreachable on purpose (the call never
// waits on the network).
//   php -n -d extension=target/release/librtet.so php/bench/configure_bench.php
$url = 'ws://127.0.0.1:1/publish'; $key = str_repeat('ab', 20);
rtet_configure($url, $key);
$best = INF;
for ($r = 0; $r < 7; $r++) {
  $n = 20000; $t = hrtime(true);
  for ($i = 0; $i < $n; $i++) { rtet_configure($url, $key); }
  $best = min($best, (hrtime(true) - $t) / $n);
}
printf("rtet_configure: best of 7 rounds %.0f ns per call\n", $best);
