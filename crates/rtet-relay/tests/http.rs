//! Plain HTTP: `/healthz`, `/metrics`, `POST /api/send-event`.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn healthz_answers_ok() {
    let relay = start(config()).await;
    assert_eq!(
        relay.http("GET", "/healthz", &[], b"").await,
        (200, "ok".into())
    );
    assert_eq!(relay.http("GET", "/nope", &[], b"").await.0, 404);
}

#[tokio::test]
async fn metrics_use_the_rtet_prefix_and_count_what_happens() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = relay.publisher().await;
    publish(&mut p, "m1", "public", json!(1)).await;
    publish(&mut p, "m2", "bad channel", json!(1)).await;
    recv(&mut sub).await;
    let (status, body) = relay.http("GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("rtet_"), "{line}");
    }
    assert_eq!(
        relay.metric("rtet_connections{role=\"subscriber\"}").await,
        1.0
    );
    assert_eq!(
        relay.metric("rtet_connections{role=\"publisher\"}").await,
        1.0
    );
    assert_eq!(relay.metric("rtet_events_published_total").await, 1.0);
    assert_eq!(relay.metric("rtet_deliveries_total").await, 1.0);
    assert_eq!(
        relay.metric("rtet_nacks_total{code=\"invalid\"}").await,
        1.0
    );
    assert_eq!(relay.metric("rtet_history_events").await, 1.0);
    assert_eq!(relay.metric("rtet_channels").await, 1.0);
    assert_eq!(relay.metric("rtet_subscriptions").await, 1.0);
    assert!(relay.metric("rtet_history_bytes").await > 0.0);
    assert!(body.contains("rtet_slow_consumer_disconnects_total 0"));
}

#[tokio::test]
async fn connections_accepted_total_counts_every_upgrade_by_role_while_the_gauge_counts_open_ones()
{
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://site.example".into()];
    let relay = start(cfg).await;
    let accepted_pub = "rtet_connections_accepted_total{role=\"publisher\"}";
    let accepted_sub = "rtet_connections_accepted_total{role=\"subscriber\"}";
    let (_, body) = relay.http("GET", "/metrics", &[], b"").await;
    assert!(
        body.contains(&format!("{accepted_pub} 0")) && body.contains(&format!("{accepted_sub} 0")),
        "both roles exported from the start: {body}"
    );

    // Three publisher connections, one after the other: the counter keeps all three.
    for i in 0..3 {
        let mut p = relay.publisher().await;
        publish(&mut p, &format!("a{i}"), "public", json!(i)).await;
        assert_eq!(relay.metric(accepted_pub).await, f64::from(i + 1));
        drop(p);
        relay
            .wait_metric("rtet_connections{role=\"publisher\"}", 0.0)
            .await;
    }
    // Refused before the upgrade: not counted.
    assert_eq!(
        relay.publisher_with(Some("wrong-key")).await.err(),
        Some(401)
    );
    assert_eq!(relay.publisher_with(None).await.err(), Some(401));
    assert_eq!(relay.metric(accepted_pub).await, 3.0);

    // Subscribers: a refused origin is closed with 1008 and not counted.
    let mut evil = relay
        .subscriber_with_origin(Some("https://evil.example"))
        .await
        .expect("upgraded, then closed");
    assert_eq!(closed_with(&mut evil).await, 1008);
    let _a = relay.subscriber().await;
    let _b = relay
        .subscriber_with_origin(Some("https://site.example"))
        .await
        .expect("allowed origin");
    assert_eq!(relay.metric(accepted_sub).await, 2.0);
    assert_eq!(
        relay.metric("rtet_connections{role=\"subscriber\"}").await,
        2.0
    );
    assert_eq!(relay.metric(accepted_pub).await, 3.0);
}

#[tokio::test]
async fn send_event_with_a_bearer_key_is_delivered() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let (status, body) = relay
        .send_event(Some(KEY), &json!({"type":"post_published","data":{"id":7}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["ok"].as_bool(),
            body["channel"].as_str(),
            body["seq"].as_u64()
        ),
        (Some(true), Some("public"), Some(1))
    );
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(
        rtet_protocol::validate_id(&id).is_ok(),
        "the relay makes an id"
    );
    let ev = recv(&mut sub).await;
    assert_eq!(
        (ev["event"].as_str(), ev["id"].as_str()),
        (Some("post_published"), Some(id.as_str()))
    );
    assert_eq!(ev["data"], json!({"id": 7}));
}

#[tokio::test]
async fn send_event_accepts_the_key_in_the_body_the_blog_recipe_way() {
    let relay = start(config()).await;
    let (status, body) = relay
        .send_event(
            None,
            &json!({"type":"e","channel":"user.1","id":"given","ts":123,"apiKey":KEY}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"ok":true,"id":"given","channel":"user.1","seq":1})
    );
    // Posted by curl without a content type, too.
    let raw = json!({"type":"e","apiKey":KEY}).to_string();
    let (status, _) = relay
        .http("POST", "/api/send-event", &[], raw.as_bytes())
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn send_event_answers_400_401_and_413_as_documented() {
    let mut cfg = config();
    cfg.limits.max_frame_bytes = 1000;
    let relay = start(cfg).await;
    let (status, body) = relay.send_event(None, &json!({"type":"e"})).await;
    assert_eq!(
        (status, body["ok"].as_bool(), body["code"].as_str()),
        (401, Some(false), Some("unauthorized"))
    );
    let (status, _) = relay
        .send_event(Some(&"z".repeat(40)), &json!({"type":"e"}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = relay
        .send_event(None, &json!({"type":"e","apiKey":"wrong"}))
        .await;
    assert_eq!(status, 401);
    for bad in [
        json!({"type":"bad name"}),
        json!({"data":1}),
        json!({"type":"e","channel":"a b"}),
        json!([1]),
    ] {
        let (status, body) = relay.send_event(Some(KEY), &bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid")),
            "{bad}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let (status, body) = relay
        .send_event(Some(KEY), &json!({"type":"e","data":"x".repeat(2000)}))
        .await;
    assert_eq!((status, body["code"].as_str()), (413, Some("too_large")));
    let (status, _) = relay
        .http(
            "POST",
            "/api/send-event",
            &[("Authorization", &format!("Bearer {KEY}"))],
            b"{not json",
        )
        .await;
    assert_eq!(status, 400);
    // Still serving.
    assert_eq!(
        relay.send_event(Some(KEY), &json!({"type":"e"})).await.0,
        200
    );
}

#[tokio::test]
async fn send_event_over_the_rate_is_429() {
    let mut cfg = config();
    cfg.limits.publishes_per_sec_per_key = 2;
    let relay = start(cfg).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(relay.send_event(Some(KEY), &json!({"type":"e"})).await.0);
    }
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        relay
            .metric("rtet_nacks_total{code=\"rate_limited\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn send_event_beyond_the_channel_limit_is_429_rate_limited() {
    let mut cfg = config();
    cfg.max_channels = 1;
    let relay = start(cfg).await;
    assert_eq!(
        relay.send_event(Some(KEY), &json!({"type":"e"})).await.0,
        200
    );
    let (status, body) = relay
        .send_event(Some(KEY), &json!({"type":"e","channel":"other"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
}
