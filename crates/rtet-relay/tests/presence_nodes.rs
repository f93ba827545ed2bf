//! Presence over several relay nodes on one Redis (the Redis engine): each
//! test starts a real redis-server on a free port and relays on it, two in
//! this process, or a real relay process killed with SIGKILL.

mod common;

use std::collections::BTreeSet;

use common::redis::Redis;
use common::*;
use rtet_relay::{Config, EngineChoice};
use serde_json::{json, Value};

const ROOM: &str = "post.42.editors";

fn config_on(redis: &Redis) -> Config {
    let mut c = config();
    c.engine = EngineChoice::parse(&redis.url()).expect("a Redis URL");
    c
}

fn member_token(sub: &str) -> String {
    token_from_claims(
        KEY,
        &json!({
            "sub": sub, "channels": [], "presence": [ROOM],
            "info": {"name": format!("Name of {sub}")},
            "exp": rtet_protocol::clock::unix_secs() + 300,
        }),
    )
}

/// Subscribes `ws` as member `sub` and returns the `presence` frame that follows.
async fn join(ws: &mut Ws, sub: &str) -> Value {
    assert_eq!(auth(ws, &member_token(sub)).await["type"], "auth_ok");
    assert_eq!(subscribe(ws, ROOM, None).await["type"], "subscribed");
    let snapshot = recv(ws).await;
    assert_eq!(snapshot["type"], "presence", "{snapshot}");
    snapshot
}

fn subs(members: &Value) -> BTreeSet<String> {
    member_subs(members).into_iter().collect()
}

/// A client's view of the members and counts, kept from the frames it gets.
struct View {
    members: BTreeSet<String>,
    counts: (u64, u64),
}

impl View {
    fn from(snapshot: &Value) -> View {
        View {
            members: subs(&snapshot["members"]),
            counts: (
                snapshot["member_count"].as_u64().unwrap(),
                snapshot["anonymous"].as_u64().unwrap(),
            ),
        }
    }

    /// Applies the next frame and returns its type.
    async fn next(&mut self, ws: &mut Ws) -> String {
        let frame = recv(ws).await;
        match frame["type"].as_str().unwrap() {
            "join" => self.members.extend(subs(&frame["members"])),
            "leave" => {
                for sub in frame["subs"].as_array().unwrap() {
                    self.members.remove(sub.as_str().unwrap());
                }
            }
            "presence" | "presence_count" => {
                if frame["type"] == "presence" {
                    self.members = subs(&frame["members"]);
                }
                self.counts = (
                    frame["member_count"].as_u64().unwrap(),
                    frame["anonymous"].as_u64().unwrap(),
                );
            }
            other => panic!("not a presence frame: {other}: {frame}"),
        }
        frame["type"].as_str().unwrap().to_owned()
    }

    /// Reads frames until the members and counts are these, failing on any
    /// `join` or `leave` frame not named in `allowed`.
    async fn until(&mut self, ws: &mut Ws, members: &[&str], counts: (u64, u64), allowed: &[&str]) {
        let want: BTreeSet<String> = members.iter().map(|s| s.to_string()).collect();
        while self.members != want || self.counts != counts {
            let kind = self.next(ws).await;
            if kind == "join" || kind == "leave" {
                assert!(
                    allowed.contains(&kind.as_str()),
                    "unexpected {kind}: now {:?}",
                    self.members
                );
            }
        }
    }
}

#[tokio::test]
async fn members_counts_joins_and_leaves_agree_across_nodes() {
    let redis = Redis::start_new();
    let a = start_with(config_on(&redis)).await;
    let b = start_with(config_on(&redis)).await;

    let mut alice_a = a.subscriber().await;
    let mut alice_view = View::from(&join(&mut alice_a, "alice").await);
    assert_eq!(alice_view.members, BTreeSet::from(["alice".to_owned()]));

    // Bob on B is shown Alice, who is on A.
    let mut bob_b = b.subscriber().await;
    let mut bob_view = View::from(&join(&mut bob_b, "bob").await);
    assert_eq!(
        bob_view.members,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned()])
    );
    assert_eq!(bob_view.counts, (2, 0));
    alice_view
        .until(&mut alice_a, &["alice", "bob"], (2, 0), &["join"])
        .await;

    // Alice's second tab, on B: no new join anywhere; the counts stay.
    let mut alice_b = b.subscriber().await;
    let second = View::from(&join(&mut alice_b, "alice").await);
    assert_eq!(second.counts, (2, 0));
    // An anonymous subscriber on B shows the counts moving on both nodes
    // and is the next change each of them sees.
    let mut visitor = b.subscriber().await;
    let counts_only = token_from_claims(
        KEY,
        &json!({"sub": "", "channels": [], "presence_counts": [ROOM],
                "exp": rtet_protocol::clock::unix_secs() + 300}),
    );
    assert_eq!(auth(&mut visitor, &counts_only).await["type"], "auth_ok");
    assert_eq!(
        subscribe(&mut visitor, ROOM, None).await["type"],
        "subscribed"
    );
    alice_view
        .until(&mut alice_a, &["alice", "bob"], (2, 1), &[])
        .await;
    bob_view
        .until(&mut bob_b, &["alice", "bob"], (2, 1), &[])
        .await;

    // Closing Alice's tab on A is no leave: her tab on B keeps her in.
    drop(alice_a);
    let mut carol_a = a.subscriber().await;
    let mut carol_view = View::from(&join(&mut carol_a, "carol").await);
    assert_eq!(carol_view.counts, (3, 1));
    assert_eq!(
        carol_view.members,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned(), "carol".to_owned()])
    );
    bob_view
        .until(&mut bob_b, &["alice", "bob", "carol"], (3, 1), &["join"])
        .await;

    // Closing her last tab is one leave, on both nodes.
    drop(alice_b);
    bob_view
        .until(&mut bob_b, &["bob", "carol"], (2, 1), &["leave"])
        .await;
    carol_view
        .until(&mut carol_a, &["bob", "carol"], (2, 1), &["leave"])
        .await;

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_members_of_a_killed_node_leave_after_the_expiry() {
    let redis = Redis::start_new();
    let survivor = start_with(config_on(&redis)).await;
    let doomed = RelayProcess::start(relay_binary().args([
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        KEY,
        "--engine",
        &redis.url(),
    ]));
    let mut dora = ws_from("127.0.0.1", &format!("ws://{}/ws", doomed.addr), &[])
        .await
        .expect("a subscriber on the doomed node");
    join(&mut dora, "dora").await;

    let mut watcher = survivor.subscriber().await;
    let mut view = View::from(&join(&mut watcher, "watcher").await);
    assert_eq!(
        view.members,
        BTreeSet::from(["dora".to_owned(), "watcher".to_owned()])
    );

    // SIGKILL: the node withdraws nothing; its part expires in Redis.
    drop(doomed);
    view.until(&mut watcher, &["watcher"], (1, 0), &["leave"])
        .await;
    survivor.shutdown().await;
}

#[tokio::test]
async fn presence_lost_by_redis_is_written_again_by_every_node() {
    let redis = Redis::start_new();
    let a = start_with(config_on(&redis)).await;
    let b = start_with(config_on(&redis)).await;
    let mut alice = a.subscriber().await;
    join(&mut alice, "alice").await;
    let mut carol = a.subscriber().await;
    join(&mut carol, "carol").await;
    let mut bob = b.subscriber().await;
    let mut view = View::from(&join(&mut bob, "bob").await);
    assert_eq!(view.counts, (3, 0));

    // Redis forgets everything (a flush, a failover to an empty replica);
    // then Carol leaves. Node B has nothing new to write: it learns that its
    // part is gone and writes it again.
    assert_eq!(redis.command(&["FLUSHALL"]), "+OK");
    drop(carol);

    // (Until both nodes have written their parts, a node may briefly see
    // only the other's, so joins and leaves are allowed on the way.)
    view.until(&mut bob, &["alice", "bob"], (2, 0), &["join", "leave"])
        .await;
    a.shutdown().await;
    b.shutdown().await;
}
