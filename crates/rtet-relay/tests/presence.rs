//! Presence with real WebSocket clients against an in-process relay:
//! members are users not tabs, leave on close and on the dead-peer timeout,
//! the member cap, coalesced churn, and visitors who never see identities.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "post.42.editors";

fn now() -> u64 {
    rtet_protocol::clock::unix_secs()
}

/// A token making `sub` a presence member of `channel`, named after it.
fn member_token(sub: &str, channel: &str) -> String {
    token_from_claims(
        KEY,
        &json!({
            "sub": sub, "channels": [], "presence": [channel],
            "info": {"name": format!("Name of {sub}"), "avatar": format!("https://example.com/{sub}.png")},
            "exp": now() + 300,
        }),
    )
}

/// A visitor's token: `channel` with its presence counts, no identity.
fn counts_token(channel: &str) -> String {
    token_from_claims(
        KEY,
        &json!({"sub": "", "channels": [channel], "presence_counts": [channel], "exp": now() + 300}),
    )
}

/// Connects with `token`, subscribes to `channel`, and returns the
/// connection and the `presence` frame that follows `subscribed`.
async fn join_with(relay: &TestRelay, token: &str, channel: &str) -> (Ws, Value) {
    let mut ws = relay.subscriber().await;
    assert_eq!(auth(&mut ws, token).await["type"], "auth_ok");
    assert_eq!(
        subscribe(&mut ws, channel, None).await["type"],
        "subscribed"
    );
    let snapshot = recv(&mut ws).await;
    assert_eq!(snapshot["type"], "presence", "{snapshot}");
    (ws, snapshot)
}

async fn join_as(relay: &TestRelay, sub: &str) -> (Ws, Value) {
    join_with(relay, &member_token(sub, ROOM), ROOM).await
}

/// The next frame that changes the member list (`join`, `leave`,
/// `presence`), skipping `presence_count`.
async fn next_change(ws: &mut Ws) -> Value {
    loop {
        let frame = recv(ws).await;
        if frame["type"] != "presence_count" {
            return frame;
        }
    }
}

/// Applies a list-changing frame to a client's view of the members.
fn apply(list: &mut BTreeSet<String>, frame: &Value) {
    match frame["type"].as_str() {
        Some("join") => list.extend(member_subs(&frame["members"])),
        Some("leave") => {
            for sub in frame["subs"].as_array().unwrap() {
                list.remove(sub.as_str().unwrap());
            }
        }
        Some("presence") => *list = member_subs(&frame["members"]).into_iter().collect(),
        _ => panic!("not a list change: {frame}"),
    }
}

#[tokio::test]
async fn a_member_is_a_user_not_a_tab() {
    let relay = start(config()).await;
    let (mut watcher, snapshot) = join_as(&relay, "w").await;
    assert_eq!(member_subs(&snapshot["members"]), ["w"]);

    let (alice_tab1, _) = join_as(&relay, "alice").await;
    let joined = next_change(&mut watcher).await;
    assert_eq!(joined["type"], "join");
    assert_eq!(
        joined["members"],
        json!([{"sub":"alice","info":{"name":"Name of alice","avatar":"https://example.com/alice.png"}}])
    );

    // A second tab: the same member, listed once, announced to no one.
    let (alice_tab2, seen_by_tab2) = join_as(&relay, "alice").await;
    assert_eq!(member_subs(&seen_by_tab2["members"]), ["alice", "w"]);
    assert_eq!(seen_by_tab2["member_count"], 2);
    let (_bob, _) = join_as(&relay, "bob").await;
    let next = next_change(&mut watcher).await;
    assert_eq!(
        (next["type"].as_str(), member_subs(&next["members"])),
        (Some("join"), vec!["bob".to_owned()]),
        "the second tab was no new join"
    );
    assert_eq!(relay.metric("rtet_presence_members").await, 3.0);
    assert_eq!(relay.metric("rtet_presence_channels").await, 1.0);

    // Closing one of two tabs is no leave (Carol's join comes next)...
    drop(alice_tab1);
    relay
        .wait_metric("rtet_connections{role=\"subscriber\"}", 3.0)
        .await;
    let (_carol, _) = join_as(&relay, "carol").await;
    let next = next_change(&mut watcher).await;
    assert_eq!(
        (next["type"].as_str(), member_subs(&next["members"])),
        (Some("join"), vec!["carol".to_owned()]),
        "closing one tab of two was no leave"
    );
    // ...closing the last one is one.
    drop(alice_tab2);
    let left = next_change(&mut watcher).await;
    assert_eq!(left["type"], "leave");
    assert_eq!(left["subs"], json!(["alice"]));
    relay.wait_metric("rtet_presence_members", 3.0).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_member_whose_connection_went_silent_leaves_after_the_dead_peer_timeout() {
    let mut cfg = config();
    cfg.limits.ping_interval = Duration::from_millis(50);
    cfg.limits.dead_peer_timeout = Duration::from_millis(300);
    let relay = start(cfg).await;
    // The watcher reads all the time, so it answers pings.
    let (watcher, _) = join_as(&relay, "w").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut watcher = watcher;
        while let Some(Ok(msg)) = watcher.next().await {
            if let Message::Text(t) = msg {
                let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                if tx.send(frame).is_err() {
                    break;
                }
            }
        }
    });
    // Alice joins, then never reads again: she answers no ping.
    let (_silent_alice, _) = join_as(&relay, "alice").await;
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let frame = rx.recv().await.expect("the watcher stays connected");
        if frame["type"] != "presence_count" {
            changes.push(frame);
        }
    }
    assert_eq!(
        (
            changes[0]["type"].as_str(),
            member_subs(&changes[0]["members"])
        ),
        (Some("join"), vec!["alice".to_owned()])
    );
    assert_eq!(changes[1]["type"], "leave", "{}", changes[1]);
    assert_eq!(changes[1]["subs"], json!(["alice"]));
    assert_eq!(relay.metric("rtet_presence_members").await, 1.0);
    relay.shutdown().await;
}

#[tokio::test]
async fn beyond_the_member_cap_everyone_sees_counts_only() {
    let mut cfg = config();
    cfg.limits.max_presence_members = 2;
    let relay = start(cfg).await;
    let (mut watcher, _) = join_as(&relay, "w").await;
    let (_a, seen_by_a) = join_as(&relay, "a").await;
    assert_eq!(
        member_subs(&seen_by_a["members"]),
        ["a", "w"],
        "at the cap: listed"
    );
    assert_eq!(next_change(&mut watcher).await["type"], "join");

    let (b, seen_by_b) = join_as(&relay, "b").await;
    assert_eq!(seen_by_b.get("members"), None, "{seen_by_b}");
    assert_eq!(seen_by_b["member_count"], 3);
    let over = next_change(&mut watcher).await;
    assert_eq!(over["type"], "presence");
    assert_eq!(over.get("members"), None, "the list stops: {over}");
    assert_eq!(over["member_count"], 3);

    // Back at the cap, the list comes again, whole.
    drop(b);
    let back = next_change(&mut watcher).await;
    assert_eq!(back["type"], "presence");
    assert_eq!(member_subs(&back["members"]), ["a", "w"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_thousand_joins_and_leaves_leave_every_member_with_the_same_list_in_few_frames() {
    let mut cfg = config();
    cfg.limits.connections_per_ip = 5_000;
    cfg.limits.max_presence_members = 5_000;
    let relay = std::sync::Arc::new(start(cfg).await);
    let mut watchers = Vec::new();
    for sub in ["w1", "w2", "w3"] {
        let (ws, snapshot) = join_as(&relay, sub).await;
        let list: BTreeSet<String> = member_subs(&snapshot["members"]).into_iter().collect();
        watchers.push((ws, list));
    }

    // 1,000 users join; every other one leaves again at once.
    let churners: Vec<_> = (0..1_000)
        .map(|i| {
            let relay = std::sync::Arc::clone(&relay);
            tokio::spawn(async move {
                let (ws, _) = join_as(&relay, &format!("u{i:04}")).await;
                (i % 2 == 1).then_some(ws)
            })
        })
        .collect();
    let mut staying = Vec::new();
    for churner in churners {
        staying.extend(churner.await.expect("churner"));
    }
    let changes = 1_000 + 500;
    relay.wait_metric("rtet_presence_members", 503.0).await;
    // A last join after all of it: once a watcher sees it, it has seen everything before.
    let (_last, _) = join_as(&relay, "zz-last").await;

    let mut expected: BTreeSet<String> = (0..1_000)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("u{i:04}"))
        .collect();
    expected.extend(["w1", "w2", "w3", "zz-last"].map(String::from));
    for (ws, list) in &mut watchers {
        let mut frames = 0;
        while !list.contains("zz-last") {
            apply(list, &next_change(ws).await);
            frames += 1;
        }
        assert_eq!(*list, expected);
        assert!(
            frames < changes,
            "{frames} list frames for {changes} joins and leaves: coalesced"
        );
    }
    drop(staying);
}

#[tokio::test]
async fn a_visitor_never_gets_member_identities() {
    let mut cfg = config();
    cfg.anonymous_channels = vec!["post.42".into()];
    let relay = start(cfg).await;
    let channel = "post.42";
    // An anonymous visitor: counted, shown nothing.
    let mut anonymous = relay.subscriber().await;
    assert_eq!(
        subscribe(&mut anonymous, channel, None).await["type"],
        "subscribed"
    );
    // A visitor with a readers badge: counts only.
    let (mut reader, snapshot) = join_with(&relay, &counts_token(channel), channel).await;
    assert_eq!(
        snapshot,
        json!({"type":"presence","channel":channel,"member_count":0,"anonymous":2})
    );
    // Two members come; the first sees the second join.
    let (mut alice, _) = join_with(&relay, &member_token("alice", channel), channel).await;
    let (_bob, seen_by_bob) = join_with(&relay, &member_token("bob", channel), channel).await;
    assert_eq!(member_subs(&seen_by_bob["members"]), ["alice", "bob"]);
    assert_eq!(seen_by_bob["anonymous"], 2);
    while !member_subs(&next_change(&mut alice).await["members"]).contains(&"bob".to_owned()) {}
    // That flush is done for every viewer; an event now comes after it.
    let mut publisher = relay.publisher().await;
    publish(&mut publisher, "marker", channel, json!(1)).await;

    for (who, ws) in [("anonymous", &mut anonymous), ("reader", &mut reader)] {
        let mut seen = Vec::new();
        loop {
            let frame = recv(ws).await;
            if frame["type"] == "event" {
                break;
            }
            seen.push(frame);
        }
        let text = serde_json::to_string(&seen).unwrap();
        assert!(
            !text.contains("alice") && !text.contains("bob") && !text.contains("example.com"),
            "{who} saw {text}"
        );
        if who == "reader" {
            let last = seen.last().expect("the reader was shown the counts");
            assert_eq!(
                *last,
                json!({"type":"presence_count","channel":channel,"member_count":2,"anonymous":2})
            );
        } else {
            assert!(seen.is_empty(), "{who} saw {text}");
        }
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_fresh_token_without_the_presence_grant_makes_a_member_leave() {
    let mut cfg = config();
    cfg.anonymous_channels = vec![ROOM.into()];
    let relay = start(cfg).await;
    let (mut watcher, _) = join_as(&relay, "w").await;
    let (mut alice, _) = join_as(&relay, "alice").await;
    assert_eq!(next_change(&mut watcher).await["type"], "join");
    // Alice's next token still lets her read the channel (it is anonymous
    // here) but no longer makes her a member: she leaves, and is counted.
    let plain = token("alice", &["user.alice"]);
    assert_eq!(auth(&mut alice, &plain).await["type"], "auth_ok");
    let left = next_change(&mut watcher).await;
    assert_eq!(
        (left["type"].as_str(), &left["subs"]),
        (Some("leave"), &json!(["alice"]))
    );
    loop {
        let counts = recv(&mut watcher).await;
        if counts["type"] == "presence_count" && counts["anonymous"] == 1 {
            assert_eq!(counts["member_count"], 1);
            break;
        }
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_token_with_an_unsafe_avatar_is_refused() {
    let relay = start(config()).await;
    let mut ws = relay.subscriber().await;
    let token = token_from_claims(
        KEY,
        &json!({"sub": "7", "channels": [], "presence": [ROOM],
                "info": {"name": "Mallory", "avatar": "javascript:alert(1)"}, "exp": now() + 300}),
    );
    let answer = auth(&mut ws, &token).await;
    assert_eq!(answer["code"], "unauthorized", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("avatar"),
        "{answer}"
    );
    assert_eq!(closed_with(&mut ws).await, 4401);
    relay.shutdown().await;
}
