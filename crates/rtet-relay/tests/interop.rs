//! Interop: Python's `websockets` (Debian's python3-websockets), a client no
//! one here wrote, drives the relay through a publish, a subscribe with a
//! token and a replay (tests/interop/python_client.py at the repository root).

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::*;

/// A Python that can `import websockets`: $RTET_PYTHON, then Debian's, then whatever is on PATH.
fn python() -> String {
    let candidates = [
        std::env::var("RTET_PYTHON").unwrap_or_default(),
        "/usr/bin/python3".to_owned(),
        "python3".to_owned(),
    ];
    for c in candidates.iter().filter(|c| !c.is_empty()) {
        let ok = std::process::Command::new(c)
            .args(["-c", "import websockets"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return c.clone();
        }
    }
    panic!("no python3 with the websockets module; install it: apt-get install python3-websockets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_publishes_subscribes_with_a_token_and_replays() {
    let relay = start(config()).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/python_client.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .arg(format!("ws://{}", relay.addr))
        .env("RTET_API_KEY", KEY)
        .output()
        .await
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("interop: all checks passed"), "{stdout}");
    // What the script did is visible in the relay's metrics.
    assert!(relay.metric("rtet_events_published_total").await >= 4.0);
    assert_eq!(
        relay
            .metric("rtet_auth_failures_total{role=\"publisher\"}")
            .await,
        1.0
    );
}
