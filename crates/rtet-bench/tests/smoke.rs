//! Keeps the load tool from rotting: its library code, at tiny scale, against
//! an in-process relay on port 0. Asserts what the benchmark relies on (every
//! event reached every subscriber, once, in order); no timing thresholds.

use std::time::Duration;

use rtet_bench::publisher::Plan;
use rtet_bench::scenario::{self, Fleet};
use rtet_bench::target::{Dialect, Target};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const KEY: &str = "bench-smoke-key-0123456789abcdef0123";

/// Starts a relay in this process; dropping the sender stops it.
async fn relay() -> (Target, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let config = rtet_relay::Config::new([KEY]);
    let server = tokio::spawn(async move {
        rtet_relay::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .expect("relay runs");
    });
    let target = Target {
        addr,
        dialect: Dialect::Rtet,
        api_key: Some(KEY.to_owned()),
        channel: "public".into(),
        pid: Some(std::process::id()),
    };
    (target, stop, server)
}

fn plan(events: u64, rate: Option<f64>) -> Plan {
    Plan {
        events,
        max_duration: Duration::from_secs(30),
        rate,
        window: 16,
        lag: Some((8, 0)),
        payload_bytes: 16,
        drain: Duration::from_secs(10),
        drain_cap: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_reaches_every_subscriber() {
    let (target, stop, server) = relay().await;
    let fleet = Fleet {
        subscribers: 20,
        sources: 4,
        in_flight: 8,
    };
    let d = scenario::deliver(
        &target,
        fleet,
        &plan(100, None),
        Some(0),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await
    .expect("flood runs");
    assert_eq!(d.subscribers, 20, "open error: {:?}", d.open_error);
    assert_eq!(d.published.sent, 100);
    assert_eq!(d.published.acked, 100, "nack: {:?}", d.published.first_nack);
    assert_eq!(d.delivered, 2_000);
    assert_eq!((d.gaps, d.repeats, d.closed), (0, 0, 0));
    assert!(d.complete());
    assert_eq!(d.latency.as_ref().map(|h| h.len()), Some(2_000));
    let _ = stop.send(());
    server.await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_reaches_every_subscriber() {
    let (target, stop, server) = relay().await;
    let fleet = Fleet {
        subscribers: 10,
        sources: 2,
        in_flight: 4,
    };
    let mut p = plan(50, Some(500.0));
    p.lag = None;
    let d = scenario::deliver(
        &target,
        fleet,
        &p,
        Some(10),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await
    .expect("rate run");
    assert_eq!(d.delivered, 500);
    assert!(d.complete(), "{d:?}");
    // Events 10..50 were timed, for each of the 10 subscribers.
    assert_eq!(d.latency.as_ref().map(|h| h.len()), Some(400));
    let _ = stop.send(());
    server.await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_open_and_memory_is_read() {
    let (target, stop, server) = relay().await;
    let fleet = Fleet {
        subscribers: 30,
        sources: 3,
        in_flight: 8,
    };
    let idle = scenario::idle(&target, fleet, Duration::from_millis(50))
        .await
        .expect("idle runs");
    assert_eq!(idle.connections, 30, "{:?}", idle.error);
    assert!(idle.before_kib > 0 && idle.after_kib > 0);
    let _ = stop.send(());
    server.await.expect("relay stops");
}

/// The Node peer, through the same code path as `compare`. Needs `node` and
/// `npm ci --prefix bench/node-ws-peer`; run with `cargo test -p rtet-bench -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and bench/node-ws-peer/node_modules"]
async fn node_peer_reaches_every_subscriber() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/node-ws-peer/server.js");
    let peer = rtet_bench::spawn::start_node("node", &script)
        .await
        .expect("node peer starts");
    let fleet = Fleet {
        subscribers: 20,
        sources: 4,
        in_flight: 8,
    };
    let d = scenario::deliver(
        &peer.target,
        fleet,
        &plan(100, None),
        None,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await
    .expect("flood runs");
    assert_eq!(d.delivered, 2_000);
    assert!(d.complete(), "{d:?}");
    peer.stop().await;
}
