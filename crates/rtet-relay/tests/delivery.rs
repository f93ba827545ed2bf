//! Every subscriber gets every event once, in order, in whole frames,
//! whether it reads fast, stalls until its socket is full, or reads in fits;
//! whether it subscribes before a burst or in the middle of one (with `since`
//! or without); and with the relay's other frames (replies, replays, pings,
//! pongs, presence) between the events. Whatever path a frame takes to a
//! socket (the subscriber's queue, or a write straight from the fan-out, which
//! was tried: BENCHMARKS.md, "Where the relay's time goes") and whoever frames
//! it (the relay frames text, tungstenite the pongs it answers from the read
//! path: `src/frame_writer.rs`), these hold.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// Longest any reader waits for its next frame; a guard against a hung test.
const WAIT: Duration = Duration::from_secs(30);

/// Padding of event `n`: sizes spread over 0..20,000 bytes so frames end at
/// every offset of the socket's buffers (and the writes that fill them
/// are cut inside frames).
fn pad(n: u64) -> String {
    "x".repeat(((n * 7_919) % 20_000) as usize)
}

/// A subscriber whose socket receives into a buffer of `bytes` (the kernel
/// rounds it up): a reader that pauses fills it, and the relay's writes
/// would block mid-stream.
async fn subscriber_with_receive_buffer(relay: &TestRelay, bytes: u32) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(bytes).expect("receive buffer");
    let addr: SocketAddr = relay.addr;
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(relay.ws_url("/ws"), MaybeTlsStream::Plain(stream))
            .await
            .expect("subscriber connects");
    ws
}

/// How a test subscriber reads.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// As fast as frames come.
    Fast,
    /// Nothing until the publisher is done, then everything.
    Stalled,
    /// A few frames, then a pause, again and again.
    StopAndGo,
}

/// What one subscriber saw: the events, and the other frames that came
/// between its first event and its last.
#[derive(Debug, Default)]
struct Seen {
    /// Event seqs in the order they came.
    seqs: Vec<u64>,
    /// Pings from the relay.
    pings: usize,
    /// Pongs answering this client's pings (their payloads).
    pongs: Vec<Vec<u8>>,
    /// `presence`, `join`, `leave` and `presence_count` frames.
    presence: usize,
}

/// Reads events until event `last`, checking each is whole (its number and
/// padding as published) and counting the other frames in between. A
/// `Stalled` reader starts once `published` says the publisher is done.
async fn read_until<S>(
    ws: &mut S,
    last: u64,
    pace: Pace,
    published: Option<tokio::sync::watch::Receiver<bool>>,
) -> Seen
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    if let (Pace::Stalled, Some(mut published)) = (pace, published) {
        published.wait_for(|done| *done).await.expect("publisher");
    }
    let mut seen = Seen::default();
    let mut since_pause = 0;
    while seen.seqs.last() != Some(&last) {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection stays open")
            .expect("a well-formed frame");
        let between = !seen.seqs.is_empty();
        match message {
            Message::Text(t) => {
                let frame: Value = serde_json::from_str(t.as_str()).expect("a whole JSON frame");
                match frame["type"].as_str() {
                    Some("event") => {
                        let seq = frame["seq"].as_u64().expect("seq");
                        assert_eq!(frame["data"]["n"], seq, "the event's own data");
                        assert_eq!(frame["data"]["pad"], pad(seq), "the event's data is whole");
                        seen.seqs.push(seq);
                    }
                    Some("presence" | "join" | "leave" | "presence_count") => {
                        seen.presence += usize::from(between)
                    }
                    other => panic!("unexpected frame {other:?}: {frame}"),
                }
            }
            Message::Ping(_) => seen.pings += usize::from(between),
            Message::Pong(p) => {
                if between {
                    seen.pongs.push(p.to_vec());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        if let Pace::StopAndGo = pace {
            since_pause += 1;
            if since_pause == 25 {
                since_pause = 0;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    }
    seen
}

/// Publishes events `1..=count` on `channel`, each carrying its number and
/// padding, with `pause` after each (to spread a burst over a while).
async fn publish_all(relay: &TestRelay, channel: &str, count: u64, pause: Duration) {
    let mut p = relay.publisher().await;
    for n in 1..=count {
        let ack = publish(
            &mut p,
            &format!("e{n}"),
            channel,
            json!({"n": n, "pad": pad(n)}),
        )
        .await;
        assert_eq!(ack["seq"], n, "{ack}");
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_event_once_in_order_and_whole_while_some_read_slowly() {
    const EVENTS: u64 = 800;
    let mut cfg = config();
    // Slow readers fall far behind here, but are never cut off as slow consumers.
    cfg.limits.subscriber_queue_frames = 100_000;
    let relay = start(cfg).await;
    let (done, published) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for pace in [
        Pace::Fast,
        Pace::Fast,
        Pace::Stalled,
        Pace::Stalled,
        Pace::StopAndGo,
        Pace::StopAndGo,
    ] {
        let mut ws = subscriber_with_receive_buffer(&relay, 4096).await;
        assert_eq!(subscribe(&mut ws, "public", None).await["seq"], 0);
        let published = published.clone();
        readers.push((
            pace,
            tokio::spawn(async move { read_until(&mut ws, EVENTS, pace, Some(published)).await }),
        ));
    }
    publish_all(&relay, "public", EVENTS, Duration::ZERO).await;
    done.send(true).unwrap();
    for (pace, reader) in readers {
        let seen = reader.await.expect("reader");
        assert_eq!(
            seen.seqs,
            (1..=EVENTS).collect::<Vec<_>>(),
            "{pace:?} reader: each event once, in order"
        );
    }
    assert_eq!(
        relay.metric("rtet_slow_consumer_disconnects_total").await,
        0.0
    );
}

/// A subscriber that has already been answered once (`auth_ok`) before it
/// subscribes: its connection task is waiting, not busy with its first frame,
/// when the `subscribe` arrives.
async fn authenticated(relay: &TestRelay) -> Ws {
    let mut ws = relay.subscriber().await;
    assert_eq!(
        auth(&mut ws, &token("joiner", &["public"])).await["type"],
        "auth_ok"
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_during_a_burst_get_what_follows_their_since_or_their_subscribe_without_gap_or_repeat(
) {
    const EVENTS: u64 = 600;
    let mut cfg = config();
    cfg.limits.subscriber_queue_frames = 100_000;
    // A joiner resumes 7 events behind the watcher, but the publisher may be
    // hundreds of events (megabytes of padding) ahead of the watcher by then:
    // every replay must fit the replay bounds, or it is refused
    // (`recovered: false`, tested in `engine::memory` and `tests/replay.rs`).
    cfg.max_replay_bytes = 256 * 1024 * 1024;
    cfg.replay_bytes_per_connection = 256 * 1024 * 1024;
    cfg.replay_bytes_per_ip = 1024 * 1024 * 1024;
    let relay = start(cfg).await;
    let mut watcher = relay.subscriber().await;
    let epoch = subscribe(&mut watcher, "public", None).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let publisher = publish_all(&relay, "public", EVENTS, Duration::ZERO);
    let joiners = async {
        let mut joined = Vec::new();
        let mut seen = 0u64;
        // Every 40 events the watcher sees, one subscriber resumes from a few
        // events back and one subscribes without `since`.
        while seen < EVENTS {
            let ev = recv(&mut watcher).await;
            seen += 1;
            assert_eq!(ev["seq"], seen, "the watcher gets every event in order");
            if !seen.is_multiple_of(40) || seen == EVENTS {
                continue;
            }
            let after = seen - 7;
            let mut resumed = authenticated(&relay).await;
            let s = subscribe(&mut resumed, "public", Some((&epoch, after))).await;
            assert_eq!(s["type"], "subscribed", "{s}");
            if s["recovered"] != true {
                let cut = relay.metric("rtet_replays_cut_total").await;
                panic!("resuming from seq {after}: {s} (replays cut for a bound: {cut})");
            }
            joined.push((after, resumed));
            let mut fresh = authenticated(&relay).await;
            let s = subscribe(&mut fresh, "public", None).await;
            assert_eq!(s["type"], "subscribed", "{s}");
            joined.push((s["seq"].as_u64().expect("seq"), fresh));
        }
        joined
    };
    let ((), joined) = tokio::join!(publisher, joiners);
    assert!(joined.len() >= 20);
    for (after, mut ws) in joined {
        if after == EVENTS {
            continue;
        }
        let seen = read_until(&mut ws, EVENTS, Pace::Fast, None).await;
        assert_eq!(
            seen.seqs,
            (after + 1..=EVENTS).collect::<Vec<_>>(),
            "a subscriber from seq {after}: the replay, then live events, none missing or repeated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_pongs_and_presence_frames_between_a_bursts_events_stay_whole() {
    const EVENTS: u64 = 600;
    const ROOM: &str = "post.7.editors";
    let mut cfg = config();
    cfg.limits.subscriber_queue_frames = 100_000;
    // The relay pings this often, in the middle of the burst.
    cfg.limits.ping_interval = Duration::from_millis(20);
    let relay = start(cfg).await;
    let member = |sub: &str| {
        token_from_claims(
            KEY,
            &json!({"sub": sub, "channels": [ROOM], "presence": [ROOM],
                    "exp": rtet_protocol::clock::unix_secs() + 300}),
        )
    };
    let (done, published) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for (i, pace) in [Pace::Fast, Pace::StopAndGo, Pace::StopAndGo]
        .into_iter()
        .enumerate()
    {
        let mut ws = subscriber_with_receive_buffer(&relay, 4096).await;
        assert_eq!(
            auth(&mut ws, &member(&format!("reader{i}"))).await["type"],
            "auth_ok"
        );
        assert_eq!(subscribe(&mut ws, ROOM, None).await["type"], "subscribed");
        let published = published.clone();
        readers.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            // This client pings the relay every few milliseconds; the relay
            // answers from its read path, between the fan-out's writes.
            let pinger = tokio::spawn(async move {
                let mut sent = BTreeSet::new();
                for n in 0u32.. {
                    let payload = format!("ping {n}").into_bytes();
                    if sink
                        .send(Message::Ping(payload.clone().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.insert(payload);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    if n == 300 {
                        break;
                    }
                }
                (sink, sent)
            });
            let seen = read_until(&mut stream, EVENTS, pace, Some(published)).await;
            let (_sink, sent) = pinger.await.expect("pinger");
            (seen, sent)
        }));
    }
    // Members come and go during the burst: `join` and `leave` frames go out
    // each presence tick, between events.
    let churn = async {
        let mut n = 0;
        while !*published.borrow() {
            n += 1;
            let mut ws = relay.subscriber().await;
            auth(&mut ws, &member(&format!("visitor{n}"))).await;
            subscribe(&mut ws, ROOM, None).await;
            // Longer than a presence tick, so each join and leave is announced.
            tokio::time::sleep(Duration::from_millis(150)).await;
            drop(ws);
        }
    };
    let publisher = async {
        // Over a second or more: several presence ticks and relay pings fall inside it.
        publish_all(&relay, ROOM, EVENTS, Duration::from_millis(2)).await;
        done.send(true).unwrap();
    };
    tokio::join!(churn, publisher);
    for reader in readers {
        let (seen, sent) = reader.await.expect("reader");
        assert_eq!(
            seen.seqs,
            (1..=EVENTS).collect::<Vec<_>>(),
            "each event once, in order"
        );
        assert!(seen.presence > 0, "presence frames came between the events");
        assert!(seen.pings > 0, "the relay's pings came between the events");
        assert!(
            !seen.pongs.is_empty(),
            "the relay answered pings during the burst"
        );
        for pong in &seen.pongs {
            assert!(sent.contains(pong), "a pong carries a ping's payload whole");
        }
    }
}

/// Reads the next text frame as JSON, skipping pings and pongs.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection stays open")
            .expect("a well-formed frame");
        if let Message::Text(t) = message {
            return serde_json::from_str(t.as_str()).expect("a JSON frame");
        }
    }
}

/// A channel with subscribers in several chunks (each written by its own
/// fan-out task, `src/engine/hub.rs`): each subscriber unsubscribes in the
/// middle of a burst and resumes with `since`. Nothing of the channel comes
/// between its `unsubscribed` and its new `subscribed`, and what it gets
/// before and after adds up to every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_leaving_and_resuming_mid_burst_in_every_chunk_miss_nothing_and_get_nothing_between(
) {
    const SUBSCRIBERS: u64 = 150; // more than two chunks
    const EVENTS: u64 = 300;
    let mut cfg = config();
    cfg.limits.subscriber_queue_frames = 100_000;
    let relay = start(cfg).await;
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut ws = relay.subscriber().await;
        let s = subscribe(&mut ws, "public", None).await;
        assert_eq!(s["seq"], 0, "{s}");
        let epoch = s["epoch"].as_str().expect("epoch").to_owned();
        // Each leaves at its own point of the burst.
        let leave_after = 20 + i * (EVENTS - 60) / SUBSCRIBERS;
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut left = false;
            loop {
                let frame = next_json(&mut ws).await;
                match frame["type"].as_str() {
                    Some("event") => seqs.push(frame["seq"].as_u64().expect("seq")),
                    Some("unsubscribed") if !left => {
                        left = true;
                        // Resume from the last event seen: the next frame must be the answer.
                        let last = seqs.last().copied().unwrap_or(0);
                        let s = subscribe(&mut ws, "public", Some((&epoch, last))).await;
                        assert_eq!(
                            s["type"], "subscribed",
                            "subscriber {i}: nothing between unsubscribed and subscribed: {s}"
                        );
                        assert_eq!(s["recovered"], true, "{s}");
                        continue;
                    }
                    Some("presence" | "join" | "leave" | "presence_count") => {}
                    other => panic!("subscriber {i}: unexpected {other:?}: {frame}"),
                }
                if seqs.len() as u64 == leave_after && !left {
                    send(&mut ws, json!({"type":"unsubscribe","channel":"public"})).await;
                }
                if seqs.last() == Some(&EVENTS) {
                    return seqs;
                }
            }
        }));
    }
    let mut p = relay.publisher().await;
    for n in 1..=EVENTS {
        let ack = publish(&mut p, &format!("e{n}"), "public", json!({"n": n})).await;
        assert_eq!(ack["seq"], n, "{ack}");
    }
    for (i, reader) in readers.into_iter().enumerate() {
        let seqs = reader.await.expect("reader");
        assert_eq!(
            seqs,
            (1..=EVENTS).collect::<Vec<_>>(),
            "subscriber {i}: every event once, in order, across leaving and resuming"
        );
    }
}
