//! The `rtet-relay` binary: flags, environment, config file, refusal to start
//! without a good key, `--help`, and SIGTERM.

mod common;

use common::{relay_binary as relay, RelayProcess};

const KEY: &str = "cli-key-0123456789abcdef0123456789ab";

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

/// The relay's runtime threads (named `rtet-worker`), from `/proc`.
fn runtime_threads(process: &RelayProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", process.child.id()))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap_or_default().trim() == "rtet-worker"
        })
        .count()
}

#[test]
fn worker_threads_set_how_many_threads_serve() {
    // Read at once: the runtime's blocking threads, which share the name,
    // start only for the memory trim, ten seconds in.
    for (n, how) in [(1, "flag"), (3, "env")] {
        let mut cmd = relay();
        cmd.args(["--api-key", KEY, "--listen", "127.0.0.1:0"]);
        match how {
            "flag" => cmd.args(["--worker-threads", &n.to_string()]),
            _ => cmd.env("RTET_WORKER_THREADS", n.to_string()),
        };
        let process = RelayProcess::start(&mut cmd);
        assert_eq!(
            runtime_threads(&process),
            n,
            "--worker-threads {n} by {how}"
        );
        let health = get(&process.addr, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let (exit, _) = process.terminate();
        assert!(exit.success());
    }
    let max = rtet_relay::config::MAX_WORKER_THREADS;
    for bad in ["0".to_owned(), (max + 1).to_string()] {
        let out = relay()
            .args(["--api-key", KEY, "--worker-threads", &bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--worker-threads {bad} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "invalid setting worker_threads: must be 1 to {max}"
            )),
            "{err}"
        );
    }
}

#[test]
fn help_documents_every_option_with_its_default() {
    let out = relay().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let defaults = rtet_relay::Settings::defaults();
    let command = rtet_relay::Settings::command_with_defaults();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        // The option's block: from its line to the next option's.
        let lines: Vec<&str> = help.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("--{long} ")))
            .unwrap_or_else(|| panic!("--help lacks --{long}"));
        let block = lines[start..]
            .iter()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('-'))
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join("\n");
        let id = arg.get_id().as_str();
        match defaults.iter().find(|(name, _)| *name == id) {
            Some((_, value)) => assert!(
                block.contains(&format!("[default: {value}]")),
                "--{long} shows the default {value} of the one definition: {block}"
            ),
            None if long == "config" || long == "api-key" => {}
            None => assert!(
                block.contains("[default: none"),
                "--{long} has no default value, so its help says what none means: {block}"
            ),
        }
    }
    for env in ["RTET_API_KEYS", "RTET_LISTEN"] {
        assert!(help.contains(env), "--help lacks {env}");
    }
}

#[test]
fn an_unset_setting_takes_the_default_that_help_shows() {
    let config = rtet_relay::Config::from_args(["rtet-relay", "--api-key", KEY]).unwrap();
    let shown: std::collections::HashMap<_, _> =
        rtet_relay::Settings::defaults().into_iter().collect();
    assert_eq!(shown["listen"], config.listen.to_string());
    assert_eq!(
        shown["history_size"],
        config.limits.history_events.to_string()
    );
    assert_eq!(
        shown["max_frame_bytes"],
        config.limits.max_frame_bytes.to_string()
    );
    assert_eq!(shown["max_connections"], config.max_connections.to_string());
    assert_eq!(
        humantime::parse_duration(&shown["dead_peer_timeout"]).unwrap(),
        config.limits.dead_peer_timeout
    );
}

fn get(addr: &str, path: &str) -> String {
    common::http_blocking(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
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
    let process = RelayProcess::start(relay().args([
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let addr = process.addr.clone();
    assert!(!addr.ends_with(":1"), "the flag wins over the file: {addr}");
    let health = get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"));
    let metrics = get(&addr, "/metrics");
    assert!(metrics.contains("rtet_events_published_total"));
    let (exit, log) = process.terminate();
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
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
    let process = RelayProcess::start(
        relay()
            .env("RTET_CONFIG", &file)
            .env("RTET_LISTEN", "127.0.0.1:0")
            .env("RTET_API_KEYS", format!("{KEY},{KEY}-second")),
    );
    let addr = process.addr.clone();
    assert!(
        !addr.ends_with(":1"),
        "RTET_LISTEN wins over the file: {addr}"
    );
    assert!(get(&addr, "/healthz").ends_with("ok"));
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /api/send-event` with the key in the header; the status code.
fn publish_status(addr: &str, key: &str) -> u16 {
    let body = r#"{"type":"e"}"#;
    let answer = common::http_blocking(
        addr,
        &format!(
            "POST /api/send-event HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn the_example_config_ships_no_key_and_says_how_to_make_one() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/relay.toml");
    let out = relay()
        .args(["--config", example, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no API key"), "{err}");
    assert!(err.contains("openssl rand -hex 32"), "{err}");
}

#[test]
fn example_keys_are_refused_whatever_their_length() {
    for key in [
        "CHANGE-ME-use-openssl-rand-hex-32-to-make-one",
        "your-api-key-here-0123456789abcdef0123",
        "my-relay-secret-0123456789abcdef0123456",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let out = relay().env("RTET_API_KEY", key).output().unwrap();
        assert!(!out.status.success(), "{key} refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("API key number 1") && err.contains("openssl rand -hex 32"),
            "refused for what the key is: {err}"
        );
        assert!(!err.contains(key), "the key is never echoed: {err}");
    }
}

#[test]
fn keys_come_from_a_private_file_or_the_environment() {
    let dir = std::env::temp_dir().join(format!("rtet-relay-keyfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.key");
    std::fs::write(&file, format!("# the site's key\n{KEY}\n\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let process = RelayProcess::start(relay().args([
        "--api-key-file",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    assert_eq!(
        publish_status(&process.addr, KEY),
        200,
        "the file's key works"
    );
    assert_eq!(publish_status(&process.addr, "# the site's key"), 401);
    drop(process);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = relay()
        .args(["--api-key-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by every local user"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let process = RelayProcess::start(
        relay()
            .env("RTET_API_KEY", KEY)
            .args(["--listen", "127.0.0.1:0"]),
    );
    assert_eq!(
        publish_status(&process.addr, KEY),
        200,
        "RTET_API_KEY works"
    );
}

#[test]
fn metrics_listen_serves_metrics_on_their_own_address_only() {
    let process = RelayProcess::start(relay().env("RTET_API_KEY", KEY).args([
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let metrics_addr = process
        .early_log
        .iter()
        .filter(|l| l.contains("metrics listening"))
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", process.early_log))
        .to_owned();
    let metrics = get(&metrics_addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("rtet_events_published_total"));
    let main = get(&process.addr, "/metrics");
    assert!(main.starts_with("HTTP/1.1 404"), "{main}");
}
