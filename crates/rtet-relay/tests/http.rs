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
    assert_eq!(relay.metric("rtet_channels").await, 1.0);
    assert_eq!(relay.metric("rtet_subscriptions").await, 1.0);
    if on_redis() {
        // Redis holds history and dedupe records: a node's own count would be a misleading 0.
        for gauge in [
            "rtet_history_events",
            "rtet_history_bytes",
            "rtet_dedupe_entries",
        ] {
            assert!(!body.contains(gauge), "{gauge} on the Redis engine");
        }
    } else {
        assert_eq!(relay.metric("rtet_history_events").await, 1.0);
        assert!(relay.metric("rtet_history_bytes").await > 0.0);
        assert_eq!(relay.metric("rtet_dedupe_entries").await, 1.0);
    }
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

/// How a raw HTTP exchange ended.
#[derive(Debug, PartialEq)]
enum Answer {
    Status(u16),
    /// The relay cut the connection (after answering, while we were still sending).
    Reset,
    /// Nothing within the read timeout, or garbage.
    Nothing,
}

/// Reads an HTTP answer's status from a raw stream.
fn status_of(stream: &mut std::net::TcpStream) -> Answer {
    use std::io::Read;
    let mut raw = Vec::new();
    let result = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    match text.split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(status) => Answer::Status(status),
        None => match result {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Answer::Reset,
            _ => Answer::Nothing,
        },
    }
}

#[test]
fn a_body_without_a_key_is_refused_before_it_is_read_and_a_trickled_one_keeps_memory_bounded() {
    use std::io::Write;
    let relay = RelayProcess::start(relay_binary().env("RTET_API_KEYS", KEY));
    let addr = relay.addr.clone();
    let health = http_blocking(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let before = relay.rss_kib();

    // Announced larger than a body key may be: refused with 401 while the
    // client has sent none of the body.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "POST /api/send-event HTTP/1.1\r\nHost: x\r\nContent-Length: 65500\r\n\r\n"
    )
    .unwrap();
    assert_eq!(status_of(&mut s), Answer::Status(401));

    // The trickle attack: 65,500 one-byte chunks, no key, on two connections
    // at once. Kept as a list of chunks, each would hold about 265 MB.
    let trickles: Vec<_> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_nodelay(true).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                    .unwrap();
                s.set_write_timeout(Some(std::time::Duration::from_secs(20)))
                    .unwrap();
                let head = "POST /api/send-event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
                s.write_all(head.as_bytes()).unwrap();
                // One chunk per write, paced so that each arrives on its own, as a trickle does.
                for _ in 0..65_500 {
                    if s.write_all(b"1\r\nx\r\n").is_err() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                status_of(&mut s)
            })
        })
        .collect();
    for t in trickles {
        let answer = t.join().unwrap();
        assert!(
            matches!(answer, Answer::Status(401) | Answer::Reset),
            "refused (401, or the connection cut after it): {answer:?}"
        );
    }
    let health = http_blocking(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "still serving: {health}"
    );
    let grown = relay.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the relay's RSS grew by {grown} KiB under the trickle attack"
    );
}

#[tokio::test]
async fn a_body_key_is_read_only_from_a_small_body() {
    let relay = start(config()).await;
    let big = json!({"type":"e","apiKey":KEY,"data":"x".repeat(9000)});
    let (status, body) = relay.send_event(None, &big).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert!(
        body["message"].as_str().unwrap().contains("Authorization"),
        "{body}"
    );
    let (status, _) = relay
        .send_event(Some(KEY), &json!({"type":"e","data":"x".repeat(9000)}))
        .await;
    assert_eq!(
        status, 200,
        "with the key in the header, up to the frame limit"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let mut cfg = config();
    cfg.http_body_timeout = std::time::Duration::from_millis(200);
    let relay = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let head = format!(
        "POST /api/send-event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n{{\"type\":"
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn http_requests_count_in_the_per_ip_limit() {
    let mut cfg = config();
    cfg.limits.connections_per_ip = 1;
    let relay = start(cfg).await;
    // A publish whose body is still coming holds the one place of 127.0.0.1.
    let mut slow = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let head = format!(
        "POST /api/send-event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n{{"
    );
    tokio::io::AsyncWriteExt::write_all(&mut slow, head.as_bytes())
        .await
        .unwrap();
    let refused = async {
        loop {
            if relay.send_event(Some(KEY), &json!({"type":"e"})).await.0 == 429 {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), refused)
        .await
        .expect("a second request from the same address is refused with 429");
    assert!(relay
        .subscriber_with_origin(None)
        .await
        .is_err_and(|s| s == 429));
    drop(slow);
    let admitted = async {
        loop {
            if relay.send_event(Some(KEY), &json!({"type":"e"})).await.0 == 200 {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), admitted)
        .await
        .expect("the place is free again once the slow request is gone");
}

#[tokio::test]
async fn metrics_answer_only_local_clients_that_came_through_no_proxy_by_default() {
    let relay = start(config()).await;
    assert_eq!(relay.http("GET", "/metrics", &[], b"").await.0, 200);
    for proxied in [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Real-IP", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.7"),
    ] {
        let (status, body) = relay.http("GET", "/metrics", &[proxied], b"").await;
        assert_eq!(status, 403, "{proxied:?}");
        assert!(body.contains("--metrics-token"), "{body}");
    }
}

#[tokio::test]
async fn with_a_metrics_token_metrics_need_it() {
    const TOKEN: &str = "metrics-token-0123456789abcdef0123";
    let mut cfg = config();
    cfg.metrics_token = Some(TOKEN.into());
    let relay = start(cfg).await;
    assert_eq!(relay.http("GET", "/metrics", &[], b"").await.0, 401);
    let wrong = format!("Bearer {KEY}");
    assert_eq!(
        relay
            .http("GET", "/metrics", &[("Authorization", &wrong)], b"")
            .await
            .0,
        401
    );
    let right = format!("Bearer {TOKEN}");
    let (status, body) = relay
        .http(
            "GET",
            "/metrics",
            &[
                ("Authorization", &right),
                ("X-Forwarded-For", "203.0.113.7"),
            ],
            b"",
        )
        .await;
    assert_eq!(status, 200, "the token works through a proxy too");
    assert!(body.contains("rtet_events_published_total"));
}
