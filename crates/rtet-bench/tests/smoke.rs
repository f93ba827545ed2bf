//! Keeps the load tool from rotting: its library code, at tiny scale, against
//! an in-process relay on port 0, and the `compare` command against the three
//! relays it starts. Asserts what the benchmark relies on (every event reached
//! every subscriber, once, in order); no timing thresholds.

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
        None,
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
        None,
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
    let burst = scenario::Burst {
        events: 20,
        payload_bytes: 300,
    };
    let idle = scenario::idle(&target, fleet, Duration::from_millis(50), Some(burst))
        .await
        .expect("idle runs");
    assert_eq!(idle.connections, 30, "{:?}", idle.error);
    assert!(idle.before_kib > 0 && idle.after_kib > 0);
    let after = idle.after_burst.as_ref().expect("the burst ran");
    assert_eq!(
        (after.delivered, after.expected),
        (600, 600),
        "every event reached every connection"
    );
    assert!(after.kib > 0 && idle.bytes_per_conn_after_burst().is_some());
    let _ = stop.send(());
    server.await.expect("relay stops");
}

/// One cell of a "delivered / expected" row: every event reached every
/// subscriber once, and nothing else (missing, repeated, closed) was noted.
fn assert_all_delivered(row: &str, relay: &str, cell: &str) {
    let (delivered, expected) = cell
        .split_once(" / ")
        .unwrap_or_else(|| panic!("{relay}: no count in {row:?}"));
    let count = |s: &str| -> u64 {
        s.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("{relay}: {cell:?} in {row:?}"))
    };
    assert!(count(expected) > 0, "{relay}: nothing expected in {row:?}");
    assert_eq!(count(delivered), count(expected), "{relay}: {row:?}");
}

/// `rtet-bench compare`, the binary, at tiny sizes against the three relays it
/// starts: rtet-relay (next to the bench binary: `cargo build -p rtet-relay`
/// first), the Node peer (`npm ci --prefix bench/node-ws-peer`) and nginx
/// with nchan (`libnginx-mod-nchan`). Every run on every relay, probes
/// included, must bring every event to every subscriber once.
#[test]
fn compare_counts_every_delivery_on_each_relay() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rtet-bench"));
    let relay = bin.with_file_name("rtet-relay");
    assert!(
        relay.is_file(),
        "{} is missing: build it first (cargo build -p rtet-relay, with the same profile)",
        relay.display()
    );
    let peer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/node-ws-peer");
    assert!(
        peer.join("node_modules").is_dir(),
        "the Node peer's modules are missing: npm ci --prefix bench/node-ws-peer"
    );
    let out = std::process::Command::new(bin)
        .args([
            "compare",
            "--flood-subscribers",
            "20",
            "--flood-events",
            "50",
            "--rate",
            "200",
            "--rate-subscribers",
            "10",
            "--rate-secs",
            "2",
            "--idle-connections",
            "30",
            "--sources",
            "2",
            "--in-flight",
            "8",
            "--probes",
            "2",
        ])
        .arg("--relay-bin")
        .arg(&relay)
        .arg("--node-script")
        .arg(peer.join("server.js"))
        .output()
        .expect("rtet-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| measurement |"))
        .unwrap_or_else(|| panic!("no table:\n{stdout}\n{stderr}"));
    assert!(
        header.contains("| rtet-relay | node ws | nginx nchan"),
        "{header}"
    );
    let relays = ["rtet-relay", "node ws", "nginx nchan"];
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("delivered / expected |"))
        .collect();
    // The flood, the fixed rate's load subscribers and its probes.
    assert_eq!(rows.len(), 3, "{stdout}\n{stderr}");
    assert!(rows.iter().any(|r| r.contains("probes")), "{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (relay, cell) in relays.iter().zip(&cells[2..5]) {
            assert_all_delivered(row, relay, cell);
        }
    }
    let idle = stdout
        .lines()
        .find(|l| l.starts_with("| idle: connections opened / asked"))
        .expect("idle row");
    let cells: Vec<&str> = idle.split('|').map(str::trim).collect();
    for (relay, cell) in relays.iter().zip(&cells[2..5]) {
        assert_eq!(*cell, "30 / 30", "{relay}: {idle}");
    }
}

/// `rtet-bench nodes`, the binary, at tiny sizes, in two rounds: one node on
/// the memory engine, one on Redis and two on one Redis (redis-server from
/// Debian, started by the bench). Every publish is acked, and every event
/// reaches every subscriber once, probes included, in the flood and at a
/// fixed rate, on all three; Redis's CPU per publish is read on the two Redis
/// setups, and what Redis adds to the probes' p99 for each round.
#[test]
fn nodes_counts_every_ack_and_delivery_on_each_setup() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rtet-bench"));
    let relay = bin.with_file_name("rtet-relay");
    assert!(
        relay.is_file(),
        "{} is missing: build it first (cargo build -p rtet-relay, with the same profile)",
        relay.display()
    );
    let out = std::process::Command::new(bin)
        .args([
            "nodes",
            "--publishes",
            "300",
            "--window",
            "16",
            "--flood-subscribers",
            "20",
            "--flood-events",
            "50",
            "--rate",
            "200",
            "--rate-subscribers",
            "10",
            "--rate-secs",
            "2",
            "--sources",
            "2",
            "--probes",
            "2",
            "--rounds",
            "2",
        ])
        .arg("--relay-bin")
        .arg(&relay)
        .output()
        .expect("rtet-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| measurement |"))
        .unwrap_or_else(|| panic!("no table:\n{stdout}\n{stderr}"));
    let setups = [
        "memory engine, 1 node",
        "Redis engine, 1 node",
        "Redis engine, 2 nodes",
    ];
    assert!(header.contains(&setups.join(" | ")), "{header}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("/ sent |") || l.contains("delivered / expected |"))
        .collect();
    // The acks run, the flood, and the fixed rate's load subscribers and probes.
    assert_eq!(rows.len(), 4, "{stdout}\n{stderr}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (setup, cell) in setups.iter().zip(&cells[2..5]) {
            assert_all_delivered(row, setup, cell);
        }
    }
    let redis_cpu = stdout
        .lines()
        .find(|l| l.starts_with("| Redis CPU per 1,000 publishes"))
        .expect("Redis CPU row");
    let cells: Vec<&str> = redis_cpu.split('|').map(str::trim).collect();
    assert_eq!(cells[2], "-", "no Redis on the memory engine: {redis_cpu}");
    for cell in &cells[3..5] {
        assert!(cell.ends_with(" ms"), "{redis_cpu}");
        assert_eq!(cell.matches(" · ").count(), 1, "two rounds: {redis_cpu}");
    }
    let added = stdout
        .lines()
        .find(|l| l.starts_with("| added by Redis to the probes' p99 "))
        .expect("the row of what Redis adds to the probes' p99");
    let cells: Vec<&str> = added.split('|').map(str::trim).collect();
    assert_eq!(
        cells[2], "-",
        "nothing to add on the memory engine: {added}"
    );
    for cell in &cells[3..5] {
        assert!(cell.ends_with(" ms"), "{added}");
        assert_eq!(cell.matches(" · ").count(), 1, "two rounds: {added}");
    }
}

/// `presence` cost at tiny scale: every connection authenticates with its
/// own token, joins and leaves; members are shown presence, plain
/// subscribers are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_cost_sees_every_join_and_leave() {
    use rtet_bench::presence::{cost, Kind, Shape};
    let (target, stop, server) = relay().await;
    let shape = Shape {
        channels: 3,
        per_channel: 4,
    };
    for kind in [Kind::Plain, Kind::Presence] {
        let c = cost(&target, kind, shape, 2, 8).await.expect("cost runs");
        assert!(c.complete(), "{kind:?}: {c:?}");
        assert_eq!((c.connections, c.subscribed, c.unsubscribed), (12, 12, 12));
        match kind {
            // At least the whole `presence` frame after each join.
            Kind::Presence => assert!(c.presence_frames >= 12, "{c:?}"),
            Kind::Plain => assert_eq!(c.presence_frames, 0, "{c:?}"),
        }
    }
    let _ = stop.send(());
    server.await.expect("relay stops");
}

/// A tiny join/leave storm of each style beside the probes: every client
/// joins and leaves, members hear of each other, every probe gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_storm_joins_every_client_and_the_probes_get_every_event() {
    use rtet_bench::presence::{window, EventFeed, Kind, Storm, Style};
    let (target, stop, server) = relay().await;
    let probing =
        rtet_bench::probe::placement(std::path::Path::new(env!("CARGO_BIN_EXE_rtet-bench")), 2);
    let feed = EventFeed {
        rate: 100.0,
        warmup_secs: 0.2,
        secs: 1.0,
        payload_bytes: 16,
    };
    for style in [Style::Churn, Style::Visits] {
        let storm = Storm {
            connections: 20,
            secs: 1.0,
            dwell: Duration::from_millis(500),
            channels: 2,
            kind: Kind::Presence,
            style,
            sources: 2,
            in_flight: 8,
        };
        let w = window(&target, &probing, feed, Some(storm))
            .await
            .expect("the window runs");
        assert!(w.probes.complete(), "{style:?}: {:?}", w.probes);
        let (_, seen) = w.storm.expect("a storm ran");
        assert_eq!(
            (seen.joined, seen.failed, seen.closed),
            (20, 0, 0),
            "{style:?}: {seen:?}"
        );
        assert!(seen.presence_frames >= 20, "{style:?}: {seen:?}");
    }
    let _ = stop.send(());
    server.await.expect("relay stops");
}
