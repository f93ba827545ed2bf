//! The `rtet-relay` binary: flags, environment, config file, refusal to start
//! without a good key, `--help`, and SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rtet-relay");
const KEY: &str = "cli-key-0123456789abcdef0123456789ab";

fn relay() -> Command {
    let mut c = Command::new(BIN);
    // Only what each test sets counts.
    for (k, _) in std::env::vars() {
        if k.starts_with("RTET_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn refuses_to_start_without_a_key_or_with_a_short_one() {
    let out = relay().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API key"));
    let out = relay().args(["--api-key", "too-short"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
    assert!(!err.contains("too-short"), "the key is never echoed");
    let out = relay()
        .env("RTET_API_KEYS", format!("{KEY},short"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "every key must be long enough");
}

#[test]
fn help_documents_every_option_with_its_default() {
    let out = relay().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--api-key",
        "--config",
        "--allowed-origin",
        "--anonymous-channel",
        "--history-size",
        "--history-age",
        "--dedupe-window",
        "--max-frame-bytes",
        "--max-token-bytes",
        "--max-subscriptions",
        "--client-frames-per-sec",
        "--client-frames-burst",
        "--publishes-per-sec",
        "--connections-per-ip",
        "--max-connections",
        "--max-channels",
        "--subscriber-queue",
        "--first-frame-timeout",
        "--ping-interval",
        "--dead-peer-timeout",
        "--token-leeway",
        "--shutdown-grace",
        "--real-ip-header",
        "--tls-cert",
        "--tls-key",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "[default: 127.0.0.1:8090]",
        "[default: public]",
        "[default: 1000]",
        "[default: 10m]",
        "[default: 65536]",
        "[default: 25s]",
        "[default: 60s]",
        "[default: 4096]",
        "RTET_API_KEYS",
        "RTET_LISTEN",
    ] {
        assert!(help.contains(default), "--help lacks {default}");
    }
}

/// Starts the binary on port 0 and returns it with the address it logged.
fn spawn(cmd: &mut Command) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the relay logs where it listens")
            .unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the log so the relay never blocks on a full pipe; hand it back at the end.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, addr, rest)
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_with_env_and_file_settings_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("rtet-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:1\"\napi_keys = [\"{KEY}\"]\nhistory_size = 5\n"),
    )
    .unwrap();
    // The flag beats the file's listen address; the key comes from the file.
    let (mut child, addr, log) = spawn(relay().args([
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(!addr.ends_with(":1"), "the flag wins over the file: {addr}");
    let health = get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"));
    let metrics = get(&addr, "/metrics");
    assert!(metrics.contains("rtet_events_published_total"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
    let log = log.join().unwrap();
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains(KEY), "the key never appears in logs");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn environment_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("rtet-relay-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n").unwrap();
    let (mut child, addr, _) = spawn(
        relay()
            .env("RTET_CONFIG", &file)
            .env("RTET_LISTEN", "127.0.0.1:0")
            .env("RTET_API_KEYS", format!("{KEY},{KEY}-second")),
    );
    assert!(
        !addr.ends_with(":1"),
        "RTET_LISTEN wins over the file: {addr}"
    );
    assert!(get(&addr, "/healthz").ends_with("ok"));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
