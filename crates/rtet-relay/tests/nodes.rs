//! Several relay nodes on one Redis (the Redis engine): each test starts a
//! real redis-server on a free port and two relays in this process on it.

mod common;

use std::time::Duration;

use common::redis::Redis;
use common::*;
use rtet_relay::{Config, EngineChoice};
use serde_json::{json, Value};

/// Guard against a hung test; never a pass/fail threshold.
const WAIT: Duration = Duration::from_secs(20);

fn config_on(redis: &Redis) -> Config {
    let mut c = config();
    c.engine = EngineChoice::parse(&redis.url()).expect("a Redis URL");
    // The tests publish thousands of events at once; the key's rate limit is not under test.
    c.limits.publishes_per_sec_per_key = 1_000_000;
    c
}

/// Two relays on one Redis.
async fn two_nodes(redis: &Redis) -> (TestRelay, TestRelay) {
    (
        start_with(config_on(redis)).await,
        start_with(config_on(redis)).await,
    )
}

/// Polls `/healthz` until it answers `status` (a real signal, no fixed sleep).
async fn wait_health(relay: &TestRelay, status: u16) {
    tokio::time::timeout(WAIT, async {
        loop {
            if relay.http("GET", "/healthz", &[], b"").await.0 == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/healthz never answered {status}"));
}

/// Reads `n` events and returns their (seq, id), failing on anything else.
async fn events(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ev = recv(ws).await;
        assert_eq!(ev["type"], "event", "{ev}");
        out.push((
            ev["seq"].as_u64().unwrap(),
            ev["id"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

/// Sends `ids` to `channel` without waiting, then reads their answers in order.
async fn publish_all(p: &mut Ws, channel: &str, ids: &[String]) -> Vec<Value> {
    for id in ids {
        send(p, publish_frame(id, channel, json!({"id": id}))).await;
    }
    let mut acks = Vec::with_capacity(ids.len());
    for _ in ids {
        acks.push(recv(p).await);
    }
    acks
}

/// Sends `ids` on `node`, then again from the first one refused, until all
/// are acked; returns their `seq`s in order. A refusal must be `rate_limited`
/// (what a publisher sends again), and every publish after it is refused too
/// (held back behind it); each retry waits until the node is healthy.
async fn publish_until_acked(
    node: &TestRelay,
    p: &mut Ws,
    channel: &str,
    ids: &[String],
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut left = ids.to_vec();
    for _ in 0..10 {
        let answers = publish_all(p, channel, &left).await;
        let acked = answers.iter().take_while(|a| a["type"] == "ack").count();
        seqs.extend(
            answers[..acked]
                .iter()
                .map(|a| a["seq"].as_u64().expect("seq")),
        );
        for a in &answers[acked..] {
            assert_eq!(a["code"], "rate_limited", "to send again: {a}");
        }
        left.drain(..acked);
        if left.is_empty() {
            return seqs;
        }
        wait_health(node, 200).await;
    }
    panic!("not acked within 10 tries: {left:?}");
}

#[tokio::test]
async fn an_event_published_on_one_node_reaches_a_subscriber_on_the_other_once_in_order() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = b.subscriber().await;
    let subscribed = subscribe(&mut sub, "public", None).await;
    assert_eq!(subscribed["seq"], 0);
    let mut p = a.publisher().await;
    let ids: Vec<String> = (1..=200).map(|i| format!("e{i}")).collect();
    for (i, ack) in publish_all(&mut p, "public", &ids).await.iter().enumerate() {
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["seq"], i as u64 + 1);
    }
    let got = events(&mut sub, 200).await;
    let want: Vec<(u64, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i as u64 + 1, id.clone()))
        .collect();
    assert_eq!(got, want, "every event once, in order");
    // A last event: the next frame is it, so nothing was repeated in between.
    publish(&mut p, "fence", "public", json!(0)).await;
    assert_eq!(recv(&mut sub).await["seq"], 201);
}

#[tokio::test]
async fn ten_thousand_events_from_two_nodes_reach_subscribers_on_both_in_one_order() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut on_a = a.subscriber().await;
    let mut on_b = b.subscriber().await;
    subscribe(&mut on_a, "public", None).await;
    subscribe(&mut on_b, "public", None).await;
    const EACH: usize = 5_000;
    let read_a = tokio::spawn(async move { events(&mut on_a, 2 * EACH).await });
    let read_b = tokio::spawn(async move { events(&mut on_b, 2 * EACH).await });
    let mut pa = a.publisher().await;
    let mut pb = b.publisher().await;
    let ids_a: Vec<String> = (0..EACH).map(|i| format!("a{i}")).collect();
    let ids_b: Vec<String> = (0..EACH).map(|i| format!("b{i}")).collect();
    let (acks_a, acks_b) = tokio::join!(
        publish_all(&mut pa, "public", &ids_a),
        publish_all(&mut pb, "public", &ids_b)
    );
    for ack in acks_a.iter().chain(&acks_b) {
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let (got_a, got_b) = (read_a.await.unwrap(), read_b.await.unwrap());
    let seqs: Vec<u64> = got_a.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=2 * EACH as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    assert_eq!(got_a, got_b, "both nodes deliver the one order");
    // Each publisher's own events keep the order it sent them in.
    for prefix in ["a", "b"] {
        let own: Vec<&String> = got_a
            .iter()
            .map(|(_, id)| id)
            .filter(|id| id.starts_with(prefix))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(own, sent.iter().collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_since_taken_on_one_node_resumes_on_the_other() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = a.subscriber().await;
    let epoch = subscribe(&mut sub, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p = a.publisher().await;
    for i in 1..=5 {
        publish(&mut p, &format!("e{i}"), "public", json!(i)).await;
    }
    assert_eq!(events(&mut sub, 5).await.last().unwrap().0, 5);
    drop(sub);
    for i in 6..=8 {
        publish(&mut p, &format!("e{i}"), "public", json!(i)).await;
    }
    let mut resumed = b.subscriber().await;
    let s = subscribe(&mut resumed, "public", Some((&epoch, 5))).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    assert_eq!(
        (s["epoch"].as_str(), &s["seq"], &s["recovered"]),
        (Some(epoch.as_str()), &json!(8), &json!(true))
    );
    publish(&mut p, "e9", "public", json!(9)).await;
    let seqs: Vec<u64> = events(&mut resumed, 4)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs, [6, 7, 8, 9], "the replay, then live, nothing twice");
}

#[tokio::test]
async fn the_same_event_sent_to_both_nodes_is_delivered_once() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = a.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut pa = a.publisher().await;
    let mut pb = b.publisher().await;
    let first = publish(&mut pa, "same", "public", json!(1)).await;
    assert_eq!(
        (first["type"].as_str(), &first["seq"]),
        (Some("ack"), &json!(1))
    );
    let retry = publish(&mut pb, "same", "public", json!(1)).await;
    assert_eq!(
        (retry["type"].as_str(), &retry["seq"]),
        (Some("ack"), &json!(1)),
        "a retry to the other node is answered with the original seq"
    );
    publish(&mut pb, "next", "public", json!(2)).await;
    let got = events(&mut sub, 2).await;
    assert_eq!(got, [(1, "same".to_owned()), (2, "next".to_owned())]);
    assert_eq!(b.metric("rtet_duplicates_total").await, 1.0);
}

#[tokio::test]
async fn while_redis_is_down_publishes_are_refused_to_retry_and_the_node_is_unhealthy() {
    let mut redis = Redis::start_new();
    let (a, _b) = two_nodes(&redis).await;
    wait_health(&a, 200).await;
    assert_eq!(a.metric("rtet_engine_up").await, 1.0);
    let mut p = a.publisher().await;
    assert_eq!(
        publish(&mut p, "before", "public", json!(0)).await["type"],
        "ack"
    );
    redis.stop();
    let refused = publish(&mut p, "during", "public", json!(1)).await;
    assert_eq!(refused["type"], "nack", "never an ack: {refused}");
    assert_eq!(
        refused["code"], "rate_limited",
        "a refusal to retry: {refused}"
    );
    let (status, body) = a
        .send_event(
            Some(KEY),
            &json!({"type":"publish","id":"http-during","channel":"public","event":"e","data":1}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    wait_health(&a, 503).await;
    a.wait_metric("rtet_engine_up", 0.0).await;
    assert!(a.metric("rtet_engine_errors_total{op=\"publish\"}").await >= 1.0);
    redis.start();
    wait_health(&a, 200).await;
    a.wait_metric("rtet_engine_up", 1.0).await;
    // The publisher retries the refused event first (the relay holds the order for it).
    let ack = publish(&mut p, "during", "public", json!(1)).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        ack["seq"], 1,
        "Redis came back empty: a new life of the channel"
    );
}

/// A WebSocket upgrade request to `path` written by hand, so the test sees
/// every header of a refusal; returns the answer's head (status line and
/// headers, lower-cased).
async fn upgrade_head(relay: &TestRelay, path: &str, extra: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        relay.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    read_http_head(&mut stream).await
}

#[tokio::test]
async fn while_redis_is_down_websocket_upgrades_are_refused_503_so_a_balancer_tries_another_node() {
    let mut redis = Redis::start_new();
    let (a, _b) = two_nodes(&redis).await;
    wait_health(&a, 200).await;
    let mut open_before = a.subscriber().await;
    subscribe(&mut open_before, "public", None).await;
    let mut publisher_before = a.publisher().await;

    redis.stop();
    wait_health(&a, 503).await;
    let bearer = format!("authorization: Bearer {KEY}\r\n");
    for (path, extra) in [("/ws", ""), ("/publish", bearer.as_str())] {
        let head = upgrade_head(&a, path, extra).await;
        assert!(
            head.starts_with("http/1.1 503"),
            "{path}: refused, not upgraded: {head}"
        );
        assert!(
            head.contains("\r\nretry-after: 1\r\n"),
            "{path}: says when to retry: {head}"
        );
    }
    assert_eq!(a.subscriber_with_origin(None).await.err(), Some(503));
    assert_eq!(a.publisher_with(Some(KEY)).await.err(), Some(503));
    // A wrong key is still told so first.
    assert_eq!(a.publisher_with(Some("wrong")).await.err(), Some(401));
    assert!(
        a.metric("rtet_connections_refused_total{reason=\"engine_down\"}")
            .await
            >= 4.0
    );

    redis.start();
    wait_health(&a, 200).await;
    // The connections opened before the outage were kept through it: the
    // subscriber hears that Redis came back without its channel's history
    // (closed to resume), and the publisher publishes again.
    assert_eq!(closed_with(&mut open_before).await, 4408);
    let mut fresh = a.subscriber().await;
    assert_eq!(
        subscribe(&mut fresh, "public", None).await["type"],
        "subscribed"
    );
    let ack = publish(&mut publisher_before, "after", "public", json!(1)).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut p = a.publisher().await;
    assert_eq!(
        publish(&mut p, "later", "public", json!(2)).await["type"],
        "ack"
    );
    let got = events(&mut fresh, 2).await;
    assert_eq!(
        got.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        ["after", "later"]
    );
}

#[tokio::test]
async fn redis_restarted_empty_makes_resuming_subscribers_see_recovered_false() {
    let mut redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = b.subscriber().await;
    let epoch = subscribe(&mut sub, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p = a.publisher().await;
    for i in 1..=3 {
        publish(&mut p, &format!("e{i}"), "public", json!(i)).await;
    }
    assert_eq!(events(&mut sub, 3).await.last().unwrap().0, 3);
    redis.stop();
    redis.start();
    // The subscriber is told its channel's history is gone: it is closed to resume.
    assert_eq!(closed_with(&mut sub).await, 4408);
    wait_health(&b, 200).await;
    let mut resumed = b.subscriber().await;
    let s = subscribe(&mut resumed, "public", Some((&epoch, 3))).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    assert_eq!(s["recovered"], false, "loss is said: {s}");
    assert_ne!(s["epoch"].as_str(), Some(epoch.as_str()), "a new epoch");
}

#[tokio::test]
async fn a_flushed_script_cache_costs_no_event_and_keeps_the_order() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = b.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = a.publisher().await;
    let mut sent = Vec::new();
    for round in 0..3 {
        // Redis forgets the publish script under the connected node.
        assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK");
        let id = format!("alone{round}");
        let ack = publish(&mut p, &id, "public", json!(round)).await;
        assert_eq!(ack["type"], "ack", "a publish after the flush: {ack}");
        sent.push(id);
        // A pipelined burst after another flush: every event acked, or
        // refused `rate_limited` and acked when sent again, in order.
        assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK");
        let ids: Vec<String> = (0..50).map(|i| format!("r{round}e{i}")).collect();
        publish_until_acked(&a, &mut p, "public", &ids).await;
        sent.extend(ids);
    }
    let got: Vec<String> = events(&mut sub, sent.len())
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(got, sent, "every event once, in the order sent");
}

#[tokio::test]
async fn a_redis_that_hangs_past_the_response_timeout_costs_no_event_and_doubles_none() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = b.subscriber().await;
    subscribe(&mut sub, "public", None).await;
    let mut p = a.publisher().await;
    assert_eq!(
        publish(&mut p, "before", "public", json!(0)).await["type"],
        "ack"
    );
    // Redis hangs with the publishes already sent to it: they are refused
    // (late answers count as failures), though Redis will run them.
    redis.freeze(true);
    let ids: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    let answers = publish_all(&mut p, "public", &ids).await;
    redis.freeze(false);
    for answer in &answers {
        assert_eq!(answer["type"], "nack", "{answer}");
        assert_eq!(answer["code"], "rate_limited", "to send again: {answer}");
    }
    // Sent again once Redis answers: each is stored once, whichever try it was.
    wait_health(&a, 200).await;
    let acks = publish_until_acked(&a, &mut p, "public", &ids).await;
    assert_eq!(acks, (2..=21).collect::<Vec<_>>(), "the order sent");
    let got = events(&mut sub, 21).await;
    let want: Vec<(u64, String)> = std::iter::once("before".to_owned())
        .chain(ids)
        .enumerate()
        .map(|(i, id)| (i as u64 + 1, id))
        .collect();
    assert_eq!(got, want, "every event once, in order");
    publish(&mut p, "fence", "public", json!(0)).await;
    assert_eq!(
        recv(&mut sub).await["seq"],
        22,
        "nothing repeated before it"
    );
}

#[tokio::test]
async fn a_killed_pubsub_connection_costs_subscribers_no_event_and_repeats_none() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut on_a = a.subscriber().await;
    let mut on_b = b.subscriber().await;
    subscribe(&mut on_a, "public", None).await;
    subscribe(&mut on_b, "public", None).await;
    let mut p = a.publisher().await;
    let ids: Vec<String> = (1..=1_000).map(|i| format!("e{i}")).collect();
    publish_all(&mut p, "public", &ids[..500]).await;
    assert_eq!(
        redis.client_kill_pubsub(),
        2,
        "both nodes' pub/sub connections"
    );
    // Published while the nodes reconnect: pub/sub loses these, the streams have them.
    publish_all(&mut p, "public", &ids[500..]).await;
    publish(&mut p, "fence", "public", json!(0)).await;
    for sub in [&mut on_a, &mut on_b] {
        let seqs: Vec<u64> = events(sub, 1_001).await.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=1_001).collect::<Vec<_>>(), "no gap, no repeat");
    }
}

#[test]
fn the_redis_harness_restarts_an_empty_server_on_the_same_port() {
    let mut redis = Redis::start_new();
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK");
    let port = redis.port();
    redis.stop();
    redis.start();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]), "$-1", "nothing persisted");
}

#[tokio::test]
async fn garbage_in_redis_is_counted_and_never_delivered_or_replayed() {
    let redis = Redis::start_new();
    let (a, b) = two_nodes(&redis).await;
    let mut sub = b.subscriber().await;
    let epoch = subscribe(&mut sub, "public", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p = a.publisher().await;
    publish(&mut p, "e1", "public", json!(1)).await;
    assert_eq!(events(&mut sub, 1).await[0].0, 1);
    // Someone else writes garbage to the channel's pub/sub name (only node B,
    // which has a subscriber, listens) and, below, to its stream.
    assert_eq!(
        redis.command(&["PUBLISH", "rtet:{public}:live", "not-an-event"]),
        ":1"
    );
    b.wait_metric("rtet_engine_errors_total{op=\"corrupt\"}", 1.0)
        .await;
    let ack = publish(&mut p, "e2", "public", json!(2)).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (seq, id) = events(&mut sub, 1).await.remove(0);
    assert_eq!(
        (seq, id.as_str()),
        (2, "e2"),
        "the garbage was not delivered"
    );
    assert!(redis
        .command(&[
            "XADD",
            "rtet:{public}:stream",
            "3-0",
            "f",
            "x",
            "t",
            "not-a-time"
        ])
        .starts_with('$'));
    // A resume over corrupt history is answered as not recovered, not refused or crashed.
    let mut resumed = b.subscriber().await;
    let s = subscribe(&mut resumed, "public", Some((&epoch, 1))).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    assert_eq!(s["recovered"], false, "{s}");
    assert_eq!(
        b.metric("rtet_engine_errors_total{op=\"corrupt\"}").await,
        2.0
    );
}
