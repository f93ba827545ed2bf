//! Whole relay processes on one Redis: the real binary started with
//! `--engine redis://...` on a real redis-server.
//!
//! - A node killed with SIGKILL while events flow: the channel's `epoch` and
//!   `seq` belong to Redis, not to the node, so a subscriber of the dead node
//!   resumes on another with its `since` and ends with every event once, in
//!   order.
//! - One publisher connection's publishes reach Redis pipelined, not one
//!   round trip per event (what makes a publisher's acks/s a Redis round
//!   trip's inverse otherwise).

mod common;

use common::redis::Redis;
use common::*;
use serde_json::{json, Value};

const CHANNEL: &str = "public";

/// A relay node on `engine`, listening on a free loopback port.
fn node(engine: &str) -> RelayProcess {
    RelayProcess::start(relay_binary().args([
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        KEY,
        "--engine",
        engine,
        "--history-size",
        "10000",
    ]))
}

async fn publisher_on(node: &RelayProcess) -> Ws {
    let bearer = format!("Bearer {KEY}");
    ws_from(
        "127.0.0.1",
        &format!("ws://{}/publish", node.addr),
        &[("authorization", &bearer)],
    )
    .await
    .expect("publisher connects")
}

async fn subscriber_on(node: &RelayProcess) -> Ws {
    ws_from("127.0.0.1", &format!("ws://{}/ws", node.addr), &[])
        .await
        .expect("subscriber connects")
}

/// One event a subscriber read: (seq, the publisher's number `n`).
fn seq_and_n(frame: &Value) -> (u64, u64) {
    (
        frame["seq"].as_u64().expect("event has a seq"),
        frame["data"]["n"].as_u64().expect("event data has n"),
    )
}

/// Reads events until the one whose `n` is `last` (inclusive), or until the
/// connection ends (`None` as the last element then).
async fn read_events(ws: &mut Ws, last: u64, out: &mut Vec<(u64, u64)>) -> bool {
    loop {
        match next(ws).await {
            Got::Json(frame) if frame["type"] == "event" => {
                let e = seq_and_n(&frame);
                out.push(e);
                if e.1 == last {
                    return true;
                }
            }
            Got::Json(_) => continue,
            Got::Close(_) | Got::End => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_its_subscriber_resumes_on_the_other_node_with_every_event_once() {
    const TOTAL: u64 = 3000;
    const KILL_AFTER: usize = 1000;
    let redis = Redis::start_new();
    let mut a = node(&redis.url());
    let b = node(&redis.url());

    let mut on_a = subscriber_on(&a).await;
    let mut on_b = subscriber_on(&b).await;
    let sub_a = subscribe(&mut on_a, CHANNEL, None).await;
    let sub_b = subscribe(&mut on_b, CHANNEL, None).await;
    assert_eq!(sub_a["type"], "subscribed", "{sub_a}");
    assert_eq!(
        sub_a["epoch"], sub_b["epoch"],
        "both nodes tell the same epoch"
    );
    let epoch = sub_a["epoch"].as_str().unwrap().to_owned();

    // The publisher is on B, which lives: every event is acked, in order.
    let mut p = publisher_on(&b).await;
    let publishing = tokio::spawn(async move {
        for n in 0..TOTAL {
            let ack = publish(&mut p, &format!("e{n}"), CHANNEL, json!({ "n": n })).await;
            assert_eq!(ack["type"], "ack", "event {n}: {ack}");
        }
    });

    // The subscriber on A reads part of the stream, then A is killed.
    let mut got_a = Vec::new();
    while got_a.len() < KILL_AFTER {
        match next(&mut on_a).await {
            Got::Json(f) if f["type"] == "event" => got_a.push(seq_and_n(&f)),
            Got::Json(_) => {}
            other => panic!("A's subscriber lost its connection before the kill: {other:?}"),
        }
    }
    a.child.kill().expect("SIGKILL node A");
    a.child.wait().expect("node A exits");
    // What A had sent before it died, then the end of the connection.
    assert!(
        !read_events(&mut on_a, TOTAL - 1, &mut got_a).await,
        "A's connection ends with A"
    );

    // It comes back on B with the `since` it had from A.
    let last_seq = got_a.last().unwrap().0;
    let mut resumed = subscriber_on(&b).await;
    let sub = subscribe(&mut resumed, CHANNEL, Some((&epoch, last_seq))).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    assert_eq!(
        sub["recovered"], true,
        "B replays what A's subscriber missed: {sub}"
    );
    assert_eq!(sub["epoch"], json!(epoch), "the same epoch on B");
    assert!(
        read_events(&mut resumed, TOTAL - 1, &mut got_a).await,
        "the resumed subscriber reads to the last event"
    );

    let mut got_b = Vec::new();
    assert!(read_events(&mut on_b, TOTAL - 1, &mut got_b).await);
    publishing.await.expect("every publish acked");

    let all: Vec<u64> = (0..TOTAL).collect();
    for (who, got) in [
        ("A's subscriber (resumed on B)", &got_a),
        ("B's subscriber", &got_b),
    ] {
        let ns: Vec<u64> = got.iter().map(|e| e.1).collect();
        assert_eq!(ns, all, "{who} sees every event once, in order");
        let seqs: Vec<u64> = got.iter().map(|e| e.0).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + TOTAL).collect::<Vec<_>>(),
            "{who}: seq without a hole or a repeat"
        );
    }
}

/// The sizes of the query buffers of Redis's clients (`CLIENT LIST`, `qbuf=`):
/// what each has sent that Redis has not run yet.
fn redis_query_buffers(redis: &Redis) -> Vec<usize> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", redis.port())).expect("connect to redis");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"CLIENT LIST\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head).unwrap();
    let len: usize = head
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("CLIENT LIST answered {head}"));
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("qbuf="))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_pipelined_on_one_connection_reach_redis_together_not_one_round_trip_each() {
    const EVENTS: u64 = 50;
    let redis = Redis::start_new();
    let relay = node(&redis.url());
    let mut p = publisher_on(&relay).await;
    let first = publish(&mut p, "warm", CHANNEL, json!(1)).await;
    assert_eq!(first["type"], "ack", "{first}");

    // While Redis runs no write, what the relay sends it waits in Redis's
    // query buffer: a node that pipelines sends every publish it has, one that
    // waits for each answer sends one.
    redis.command(&["CLIENT", "PAUSE", "20000", "WRITE"]);
    let padding = "x".repeat(1000);
    for n in 0..EVENTS {
        send(
            &mut p,
            publish_frame(&format!("e{n}"), CHANNEL, json!({ "n": n, "pad": padding })),
        )
        .await;
    }
    // Several publishes of about 1 KB each waiting at once: the first may go
    // alone, but the relay keeps reading and sends the rest while it waits.
    // The relay counts a command unanswered for 3 s as failed (then it would
    // send the next one), so look until just before that: a node that waits
    // for each answer has one publish, about 1 KB, in the buffer all that time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2_800);
    let mut waiting = 0;
    while std::time::Instant::now() < deadline {
        waiting = redis_query_buffers(&redis).into_iter().max().unwrap_or(0);
        if waiting > 10_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    redis.command(&["CLIENT", "UNPAUSE"]);
    assert!(
        waiting > 10_000,
        "the relay sent Redis at most {waiting} bytes of {EVENTS} pipelined publishes: one round trip per event"
    );
    for n in 0..EVENTS {
        let ack = recv(&mut p).await;
        assert_eq!(ack["type"], "ack", "event {n}: {ack}");
        assert_eq!(ack["seq"], n + 2, "in the order sent");
    }
}
