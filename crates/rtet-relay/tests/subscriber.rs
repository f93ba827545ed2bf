//! `/ws`: anonymous and token subscriptions, errors, replay, and every limit.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn anonymous_subscriber_gets_public_events_but_not_other_channels() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    let s = subscribe(&mut sub, "public", None).await;
    assert_eq!(s["type"], "subscribed");
    assert_eq!(
        (
            s["channel"].as_str(),
            s["seq"].as_u64(),
            s["recovered"].as_bool()
        ),
        (Some("public"), Some(0), Some(false))
    );
    assert!(!s["epoch"].as_str().unwrap().is_empty());
    let err = subscribe(&mut sub, "user.42", None).await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["channel"].as_str()
        ),
        (Some("error"), Some("unauthorized"), Some("user.42"))
    );
    let mut p = relay.publisher().await;
    publish(&mut p, "e1", "user.42", json!(1)).await;
    publish(&mut p, "e2", "public", json!({"hello": "world"})).await;
    let ev = recv(&mut sub).await;
    assert_eq!(
        (ev["id"].as_str(), ev["channel"].as_str()),
        (Some("e2"), Some("public"))
    );
    assert_eq!(ev["data"], json!({"hello": "world"}));
}

#[tokio::test]
async fn configured_anonymous_channels_replace_the_default() {
    let mut cfg = config();
    cfg.anonymous_channels = vec!["news".into()];
    let relay = start(cfg).await;
    let mut sub = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut sub, "news", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut sub, "public", None).await["code"],
        "unauthorized"
    );
}

#[tokio::test]
async fn token_grants_exactly_its_channels() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    let ok = auth(&mut sub, &token("42", &["user.42", "role.administrator"])).await;
    assert_eq!(ok["type"], "auth_ok");
    assert_eq!(ok["sub"], "42");
    assert!(ok["exp"].as_u64().unwrap() > 0);
    assert_eq!(
        subscribe(&mut sub, "user.42", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut sub, "role.administrator", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut sub, "public", None).await["type"],
        "subscribed",
        "anonymous channels stay open"
    );
    let err = subscribe(&mut sub, "user.7", None).await;
    assert_eq!(
        (err["code"].as_str(), err["channel"].as_str()),
        (Some("forbidden"), Some("user.7"))
    );
    assert_eq!(err["message"], "token does not grant user.7");
    let mut p = relay.publisher().await;
    publish(&mut p, "x", "user.7", json!(1)).await;
    publish(&mut p, "y", "user.42", json!(2)).await;
    assert_eq!(recv(&mut sub).await["id"], "y");
}

#[tokio::test]
async fn a_token_signed_with_any_configured_key_is_accepted() {
    let mut cfg = config();
    cfg.api_keys.push(KEY2.into());
    let relay = start(cfg).await;
    let mut sub = relay.subscriber().await;
    assert_eq!(
        auth(&mut sub, &token_with(KEY2, "1", &["user.1"], 60)).await["type"],
        "auth_ok"
    );
}

#[tokio::test]
async fn invalid_tokens_get_unauthorized_and_close_4401() {
    let relay = start(config()).await;
    let bad = [
        token_with(&"w".repeat(40), "1", &["user.1"], 60),
        "not.a.jwt".to_owned(),
        "a".repeat(5000),
        // HS512 is refused even with the right key.
        jsonwebtoken_hs512(),
    ];
    for t in bad {
        let mut sub = relay.subscriber().await;
        let err = auth(&mut sub, &t).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("unauthorized"))
        );
        assert_eq!(closed_with(&mut sub).await, 4401);
    }
    assert_eq!(
        relay
            .metric("rtet_auth_failures_total{role=\"subscriber\"}")
            .await,
        4.0
    );
}

/// An HS512 token signed with the right key, built by hand.
fn jsonwebtoken_hs512() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
    let exp = rtet_protocol::token::now_secs() + 300;
    let body = b64.encode(format!(
        r#"{{"sub":"1","channels":["user.1"],"exp":{exp}}}"#
    ));
    let sig = hmac_sha512(KEY.as_bytes(), format!("{header}.{body}").as_bytes());
    format!("{header}.{body}.{}", b64.encode(sig))
}

fn hmac_sha512(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn the_connection_is_closed_with_4401_when_the_token_expires_unless_renewed() {
    let mut cfg = config();
    cfg.limits.token_leeway = Duration::ZERO;
    let relay = start(cfg).await;
    let short = token_with(KEY, "9", &["user.9"], 1);
    // A: keeps the short token. B: renews it with a long one.
    let mut a = relay.subscriber().await;
    let mut b = relay.subscriber().await;
    assert_eq!(auth(&mut a, &short).await["type"], "auth_ok");
    assert_eq!(auth(&mut b, &short).await["type"], "auth_ok");
    subscribe(&mut a, "user.9", None).await;
    subscribe(&mut b, "user.9", None).await;
    let renewed = auth(&mut b, &token("9", &["user.9"])).await;
    assert_eq!(renewed["type"], "auth_ok");
    assert_eq!(closed_with(&mut a).await, 4401);
    // A's expiry has passed, and B's old token expired at the same moment: B is still served.
    let mut p = relay.publisher().await;
    publish(&mut p, "after-expiry", "user.9", json!(1)).await;
    assert_eq!(recv(&mut b).await["id"], "after-expiry");
}

#[tokio::test]
async fn reauth_with_fewer_channels_unsubscribes_and_a_different_subject_closes_4403() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    auth(&mut sub, &token("5", &["user.5", "role.editor"])).await;
    subscribe(&mut sub, "user.5", None).await;
    subscribe(&mut sub, "role.editor", None).await;
    let ok = auth(&mut sub, &token("5", &["user.5"])).await;
    assert_eq!(ok["type"], "auth_ok");
    assert_eq!(
        recv(&mut sub).await,
        json!({"type":"unsubscribed","channel":"role.editor"})
    );
    let mut p = relay.publisher().await;
    publish(&mut p, "r", "role.editor", json!(1)).await;
    publish(&mut p, "u", "user.5", json!(1)).await;
    assert_eq!(recv(&mut sub).await["id"], "u");
    let err = auth(&mut sub, &token("6", &["user.6"])).await;
    assert_eq!(err["code"], "forbidden");
    assert_eq!(closed_with(&mut sub).await, 4403);
}

#[tokio::test]
async fn unsubscribe_stops_events() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    auth(&mut sub, &token("1", &["user.1"])).await;
    subscribe(&mut sub, "user.1", None).await;
    send(&mut sub, json!({"type":"unsubscribe","channel":"public"})).await;
    assert_eq!(
        recv(&mut sub).await,
        json!({"type":"unsubscribed","channel":"public"})
    );
    let mut p = relay.publisher().await;
    publish(&mut p, "gone", "public", json!(1)).await;
    publish(&mut p, "here", "user.1", json!(1)).await;
    assert_eq!(recv(&mut sub).await["id"], "here");
}

#[tokio::test]
async fn malformed_frames_get_error_invalid_and_the_connection_stays_open() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    for text in [
        "not json",
        "[]",
        r#"{"channel":"public"}"#,
        r#"{"type":"dance"}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","channel":"bad name!"}"#,
        r#"{"type":"subscribe","channel":"public","since":{"epoch":1}}"#,
    ] {
        send_text(&mut sub, text).await;
        let err = recv(&mut sub).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("invalid")),
            "{text}"
        );
    }
    sub.send(Message::Binary(vec![0, 1].into())).await.unwrap();
    assert_eq!(recv(&mut sub).await["code"], "invalid");
    assert_eq!(
        subscribe(&mut sub, "public", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut sub, "public", None).await["code"],
        "invalid",
        "already subscribed"
    );
    // Unknown fields are ignored.
    send(
        &mut sub,
        json!({"type":"unsubscribe","channel":"public","extra":true}),
    )
    .await;
    assert_eq!(recv(&mut sub).await["type"], "unsubscribed");
}

#[tokio::test]
async fn replay_since_returns_every_later_event_in_order_before_live_ones() {
    let relay = start(config()).await;
    let mut p = relay.publisher().await;
    let mut first = relay.subscriber().await;
    let s = subscribe(&mut first, "public", None).await;
    let epoch = s["epoch"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        publish(&mut p, &format!("e{i}"), "public", json!(i)).await;
    }
    let mut again = relay.subscriber().await;
    let s = subscribe(&mut again, "public", Some((&epoch, 2))).await;
    assert_eq!(
        s,
        json!({"type":"subscribed","channel":"public","epoch":epoch,"seq":5,"recovered":true})
    );
    publish(&mut p, "e6", "public", json!(6)).await;
    for seq in 3..=6u64 {
        let ev = recv(&mut again).await;
        assert_eq!(
            (ev["seq"].as_u64(), ev["id"].as_str()),
            (Some(seq), Some(format!("e{seq}").as_str()))
        );
    }
    // Already up to date: recovered, nothing replayed.
    let mut current = relay.subscriber().await;
    let s = subscribe(&mut current, "public", Some((&epoch, 6))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["seq"].as_u64()),
        (Some(true), Some(6))
    );
    publish(&mut p, "e7", "public", json!(7)).await;
    assert_eq!(recv(&mut current).await["seq"], 7);
}

#[tokio::test]
async fn replay_is_not_recovered_for_another_epoch_or_history_that_does_not_reach_back() {
    let mut cfg = config();
    cfg.limits.history_events = 3;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    for i in 1..=6 {
        publish(&mut p, &format!("e{i}"), "public", json!(i)).await;
    }
    let mut probe = relay.subscriber().await;
    let epoch = subscribe(&mut probe, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut old = relay.subscriber().await;
    let s = subscribe(&mut old, "public", Some((&epoch, 1))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["seq"].as_u64()),
        (Some(false), Some(6))
    );
    let mut restarted = relay.subscriber().await;
    let s = subscribe(&mut restarted, "public", Some(("some-other-epoch", 5))).await;
    assert_eq!(s["recovered"], false);
    let mut edge = relay.subscriber().await;
    let s = subscribe(&mut edge, "public", Some((&epoch, 3))).await;
    assert_eq!(s["recovered"], true, "seq 4..6 are all in history");
    // Nothing was replayed to the unrecovered ones: their next frame is the next live event.
    publish(&mut p, "e7", "public", json!(7)).await;
    assert_eq!(recv(&mut old).await["seq"], 7);
    assert_eq!(recv(&mut restarted).await["seq"], 7);
    for seq in 4..=7u64 {
        assert_eq!(recv(&mut edge).await["seq"], seq);
    }
}

#[tokio::test]
async fn a_new_relay_has_a_new_epoch() {
    let a = start(config()).await;
    let b = start(config()).await;
    let mut sa = a.subscriber().await;
    let mut sb = b.subscriber().await;
    let ea = subscribe(&mut sa, "public", None).await["epoch"].clone();
    let eb = subscribe(&mut sb, "public", None).await["epoch"].clone();
    assert_ne!(ea, eb);
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let mut cfg = config();
    cfg.limits.max_subscriptions = 2;
    let relay = start(cfg).await;
    let mut sub = relay.subscriber().await;
    auth(&mut sub, &token("1", &["a", "b", "c"])).await;
    assert_eq!(subscribe(&mut sub, "a", None).await["type"], "subscribed");
    assert_eq!(subscribe(&mut sub, "b", None).await["type"], "subscribed");
    let err = subscribe(&mut sub, "c", None).await;
    assert_eq!(
        (err["code"].as_str(), err["channel"].as_str()),
        (Some("forbidden"), Some("c"))
    );
    send(&mut sub, json!({"type":"unsubscribe","channel":"a"})).await;
    recv(&mut sub).await;
    assert_eq!(subscribe(&mut sub, "c", None).await["type"], "subscribed");
}

#[tokio::test]
async fn too_many_frames_get_an_error_then_close_4429() {
    let mut cfg = config();
    cfg.limits.client_frames_per_sec = 1;
    cfg.limits.client_frames_burst = 5;
    let relay = start(cfg).await;
    let mut other = relay.subscriber().await;
    subscribe(&mut other, "public", None).await;
    let mut sub = relay.subscriber().await;
    for _ in 0..30 {
        if sub
            .send(Message::Text(
                r#"{"type":"unsubscribe","channel":"x"}"#.into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut answers = Vec::new();
    let code = loop {
        match next(&mut sub).await {
            Got::Json(v) => answers.push(v),
            Got::Close(code) => break code,
            Got::End => panic!("no close frame"),
        }
    };
    assert_eq!(code, 4429);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["type"] == "unsubscribed")
            .count(),
        5,
        "the burst is served"
    );
    assert_eq!(answers.last().unwrap()["code"], "rate_limited");
    // The others are unaffected.
    let mut p = relay.publisher().await;
    publish(&mut p, "still", "public", json!(1)).await;
    assert_eq!(recv(&mut other).await["id"], "still");
}

#[tokio::test]
async fn frames_over_the_size_limit_close_1009() {
    let mut cfg = config();
    cfg.limits.max_frame_bytes = 512;
    let relay = start(cfg).await;
    let mut sub = relay.subscriber().await;
    let big = json!({"type":"subscribe","channel":"public","pad":"x".repeat(600)});
    send(&mut sub, big).await;
    assert_eq!(closed_with(&mut sub).await, 1009);
    let mut fine = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut fine, "public", None).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_1008_after_the_first_frame_timeout() {
    let mut cfg = config();
    cfg.limits.first_frame_timeout = Duration::from_millis(200);
    let relay = start(cfg).await;
    let mut silent = relay.subscriber().await;
    assert_eq!(closed_with(&mut silent).await, 1008);
    let mut talker = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut talker, "public", None).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn origin_allowlist_closes_others_with_1008_and_lets_headerless_clients_in() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://site.example".into()];
    let relay = start(cfg).await;
    let mut bad = relay
        .subscriber_with_origin(Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut bad).await, 1008);
    let mut good = relay
        .subscriber_with_origin(Some("https://site.example"))
        .await
        .unwrap();
    assert_eq!(
        subscribe(&mut good, "public", None).await["type"],
        "subscribed"
    );
    let mut server_side = relay.subscriber_with_origin(None).await.unwrap();
    assert_eq!(
        subscribe(&mut server_side, "public", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        relay
            .metric("rtet_connections_refused_total{reason=\"origin\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn connections_beyond_the_per_ip_limit_get_429_before_upgrade() {
    let mut cfg = config();
    cfg.limits.connections_per_ip = 2;
    let relay = start(cfg).await;
    let mut a = relay.subscriber().await;
    let _b = relay.publisher().await;
    assert_eq!(relay.subscriber_with_origin(None).await.err(), Some(429));
    assert_eq!(relay.publisher_with(Some(KEY)).await.err(), Some(429));
    assert_eq!(
        subscribe(&mut a, "public", None).await["type"],
        "subscribed",
        "existing ones are served"
    );
    // Closing one frees a place.
    drop(a);
    relay
        .wait_metric("rtet_connections{role=\"subscriber\"}", 0.0)
        .await;
    assert!(relay.subscriber_with_origin(None).await.is_ok());
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_anyone_else_is_counted_by_socket_address() {
    let mut cfg = config();
    cfg.limits.connections_per_ip = 1;
    // The "proxy" connects from 127.0.0.2; test clients from 127.0.0.1 are not proxies.
    cfg.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    let relay = start(cfg).await;
    let proxy = "127.0.0.2";
    let xff = |v| [("x-forwarded-for", v)];
    let _a = relay
        .subscriber_from(proxy, &xff("203.0.113.9, 192.0.2.1"))
        .await
        .expect("first client through the proxy");
    let _b = relay
        .subscriber_from(proxy, &[("x-real-ip", "192.0.2.2")])
        .await
        .expect("another client through the proxy has its own place");
    assert_eq!(
        relay.subscriber_from(proxy, &xff("192.0.2.1")).await.err(),
        Some(429),
        "the right-most forwarded address is the client, whatever the client wrote left of it"
    );
    let _c = relay
        .subscriber_from("127.0.0.1", &xff("192.0.2.3"))
        .await
        .expect("first connection from an untrusted peer");
    assert_eq!(
        relay
            .subscriber_from("127.0.0.1", &xff("192.0.2.4"))
            .await
            .err(),
        Some(429),
        "from an untrusted peer the header is ignored: the socket address counts"
    );
}

#[tokio::test]
async fn ipv6_clients_behind_a_trusted_proxy_share_the_limit_per_64() {
    let mut cfg = config();
    cfg.limits.connections_per_ip = 1;
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let relay = start(cfg).await;
    let xff = |v| [("x-forwarded-for", v)];
    let _a = relay
        .subscriber_with_headers(&xff("2001:db8:0:7::1"))
        .await
        .unwrap();
    assert_eq!(
        relay
            .subscriber_with_headers(&xff("2001:db8:0:7:ffff::2"))
            .await
            .err(),
        Some(429),
        "another address in the same /64 is the same client"
    );
    assert!(
        relay
            .subscriber_with_headers(&xff("2001:db8:0:8::1"))
            .await
            .is_ok(),
        "the next /64 is another client"
    );
}

#[tokio::test]
async fn connections_beyond_the_total_limit_get_503() {
    let mut cfg = config();
    cfg.max_connections = 2;
    let relay = start(cfg).await;
    let mut a = relay.subscriber().await;
    let _b = relay.publisher().await;
    assert_eq!(relay.subscriber_with_origin(None).await.err(), Some(503));
    assert_eq!(
        relay
            .metric("rtet_connections_refused_total{reason=\"max_connections\"}")
            .await,
        1.0
    );
    assert_eq!(
        subscribe(&mut a, "public", None).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn the_relay_pings_and_closes_peers_that_answer_nothing() {
    use futures_util::StreamExt;
    let mut cfg = config();
    cfg.limits.ping_interval = Duration::from_millis(50);
    cfg.limits.dead_peer_timeout = Duration::from_millis(200);
    let relay = start(cfg).await;
    // A live client reads all the time (so it answers pings) and counts them.
    let mut live = relay.subscriber().await;
    subscribe(&mut live, "public", None).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = live.next().await {
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let mut pings = 0;
    while pings < 3 {
        match rx.recv().await.expect("live stays open") {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A client that never reads never answers: the relay drops it.
    let mut dead = relay.subscriber().await;
    send(&mut dead, json!({"type":"subscribe","channel":"public"})).await;
    relay
        .wait_metric("rtet_connections{role=\"subscriber\"}", 1.0)
        .await;
    assert!(
        matches!(next(&mut dead).await, Got::Json(_)),
        "it was subscribed"
    );
    // The relay sent close 1001 and hung up; this client, writing its late pongs first,
    // may see the broken pipe before it reads the close frame.
    let end = next(&mut dead).await;
    assert!(matches!(end, Got::Close(1001) | Got::End), "{end:?}");
    // The live one is still served.
    let mut p = relay.publisher().await;
    publish(&mut p, "alive", "public", json!(1)).await;
    loop {
        match rx.recv().await.expect("live stays open") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["id"], "alive");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_1007_on_both_endpoints() {
    let relay = start(config()).await;
    let mut sub = relay.subscriber().await;
    send_raw_text(&mut sub, b"{\"type\":\"subscribe\",\"channel\":\"\xff\"}").await;
    assert_eq!(closed_with(&mut sub).await, 1007);
    let mut publisher = relay.publisher().await;
    send_raw_text(&mut publisher, b"\xc3\x28").await;
    assert_eq!(closed_with(&mut publisher).await, 1007);
    let mut fine = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut fine, "public", None).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn tokens_not_valid_yet_or_valid_for_too_long_are_refused_4401() {
    let relay = start(config()).await;
    let now = rtet_protocol::token::now_secs();
    let day = 24 * 3600;
    for claims in [
        json!({"sub":"1","channels":["user.1"],"exp": now + 3600, "nbf": now + 600}),
        // Year 584 billion.
        json!({"sub":"1","channels":["user.1"],"exp": u64::MAX}),
        json!({"sub":"1","channels":["user.1"],"exp": now + 2 * day}),
    ] {
        let mut sub = relay.subscriber().await;
        let err = auth(&mut sub, &token_from_claims(KEY, &claims)).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("unauthorized")),
            "{claims}"
        );
        assert_eq!(closed_with(&mut sub).await, 4401, "{claims}");
    }
    let fine = json!({"sub":"1","channels":["user.1"],"exp": now + 3600, "nbf": now - 5});
    let mut sub = relay.subscriber().await;
    assert_eq!(
        auth(&mut sub, &token_from_claims(KEY, &fine)).await["type"],
        "auth_ok"
    );
}

#[tokio::test]
async fn the_token_lifetime_cap_is_configurable() {
    let mut cfg = config();
    cfg.max_token_lifetime = Duration::from_secs(600);
    let relay = start(cfg).await;
    let mut sub = relay.subscriber().await;
    let err = auth(&mut sub, &token_with(KEY, "1", &["user.1"], 3600)).await;
    assert_eq!(err["code"], "unauthorized");
    let mut sub = relay.subscriber().await;
    assert_eq!(
        auth(&mut sub, &token_with(KEY, "1", &["user.1"], 300)).await["type"],
        "auth_ok"
    );
}
