//! A subscriber keeps no buffer sized for the largest frame it was sent or
//! sent itself, once that frame is through.
//!
//! - Events: tungstenite keeps room for the largest frame it ever built, for
//!   the connection's life. When it framed the relay's events, 400
//!   subscribers sent three events of 60 KB held about 58 KiB each
//!   afterwards (23 MB); the relay frames its text frames itself
//!   (`src/frame_writer.rs`).
//! - Client frames: tungstenite's read buffer grows to the largest frame the
//!   peer sent. 400 subscribers that each sent one 60 KB frame held 59 KiB
//!   each afterwards (any client may send one, up to `--max-frame-bytes`);
//!   tungstenite is handed such frames in pieces (`src/frame_splitter.rs`).

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::json;

const SUBSCRIBERS: usize = 400;
const EVENTS: usize = 3;
const PADDING: usize = 60_000;

/// The relay, `SUBSCRIBERS` subscribers of `news` and a publisher, with one
/// small event delivered to every subscriber, so what a connection allocates
/// for its first delivery is in the baseline.
async fn relay_with_subscribers() -> (RelayProcess, Vec<Ws>, Ws) {
    let relay = RelayProcess::start(relay_binary().env("RTET_API_KEYS", KEY).args([
        "--connections-per-ip",
        "100000",
        "--handshakes-per-ip",
        "1000",
    ]));
    let ws_url = |path: &str| format!("ws://{}{path}", relay.addr);
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut ws = ws_from("127.0.0.1", &ws_url("/ws"), &[])
            .await
            .expect("subscriber connects");
        assert_eq!(
            auth(&mut ws, &token(&format!("s{i}"), &["news"])).await["type"],
            "auth_ok"
        );
        assert_eq!(subscribe(&mut ws, "news", None).await["type"], "subscribed");
        subscribers.push(ws);
    }
    let bearer = format!("Bearer {KEY}");
    let mut publisher = ws_from(
        "127.0.0.1",
        &ws_url("/publish"),
        &[("Authorization", &bearer)],
    )
    .await
    .expect("publisher connects");
    assert_eq!(
        publish(&mut publisher, "warm", "news", json!({})).await["type"],
        "ack"
    );
    let subscribers = read_events(subscribers, 1).await;
    (relay, subscribers, publisher)
}

/// Fails unless the relay's RSS grew by less than 16 KiB per subscriber since `before`.
fn assert_memory_given_back(relay: &RelayProcess, before: u64, what: &str) {
    let grown = relay.rss_kib().saturating_sub(before);
    let per_connection = grown / SUBSCRIBERS as u64;
    assert!(
        per_connection < 16,
        "the relay holds {per_connection} KiB more per connection ({grown} KiB in all) \
         after {SUBSCRIBERS} subscribers each {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_sent_large_events_give_the_memory_back_once_they_have_read_them() {
    let (relay, subscribers, mut publisher) = relay_with_subscribers().await;
    let before = relay.rss_kib();

    let padding = "x".repeat(PADDING);
    for n in 0..EVENTS {
        let answer = publish(
            &mut publisher,
            &format!("large{n}"),
            "news",
            json!({ "padding": padding }),
        )
        .await;
        assert_eq!(answer["type"], "ack", "{answer}");
    }
    // Once a subscriber has read an event's last byte, the relay's write of it
    // has returned.
    let subscribers = read_events(subscribers, EVENTS).await;

    assert_memory_given_back(
        &relay,
        before,
        &format!("read {EVENTS} events of {PADDING} bytes"),
    );
    drop(subscribers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_sent_a_large_frame_give_the_memory_back_once_it_is_answered() {
    let (relay, mut subscribers, mut publisher) = relay_with_subscribers().await;
    let before = relay.rss_kib();

    // A frame the relay must read whole to answer: the answer says how long the channel was.
    let channel = "x".repeat(PADDING);
    let refusal = format!("channel name is {PADDING} characters long");
    for ws in &mut subscribers {
        send(ws, json!({ "type": "unsubscribe", "channel": channel })).await;
        let answer = recv(ws).await;
        assert_eq!(answer["code"], "invalid", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&refusal),
            "{answer}"
        );
    }

    assert_memory_given_back(&relay, before, &format!("sent a frame of {PADDING} bytes"));
    // The connections are as they were: every subscriber still gets the channel's events.
    assert_eq!(
        publish(&mut publisher, "after", "news", json!({})).await["type"],
        "ack"
    );
    drop(read_events(subscribers, 1).await);
}

/// Each subscriber reads `count` events in order; the padding arrives whole.
async fn read_events(subscribers: Vec<Ws>, count: usize) -> Vec<Ws> {
    join_all(subscribers.into_iter().map(|mut ws| async move {
        for _ in 0..count {
            let event = recv(&mut ws).await;
            assert_eq!(event["type"], "event", "{event}");
            let padding = event["data"]["padding"].as_str().map_or(0, str::len);
            assert!(
                padding == 0 || padding == PADDING,
                "padding of {padding} bytes"
            );
        }
        ws
    }))
    .await
}
