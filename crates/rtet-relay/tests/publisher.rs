//! `/publish`: auth before upgrade, ack/nack per publish, order, dedupe, limits.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn publish_without_or_with_a_wrong_key_is_401_before_upgrade() {
    let relay = start(config()).await;
    assert_eq!(relay.publisher_with(None).await.err(), Some(401));
    assert_eq!(
        relay
            .publisher_with(Some("x".repeat(40).as_str()))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        relay
            .metric("rtet_auth_failures_total{role=\"publisher\"}")
            .await,
        2.0
    );
    // The relay keeps serving: a good key still works.
    let mut p = relay.publisher().await;
    let ack = publish(&mut p, "a", "public", json!(1)).await;
    assert_eq!(ack["type"], "ack");
}

#[tokio::test]
async fn every_configured_key_is_accepted() {
    let mut cfg = config();
    cfg.api_keys.push(KEY2.to_owned());
    let relay = start(cfg).await;
    let mut p = relay
        .publisher_with(Some(KEY2))
        .await
        .expect("second key works");
    assert_eq!(
        publish(&mut p, "k2", "public", json!(null)).await["type"],
        "ack"
    );
}

#[tokio::test]
async fn pipelined_publishes_get_one_ack_each_with_increasing_seq_in_send_order() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut sub, "public", None).await["type"],
        "subscribed"
    );
    let mut p = relay.publisher().await;
    for i in 0..200 {
        p.feed(Message::Text(
            publish_frame(&format!("id-{i}"), "public", json!({"i": i}))
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    }
    p.flush().await.unwrap();
    for i in 0..200u64 {
        let ack = recv(&mut p).await;
        assert_eq!(
            ack,
            json!({"type":"ack","id":format!("id-{i}"),"channel":"public","seq":i + 1})
        );
    }
    for i in 0..200u64 {
        let ev = recv(&mut sub).await;
        assert_eq!(ev["seq"], i + 1);
        assert_eq!(ev["id"], format!("id-{i}"));
        assert_eq!(ev["data"], json!({"i": i}));
        assert_eq!(ev["event"], "test_event");
        assert!(
            ev["ts"].as_u64().unwrap() > 1_600_000_000_000,
            "relay sets ts"
        );
    }
}

#[tokio::test]
async fn a_repeated_channel_and_id_is_acked_with_the_original_seq_and_not_delivered_again() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = relay.publisher().await;
    let first = publish(&mut p, "same", "public", json!({"v": 1})).await;
    assert_eq!(first["seq"], 1);
    // A retry (even from another connection) gets the same seq.
    let mut p2 = relay.publisher().await;
    let again = publish(&mut p2, "same", "public", json!({"v": 1})).await;
    assert_eq!(again, first);
    // The same id on another channel is a different event.
    let mut other = relay.subscriber().await;
    subscribe(&mut other, "public", None).await;
    let marker = publish(&mut p, "next", "public", json!({"v": 2})).await;
    assert_eq!(marker["seq"], 2);
    // The subscriber sees "same" once, then "next".
    assert_eq!(recv(&mut sub).await["id"], "same");
    assert_eq!(recv(&mut sub).await["id"], "next");
    assert_eq!(relay.metric("rtet_duplicates_total").await, 1.0);
    // Over HTTP too.
    let (status, body) = relay
        .send_event(
            Some(KEY),
            &json!({"type":"e","id":"same","channel":"public"}),
        )
        .await;
    assert_eq!((status, &body["seq"]), (200, &json!(1)));
}

#[tokio::test]
async fn bad_publishes_get_a_nack_invalid_and_the_connection_keeps_working() {
    let relay = start(config()).await;
    let mut p = relay.publisher().await;
    let cases = [
        r#"{"type":"publish","id":"b1","channel":"bad channel","event":"e"}"#,
        r#"{"type":"publish","id":"b2","channel":"public"}"#,
        r#"{"type":"publish","id":"b3","channel":"public","event":"no/slash"}"#,
        r#"{"type":"publish","id":"","channel":"public","event":"e"}"#,
    ];
    for (i, text) in cases.iter().enumerate() {
        send_text(&mut p, text).await;
        let nack = recv(&mut p).await;
        assert_eq!(nack["type"], "nack", "{text}");
        assert_eq!(nack["code"], "invalid", "{text}");
        if i < 3 {
            assert_eq!(nack["id"], format!("b{}", i + 1));
        }
        assert!(!nack["message"].as_str().unwrap().is_empty());
    }
    // Frames that are not a publish at all get an `error`, as the protocol's transport rule says.
    for text in [
        "not json",
        "[1]",
        r#"{"type":"subscribe","channel":"public"}"#,
        r#"{"id":"x"}"#,
    ] {
        send_text(&mut p, text).await;
        let err = recv(&mut p).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("invalid")),
            "{text}"
        );
    }
    p.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let err = recv(&mut p).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("invalid"))
    );
    assert_eq!(
        publish(&mut p, "good", "public", json!(1)).await["type"],
        "ack"
    );
    assert_eq!(
        relay.metric("rtet_nacks_total{code=\"invalid\"}").await,
        9.0
    );
}

#[tokio::test]
async fn oversized_data_is_nacked_too_large_and_huge_frames_close_1009() {
    let mut cfg = config();
    cfg.limits.max_frame_bytes = 1000;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    let nack = publish(&mut p, "big", "public", json!("x".repeat(1200))).await;
    assert_eq!(nack["type"], "nack");
    assert_eq!(nack["code"], "too_large");
    assert_eq!(nack["id"], "big");
    assert!(nack["message"].as_str().unwrap().contains("limit is 1000"));
    // Small data but a frame over the limit (a long event name is not possible, so pad with an unknown field).
    let mut frame = publish_frame("pad", "public", json!(1));
    frame["padding"] = json!("p".repeat(1000));
    send(&mut p, frame).await;
    let nack = recv(&mut p).await;
    assert_eq!(
        (nack["code"].as_str(), nack["id"].as_str()),
        (Some("too_large"), Some("pad"))
    );
    assert_eq!(
        publish(&mut p, "ok", "public", json!(1)).await["type"],
        "ack"
    );
    // Far beyond the limit: the connection is closed with 1009.
    send(
        &mut p,
        publish_frame("huge", "public", json!("y".repeat(10_000))),
    )
    .await;
    assert_eq!(closed_with(&mut p).await, 1009);
    // Everyone else is still served.
    let mut p2 = relay.publisher().await;
    assert_eq!(
        publish(&mut p2, "after", "public", json!(1)).await["type"],
        "ack"
    );
}

#[tokio::test]
async fn publishes_beyond_the_per_key_rate_are_nacked_rate_limited() {
    let mut cfg = config();
    cfg.limits.publishes_per_sec_per_key = 3;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let answer = publish(&mut p, &format!("r{i}"), "public", json!(i)).await;
        codes.push(answer["code"].as_str().unwrap_or("ack").to_owned());
    }
    assert_eq!(&codes[..3], ["ack", "ack", "ack"]);
    assert!(codes[3..].iter().any(|c| c == "rate_limited"), "{codes:?}");
    assert!(codes.iter().all(|c| c == "ack" || c == "rate_limited"));
    // The budget is per key, over every connection and HTTP.
    let (status, body) = relay
        .send_event(Some(KEY), &json!({"type":"e","id":"http"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
}

#[tokio::test]
async fn after_a_rate_limited_nack_later_publishes_wait_for_the_refused_one() {
    // Pipelined publishers must keep their order: once X is refused, nothing
    // sent after X on that connection may be stored before X is.
    let mut cfg = config();
    cfg.limits.publishes_per_sec_per_key = 20;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    let mut refused = None;
    for i in 0..100 {
        let answer = publish(&mut p, &format!("r{i}"), "public", json!(i)).await;
        if answer["type"] == "nack" {
            assert_eq!(answer["code"], "rate_limited", "{answer}");
            refused = Some(i);
            break;
        }
    }
    let x = refused.expect("the bucket of 20 ran out within 100 publishes");
    // A later event is held back, whatever tokens have come back meanwhile.
    let held = publish(&mut p, "later", "public", json!("later")).await;
    assert_eq!(
        (held["type"].as_str(), held["code"].as_str()),
        (Some("nack"), Some("rate_limited"))
    );
    let message = held["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("r{x}")), "{message}");
    // Sending X again (until a token is back) releases the hold, in order.
    let ack = publish_until_acked(&mut p, &format!("r{x}"), json!(x)).await;
    let later = publish_until_acked(&mut p, "later", json!("later")).await;
    assert!(
        later["seq"].as_u64() > ack["seq"].as_u64(),
        "{ack} then {later}"
    );
    // A new connection starts without a hold (it may wait for tokens, never for X).
    let mut p2 = relay.publisher().await;
    let fresh = publish_until_acked(&mut p2, "fresh", json!(1)).await;
    assert!(fresh["seq"].as_u64() > later["seq"].as_u64());
}

/// Publishes to `public` until acked; every refusal on the way must be a
/// plain `rate_limited` (waiting for tokens), never a hold for another event.
async fn publish_until_acked(p: &mut Ws, id: &str, data: serde_json::Value) -> serde_json::Value {
    loop {
        let a = publish(p, id, "public", data.clone()).await;
        if a["type"] == "ack" {
            return a;
        }
        assert_eq!(a["code"], "rate_limited", "{a}");
        let message = a["message"].as_str().unwrap_or_default();
        assert!(!message.contains("held back"), "{id}: {message}");
    }
}

#[tokio::test]
async fn publishing_beyond_the_channel_limit_is_nacked_rate_limited_to_retry_later() {
    let mut cfg = config();
    cfg.max_channels = 2;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    assert_eq!(publish(&mut p, "1", "a", json!(1)).await["type"], "ack");
    assert_eq!(publish(&mut p, "2", "b", json!(1)).await["type"], "ack");
    let nack = publish(&mut p, "3", "c", json!(1)).await;
    assert_eq!(
        (nack["type"].as_str(), nack["code"].as_str()),
        (Some("nack"), Some("rate_limited"))
    );
    // A refused event holds later ones back (order), so go on on a new connection.
    let mut p = relay.publisher().await;
    assert_eq!(
        publish(&mut p, "4", "a", json!(1)).await["seq"],
        2,
        "existing channels still work"
    );
    assert_eq!(
        relay
            .metric("rtet_budget_refusals_total{budget=\"channels\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn data_nested_deeper_than_the_limit_is_refused_invalid_and_never_delivered() {
    let relay = start(config()).await;
    let depth = rtet_protocol::Limits::default().max_data_depth;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = relay.publisher().await;
    assert_eq!(
        publish(&mut p, "ok", "public", nested(depth)).await["type"],
        "ack"
    );
    let nack = publish(&mut p, "deep", "public", nested(depth + 1)).await;
    assert_eq!(
        (
            nack["type"].as_str(),
            nack["id"].as_str(),
            nack["code"].as_str()
        ),
        (Some("nack"), Some("deep"), Some("invalid"))
    );
    // 30,000 levels: fanned out, such data crashes subscribers' recursive parsers.
    let deepest = format!(
        r#"{{"type":"publish","id":"deepest","channel":"public","event":"e","data":{}{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    send_text(&mut p, &deepest).await;
    let nack = recv(&mut p).await;
    assert_eq!(
        (nack["id"].as_str(), nack["code"].as_str()),
        (Some("deepest"), Some("invalid"))
    );
    assert_eq!(
        publish(&mut p, "after", "public", json!(1)).await["type"],
        "ack"
    );
    assert_eq!(recv(&mut sub).await["id"], "ok");
    assert_eq!(
        recv(&mut sub).await["id"],
        "after",
        "nothing deeper in between"
    );
    let (status, body) = relay
        .send_event(Some(KEY), &json!({"type":"e","data":nested(depth + 1)}))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid")));
}
