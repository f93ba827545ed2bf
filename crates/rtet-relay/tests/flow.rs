//! Slow consumers beside fast ones, and graceful shutdown.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_closed_4408_while_a_fast_one_gets_everything() {
    let mut cfg = config();
    cfg.limits.subscriber_queue_frames = 16;
    cfg.limits.history_events = 100_000;
    let relay = start(cfg).await;
    let mut fast = relay.subscriber().await;
    let mut slow = relay.subscriber().await;
    subscribe(&mut fast, "public", None).await;
    let epoch = subscribe(&mut slow, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p = relay.publisher().await;
    let payload = "x".repeat(16 * 1024);
    // Publish until the slow one (which never reads) has overflowed; the fast one
    // receives each event before the next is sent, so it never falls behind.
    let mut published = 0u64;
    loop {
        published += 1;
        let ack = publish(&mut p, &format!("e{published}"), "public", json!(payload)).await;
        assert_eq!(ack["seq"], published);
        let ev = recv(&mut fast).await;
        assert_eq!(ev["seq"], published, "the fast subscriber is never delayed");
        if published.is_multiple_of(50)
            && relay.metric("rtet_slow_consumer_disconnects_total").await == 1.0
        {
            break;
        }
        assert!(published < 20_000, "the slow subscriber never overflowed");
    }
    // More events after the slow one is gone still reach the fast one.
    for _ in 0..10 {
        published += 1;
        publish(&mut p, &format!("e{published}"), "public", json!(1)).await;
        assert_eq!(recv(&mut fast).await["seq"], published);
    }
    // The slow one got an unbroken prefix of the events, then close 4408.
    let mut last = 0u64;
    let code = loop {
        match next(&mut slow).await {
            Got::Json(ev) => {
                assert_eq!(ev["seq"], last + 1, "no gap in what was delivered");
                last += 1;
            }
            Got::Close(code) => break code,
            Got::End => panic!("closed without a close frame"),
        }
    };
    assert_eq!(code, 4408);
    assert!(last < published);
    // It resumes with since and gets the rest, recovered.
    let mut resumed = relay.subscriber().await;
    let s = subscribe(&mut resumed, "public", Some((&epoch, last))).await;
    assert_eq!(s["recovered"], true);
    for seq in last + 1..=published {
        assert_eq!(recv(&mut resumed).await["seq"], seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_publishes_and_closes_everyone_with_1001() {
    let mut relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = relay.publisher().await;
    for i in 1..=500 {
        p.feed(Message::Text(
            publish_frame(&format!("s{i}"), "public", json!(i))
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    }
    p.flush().await.unwrap();
    // Once the relay is answering, stop it.
    assert_eq!(recv(&mut p).await["seq"], 1);
    relay.trigger_shutdown();
    // Every ack the publisher gets is in order, and then it is told 1001.
    let mut acked = 1u64;
    let code = loop {
        match next(&mut p).await {
            Got::Json(ack) => {
                assert_eq!(ack["type"], "ack");
                assert_eq!(ack["seq"], acked + 1);
                acked += 1;
            }
            Got::Close(code) => break code,
            Got::End => panic!("publisher closed without a close frame"),
        }
    };
    assert_eq!(code, 1001);
    // The subscriber receives every acked event, then 1001.
    let mut seen = 0u64;
    let code = loop {
        match next(&mut sub).await {
            Got::Json(ev) => {
                seen += 1;
                assert_eq!(ev["seq"], seen);
            }
            Got::Close(code) => break code,
            Got::End => panic!("subscriber closed without a close frame"),
        }
    };
    assert_eq!(code, 1001);
    assert_eq!(seen, acked, "every acked event reached the subscriber");
    let addr = relay.addr;
    relay.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
