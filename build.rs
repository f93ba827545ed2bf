//! Build script of `rtet.so`.
//!
//! 1. Checks what building a PHP extension needs before anything else does:
//!    `php-config` (PHP's headers and version) and libclang (ext-php-rs
//!    generates its bindings with bindgen). This script has no dependencies,
//!    so it runs while bindgen is still compiling, and a missing piece is
//!    reported as one plain sentence with the package to install instead of
//!    bindgen's panic.
//! 2. Records what the extension was built from and for: the git commit
//!    (or "unknown" outside a git checkout, e.g. from a source tarball), the
//!    PHP version and the PHP API number. `rtet_version()` and `phpinfo()`
//!    show them, so a deployed `rtet.so` can be traced to its source and
//!    checked against the PHP it is loaded into.
//! 3. Hot code: has the linker lay out together the functions a php-fpm
//!    worker runs (`src/hot_code.ld`, written by `php/bench/hot_code.sh`
//!    from a profile of real workers). See [`hot_code`].

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PHP_CONFIG");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");

    let php_config = std::env::var("PHP_CONFIG").unwrap_or_else(|_| "php-config".to_owned());
    let php_version = run(&php_config, &["--version"]).unwrap_or_else(|| {
        fail(&format!(
            "`{php_config}` was not found or failed. Building rtet.so needs PHP's development \
             files: on Debian, `apt-get install php8.2-dev` (or set PHP_CONFIG to your php-config)."
        ))
    });
    let php_api = run(&php_config, &["--phpapi"]).unwrap_or_else(|| "unknown".to_owned());
    if find_libclang().is_none() {
        fail(
            "libclang was not found. ext-php-rs generates PHP's bindings with it: on Debian, \
             `apt-get install libclang-dev` (or set LIBCLANG_PATH to the directory of libclang.so).",
        );
    }

    let commit = git_commit().unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RTET_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=RTET_BUILD_PHP_VERSION={php_version}");
    println!("cargo:rustc-env=RTET_BUILD_PHP_API={php_api}");
    hot_code();
}

/// Lays out the code a php-fpm worker runs in one run of pages
/// (`.text.rtet_hot`), before the rest of `.text`.
///
/// A worker maps rtet.so's code as it runs it, and the kernel maps the
/// 64 KiB around each page it faults in (fault-around), so functions spread
/// over the file's 1.9 MB of `.text` made every worker map nearly all of
/// it: about 1.5 MiB of VmRSS per worker for 0.5 MB of code that runs.
/// Grouped, a worker maps little more than what runs. Only the cdylib's
/// link is affected (the relay and the other crates link as they would),
/// and a function missing from the list is still linked, only elsewhere: a
/// stale list costs memory, never correctness. The list names the functions
/// exactly for the builds profiled, then again with the hashes of their
/// mangled names as wildcards, for builds with other features or another
/// toolchain.
fn hot_code() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let script = Path::new(&dir).join("src/hot_code.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && script.is_file() {
        // A script with INSERT adds to the linker's default layout instead of replacing it
        // (GNU ld and lld alike).
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
    }
}

/// Stops the build with `message`, as a plain line above cargo's own output.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}

/// Runs a command and returns its trimmed stdout, if it succeeded.
fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Where clang-sys (bindgen's loader) would find libclang: only in
/// `LIBCLANG_PATH` when it is set (clang-sys looks nowhere else then), else
/// in `llvm-config --libdir` or the usual system directories.
fn find_libclang() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LIBCLANG_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Some(p)
        } else {
            libclang_in(&p)
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = run("llvm-config", &["--libdir"]) {
        dirs.push(d.into());
    }
    for base in ["/usr/lib", "/usr/lib64", "/usr/local/lib"] {
        dirs.push(base.into());
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("llvm") {
                    dirs.push(e.path().join("lib"));
                } else if name.ends_with("-linux-gnu") {
                    dirs.push(e.path());
                }
            }
        }
    }
    dirs.into_iter().find_map(|d| libclang_in(&d))
}

fn libclang_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libclang") && n.contains(".so") && !n.contains("cpp")
            })
        })
}

/// The commit this source is at (12 hex digits), or `None` when it is not a
/// git checkout or git is missing. Uncommitted changes are not marked: that
/// would need a rebuild on every edit anywhere in the repository.
fn git_commit() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves (a commit, a checkout), also in a worktree.
    if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            &head_ref,
        ]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    Some(commit)
}
