//! What a hostile or broken server at the relay's URL can make the
//! publisher do. It is a real WebSocket server (tokio-tungstenite) that
//! accepts the publisher's upgrade and then answers with a frame far over
//! the protocol's frame limit; the publisher must refuse it rather than
//! buffer it, report why, and keep its events.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Larger than any frame the protocol allows (`Limits::max_frame_bytes`).
const HUGE: usize = 4 * 1024 * 1024;

/// Accepts every connection at `listener`, completes the WebSocket upgrade
/// and sends one text frame of [`HUGE`] bytes, on a runtime of its own.
fn huge_frame_server(listener: std::net::TcpListener) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                        let _ = ws.send(Message::text("x".repeat(HUGE))).await;
                        // Hold the connection until the publisher drops it.
                        let _ = futures_util::StreamExt::next(&mut ws).await;
                    }
                });
            }
        });
    })
}

#[test]
fn a_frame_over_the_protocols_limit_from_the_relay_is_refused_and_nothing_is_lost() {
    let silent = Silent::new();
    let addr = silent.addr;
    let listener = silent.into_listener();
    let _server = huge_frame_server(listener);
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = publisher_config(addr, spool.path());
    cfg.shutdown_timeout = Duration::from_millis(200);
    let mut p = Running::start(cfg);

    enqueue_range(&p, "h", 0..3);
    wait_until("the oversized frame is reported", || {
        p.stats().last_error.is_some_and(|e| e.contains("too long"))
    });
    let s = p.stats();
    assert!(s.connects >= 1, "the upgrade was accepted: {s:?}");
    assert_eq!((s.acked, s.queued), (0, 3), "{s:?}");

    // Nothing is lost: at process end the events go to the spool.
    let report = p.shutdown();
    assert_eq!(report.spooled, 3);
    let files = spool_files(spool.path());
    let mut ids: Vec<String> = files.iter().flat_map(|f| spooled_ids(f)).collect();
    ids.sort();
    assert_eq!(ids, (0..3).map(|n| id("h", n)).collect::<Vec<_>>());
}
