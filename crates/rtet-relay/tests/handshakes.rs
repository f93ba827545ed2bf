//! `--max-handshakes` and `--handshake-queue`: connections opened beyond the
//! limit wait for a slot and open, or are answered 503 when the queue is
//! full; none is left hanging.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guard against a hung test; never a pass/fail threshold.
const WAIT: Duration = Duration::from_secs(30);

const REFUSED: &str = "rtet_connections_refused_total{reason=\"handshakes\"}";

/// Opens a subscriber and subscribes it: the connection's status on refusal.
async fn open_and_subscribe(relay: &TestRelay) -> Result<(), u16> {
    let mut ws = relay.subscriber_with_origin(None).await?;
    assert_eq!(
        subscribe(&mut ws, "public", None).await["type"],
        "subscribed"
    );
    Ok(())
}

/// `count` subscribers opened all at once, each bounded by [`WAIT`].
async fn open_all_at_once(relay: &TestRelay, count: usize) -> Vec<Result<(), u16>> {
    let opening = (0..count).map(|_| async {
        tokio::time::timeout(WAIT, open_and_subscribe(relay))
            .await
            .expect("a connection over the handshake limit hung")
    });
    join_all(opening).await
}

#[tokio::test]
async fn upgrades_beyond_the_handshake_limit_wait_their_turn_and_all_open() {
    let mut cfg = config();
    cfg.max_handshakes = 2;
    let relay = start(cfg).await;
    let opened = open_all_at_once(&relay, 200).await;
    assert!(
        opened.iter().all(Result::is_ok),
        "every connection waits in the queue and opens: {:?}",
        opened.iter().filter(|r| r.is_err()).collect::<Vec<_>>()
    );
    assert_eq!(relay.metric(REFUSED).await, 0.0);
}

#[tokio::test]
async fn with_no_queue_upgrades_beyond_the_limit_open_or_get_503_and_none_hangs() {
    let mut cfg = config();
    cfg.max_handshakes = 1;
    cfg.handshake_queue = 0;
    let relay = start(cfg).await;
    let opened = open_all_at_once(&relay, 200).await;
    let refused = opened.iter().filter(|r| r.is_err()).count();
    assert!(
        opened.iter().all(|r| matches!(r, Ok(()) | Err(503))),
        "each one opens or is refused with 503: {opened:?}"
    );
    assert!(opened.iter().any(Result::is_ok), "the relay kept opening");
    assert_eq!(
        relay.metric(REFUSED).await,
        refused as f64,
        "every 503 is counted"
    );
}

/// Reads an HTTP answer's status line from a raw connection.
async fn status_of(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_eq!(n, 1, "closed before a status line: {head:?}");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

#[tokio::test]
async fn a_full_handshake_queue_answers_503_with_retry_after_and_opens_again_once_free() {
    let mut cfg = config();
    cfg.max_handshakes = 1;
    cfg.handshake_queue = 0;
    let relay = start(cfg).await;

    // A client part-way through its request holds the only slot.
    let mut slow = TcpStream::connect(relay.addr).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    // Until it has it, a probe may still get the slot (200); once it has, 503.
    let mut refused = 0.0;
    tokio::time::timeout(WAIT, async {
        loop {
            let (status, body) = relay.http("GET", "/healthz", &[], b"").await;
            if status == 503 {
                assert!(body.contains("busy"), "{body}");
                return;
            }
            assert_eq!(status, 200, "{body}");
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a client part-way through its request holds the only slot");
    refused += 1.0;

    let mut raw = TcpStream::connect(relay.addr).await.unwrap();
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&mut raw).await, 503);
    let mut rest = String::new();
    tokio::time::timeout(WAIT, raw.read_to_string(&mut rest))
        .await
        .expect("the refused connection is closed")
        .unwrap();
    assert!(
        rest.to_ascii_lowercase().contains("retry-after: 1"),
        "{rest}"
    );
    refused += 1.0;
    assert_eq!(
        relay.subscriber_with_origin(None).await.err(),
        Some(503),
        "a WebSocket client sees 503"
    );
    refused += 1.0;

    // The slow client finishes its upgrade: it opens, and the slot is free again.
    slow.write_all(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&mut slow).await, 101);
    open_and_subscribe(&relay)
        .await
        .expect("a slot is free again");
    assert_eq!(relay.metric(REFUSED).await, refused);
}

/// A raw connection to `relay` from the loopback address `local`.
async fn connect_from(local: &str, relay: &TestRelay) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(local.parse().unwrap(), 0))
        .expect("bind the source address");
    socket.connect(relay.addr).await.expect("connect")
}

/// `GET /healthz` from `local`: its status.
async fn healthz_from(local: &str, relay: &TestRelay) -> u16 {
    let mut s = connect_from(local, relay).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    status_of(&mut s).await
}

/// Opens `count` connections from `local` that send the start of a request
/// and stall.
async fn stall_from(local: &str, relay: &TestRelay, count: usize) -> Vec<TcpStream> {
    let mut stalled = Vec::new();
    for _ in 0..count {
        let mut s = connect_from(local, relay).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    stalled
}

/// Lets stalled connections finish their request: each is answered 200.
async fn finish(stalled: &mut [TcpStream]) {
    for s in stalled {
        s.write_all(b"Connection: close\r\n\r\n").await.unwrap();
        assert_eq!(status_of(s).await, 200);
    }
}

#[tokio::test]
async fn one_address_stalling_half_requests_cannot_keep_another_address_from_connecting() {
    let mut cfg = config();
    cfg.max_handshakes = 3;
    cfg.handshakes_per_ip = 2;
    cfg.handshake_queue = 0;
    let relay = start(cfg).await;

    let mut stalled = stall_from("127.0.0.2", &relay, 2).await;
    // Until they hold their address's slots a probe from it may still open (200); then 503.
    tokio::time::timeout(WAIT, async {
        while healthz_from("127.0.0.2", &relay).await == 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stalled connections hold their address's slots");
    assert_eq!(healthz_from("127.0.0.2", &relay).await, 503);

    // Another address still connects, over HTTP and WebSocket, while they stall.
    assert_eq!(healthz_from("127.0.0.3", &relay).await, 200);
    let mut ws = relay
        .subscriber_from("127.0.0.3", &[])
        .await
        .expect("another address opens a WebSocket");
    assert_eq!(
        subscribe(&mut ws, "public", None).await["type"],
        "subscribed"
    );

    // The stalled connections were held, not dropped: they finish and are answered.
    finish(&mut stalled).await;
    assert_eq!(healthz_from("127.0.0.2", &relay).await, 200);
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_per_address_so_clients_behind_it_share_every_slot() {
    let mut cfg = config();
    cfg.max_handshakes = 3;
    cfg.handshakes_per_ip = 1;
    cfg.handshake_queue = 0;
    cfg.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let relay = start(cfg).await;

    // Three clients behind the proxy open at once: capped per address, two would get 503.
    let mut behind_proxy = stall_from("127.0.0.2", &relay, 3).await;
    finish(&mut behind_proxy).await;
    // Any other peer is capped.
    let mut direct = stall_from("127.0.0.3", &relay, 1).await;
    tokio::time::timeout(WAIT, async {
        while healthz_from("127.0.0.3", &relay).await == 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a direct peer holds at most its one slot");
    finish(&mut direct).await;
}
