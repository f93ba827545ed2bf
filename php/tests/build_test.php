<?php
// The extension's build script (build.rs) on its own: compiled with rustc and
// run as cargo runs it, with what a build machine may lack taken away.
require __DIR__ . '/lib.php';

$root = dirname(__DIR__, 2);
$bin = tmpdir() . '/build-script';
exec('rustc --edition 2021 -O -o ' . escapeshellarg($bin) . ' ' . escapeshellarg("$root/build.rs") . ' 2>&1', $out, $rc);
if ($rc !== 0) {
    echo "FAIL build.rs compiles: " . implode("\n", $out) . "\n";
    exit(1);
}

/** Runs the build script with $env over the current environment; returns [exit code, stdout, stderr]. */
function build_script(array $env): array {
    global $bin, $root;
    $env = array_merge(getenv(), ['CARGO_MANIFEST_DIR' => $root], $env);
    $p = proc_open([$GLOBALS['bin']], [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env);
    $stdout = stream_get_contents($pipes[1]);
    $stderr = stream_get_contents($pipes[2]);
    return [proc_close($p), $stdout, $stderr];
}

function env_line(string $stdout, string $name): ?string {
    return preg_match('/^cargo:rustc-env=' . $name . '=(.*)$/m', $stdout, $m) ? $m[1] : null;
}

test('records the commit and the PHP it builds for', function () use ($root) {
    [$rc, $stdout, $stderr] = build_script([]);
    check_eq(0, $rc, "exit code ($stderr)");
    exec('git -C ' . escapeshellarg($root) . ' rev-parse --short=12 HEAD', $git);
    check_eq($git[0], env_line($stdout, 'RTET_BUILD_COMMIT'), 'commit');
    check_eq(trim(shell_exec('php-config --version')), env_line($stdout, 'RTET_BUILD_PHP_VERSION'), 'PHP version');
    check_eq(trim(shell_exec('php-config --phpapi')), env_line($stdout, 'RTET_BUILD_PHP_API'), 'PHP API');
});

test('outside a git checkout, and without git, the commit is "unknown"', function () {
    [$rc, $stdout, $stderr] = build_script(['CARGO_MANIFEST_DIR' => tmpdir()]);
    check_eq(0, $rc, "exit code ($stderr)");
    check_eq('unknown', env_line($stdout, 'RTET_BUILD_COMMIT'), 'not a checkout');
    $nogit = tmpdir();
    symlink(trim(shell_exec('command -v php-config')), "$nogit/php-config");
    [$rc, $stdout, $stderr] = build_script(['PATH' => $nogit]);
    check_eq(0, $rc, "exit code without git ($stderr)");
    check_eq('unknown', env_line($stdout, 'RTET_BUILD_COMMIT'), 'no git');
});

test('a missing php-config stops the build with the package to install', function () {
    [$rc, $stdout, $stderr] = build_script(['PHP_CONFIG' => '/nonexistent/php-config']);
    check_eq(1, $rc, 'exit code');
    check(str_contains($stderr, '/nonexistent/php-config') && str_contains($stderr, 'php8.2-dev'), "message: $stderr");
    check(!str_contains($stderr, 'panicked'), 'a message, not a panic');
    check(env_line($stdout, 'RTET_BUILD_COMMIT') === null, 'records nothing');
});

test('a missing libclang stops the build with the package to install', function () {
    [$rc, $stdout, $stderr] = build_script(['LIBCLANG_PATH' => tmpdir()]);
    check_eq(1, $rc, 'exit code');
    check(str_contains($stderr, 'libclang') && str_contains($stderr, 'libclang-dev'), "message: $stderr");
    check(!str_contains($stderr, 'panicked'), 'a message, not a panic');
});

finish();
