//! Replay is charged to the subscriber: one replay is bounded, and so are
//! the bytes replayed to a connection and to a client address, so a few
//! small anonymous frames cannot pull the whole history again and again.

mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// Publishes `n` events of about 10 KB to `public`; returns the channel's epoch.
async fn fill_public(relay: &TestRelay, n: u64) -> String {
    let mut p = relay.publisher().await;
    for i in 1..=n {
        let ack = publish(
            &mut p,
            &format!("e{i}"),
            "public",
            json!("x".repeat(10_000)),
        )
        .await;
        assert_eq!(ack["seq"], i);
    }
    let mut probe = relay.subscriber().await;
    subscribe(&mut probe, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Subscribes with `since` and reads until the matching `unsubscribed`:
/// the `subscribed` frame and the bytes of the event frames replayed.
async fn replay_once(ws: &mut Ws, epoch: &str, seq: u64) -> (Value, usize) {
    send(
        ws,
        json!({"type":"subscribe","channel":"public","since":{"epoch":epoch,"seq":seq}}),
    )
    .await;
    send(ws, json!({"type":"unsubscribe","channel":"public"})).await;
    let subscribed = recv(ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let mut bytes = 0;
    loop {
        let frame = recv(ws).await;
        match frame["type"].as_str() {
            Some("event") => bytes += frame.to_string().len(),
            Some("unsubscribed") => return (subscribed, bytes),
            _ => panic!("unexpected {frame}"),
        }
    }
}

#[tokio::test]
async fn forty_subscribe_frames_pull_no_more_than_the_address_replay_budget() {
    let mut cfg = config();
    cfg.max_replay_bytes = 100_000;
    cfg.replay_bytes_per_connection = 150_000;
    cfg.replay_bytes_per_ip = 300_000;
    let per_ip = cfg.replay_bytes_per_ip as f64;
    let relay = start(cfg).await;
    let started = Instant::now();
    let epoch = fill_public(&relay, 60).await; // about 600 KB of history

    // The attack: ten anonymous connections from one address, four
    // subscribes each, alternating "everything" (seq 0) and the last 8 events.
    let mut pulled = 0;
    let (mut recovered, mut cut) = (0, 0);
    let mut attackers = Vec::new();
    for _ in 0..10 {
        attackers.push(relay.subscriber().await);
    }
    for ws in &mut attackers {
        for round in 0..4 {
            let since = if round % 2 == 0 { 0 } else { 52 };
            let (subscribed, bytes) = replay_once(ws, &epoch, since).await;
            pulled += bytes;
            if subscribed["recovered"] == true {
                assert_eq!(since, 52, "all 600 KB is over the one-replay bound");
                recovered += 1;
            } else {
                assert_eq!(bytes, 0, "not recovered: nothing replayed");
                cut += 1;
            }
        }
    }
    // The budget refills over a minute; allow what refilled while the test ran.
    let bound = per_ip * (1.0 + started.elapsed().as_secs_f64() / 60.0);
    assert!(
        (pulled as f64) <= bound,
        "the attacker pulled {pulled} bytes; the address's budget allows {bound:.0}"
    );
    assert!(
        recovered >= 1 && cut > 20,
        "some replays were served ({recovered}), the rest cut ({cut})"
    );
    assert!(relay.metric("rtet_replays_cut_total").await >= cut as f64);
    assert_eq!(
        relay.metric("rtet_replay_bytes_total").await,
        pulled as f64,
        "every replayed byte is counted"
    );

    // Another visitor, on another address, resumes in full meanwhile.
    let mut visitor = relay.subscriber_from("127.0.0.2", &[]).await.unwrap();
    let (subscribed, bytes) = replay_once(&mut visitor, &epoch, 52).await;
    assert_eq!(subscribed["recovered"], true);
    assert!(bytes > 80_000, "all 8 events replayed: {bytes} bytes");
}

#[tokio::test]
async fn a_connection_spends_its_own_replay_budget_and_a_far_resume_is_not_recovered() {
    let mut cfg = config();
    cfg.max_replay_bytes = 100_000;
    cfg.replay_bytes_per_connection = 150_000;
    let relay = start(cfg).await;
    let epoch = fill_public(&relay, 20).await;
    let mut sub = relay.subscriber().await;

    // A resume within the bounds replays every later event, in order.
    let s = subscribe(&mut sub, "public", Some((&epoch, 12))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["seq"].as_u64()),
        (Some(true), Some(20))
    );
    for seq in 13..=20 {
        assert_eq!(recv(&mut sub).await["seq"], seq);
    }
    send(&mut sub, json!({"type":"unsubscribe","channel":"public"})).await;
    assert_eq!(recv(&mut sub).await["type"], "unsubscribed");

    // A resume from further back than one replay may reach is not recovered:
    // nothing is replayed, and live events follow from the latest seq.
    let s = subscribe(&mut sub, "public", Some((&epoch, 0))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["seq"].as_u64()),
        (Some(false), Some(20))
    );
    let mut p = relay.publisher().await;
    publish(&mut p, "live", "public", json!(1)).await;
    let live = recv(&mut sub).await;
    assert_eq!(
        (live["seq"].as_u64(), live["id"].as_str()),
        (Some(21), Some("live"))
    );
    send(&mut sub, json!({"type":"unsubscribe","channel":"public"})).await;
    assert_eq!(recv(&mut sub).await["type"], "unsubscribed");

    // 80 KB of this connection's 150 KB are spent: another 80 KB is refused to
    // it, though its address (and another connection) could still have it.
    let (s, bytes) = replay_once(&mut sub, &epoch, 12).await;
    assert_eq!((s["recovered"].as_bool(), bytes), (Some(false), 0));
    let mut other = relay.subscriber().await;
    let (s, bytes) = replay_once(&mut other, &epoch, 12).await;
    assert_eq!(s["recovered"], true);
    assert!(bytes > 80_000);
}
