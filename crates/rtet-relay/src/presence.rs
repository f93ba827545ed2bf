//! Presence: who is subscribed to a channel ("Presence" in `docs/protocol.md`).
//!
//! A subscriber whose token grants presence on a channel (and names someone,
//! a non-empty `sub`) is a *member* there: listed to the other members with
//! its token's `info`. A member is a user, not a connection: the first
//! connection of a `sub` joins, the last one to go leaves. Every other
//! subscriber of the channel is counted as `anonymous`, never listed. Who is
//! shown what is the token's to say: members see the list (while the channel
//! has no more members than `--max-presence-members`) and the counts; a
//! token with `presence_counts` for the channel sees the counts only; anyone
//! else sees no presence at all.
//!
//! Changes are not sent one by one: [`Presence::flush`], run every
//! [`PRESENCE_TICK`], sends each changed channel's net `join`, `leave` and
//! `presence_count` frames, each encoded once for every viewer. A user who
//! joins and leaves within one tick is never announced; a storm of churn
//! costs each viewer at most a few frames per tick.
//!
//! Leaving is tied to the subscription ending: the subscriber's connection
//! leaves every channel when its session ends, for whatever reason it ends
//! (close, dead-peer timeout, slow consumer, token expiry, shutdown), and an
//! `unsubscribe` or a re-`auth` that no longer grants the channel leaves it.
//!
//! # Where the state lives
//!
//! The seats of this node's subscribers (members with a connection count,
//! the anonymous count) and its viewers' outboxes are always here. On the
//! memory engine they are the whole presence. On an engine that shares
//! presence (Redis), every tick the server task writes this node's part
//! ([`Presence::local_parts`]) and takes back each channel over every node
//! ([`Presence::apply_shared`]); [`Presence::flush`] then shows that shared
//! view, and its `join`s and `leave`s are the differences between what the
//! last flush listed and what this one lists, whichever node they happened
//! on. A viewer's first frame waits for a read that holds its own seat.
//!
//! # Cost (for the benchmark to measure)
//!
//! Per member connection: one viewer entry (an `Arc` to its outbox and a
//! flag); per member user: its `sub`, its `info` (at most 64 characters and
//! 512 bytes) and a connection count; per anonymous subscriber without a
//! presence view: nothing but a counter. A join or leave is one hash map
//! update under one lock; the fan-out happens once per tick per channel.
//! Memory per member and CPU per join/leave are to be measured with 10,000
//! members in one channel and 1,000 channels of 10 (issue 12).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rtet_protocol::sync::lock;
use rtet_protocol::{Claims, Member, MemberInfo, ServerFrame};
use tungstenite::Utf8Bytes;

use crate::engine::{LocalPresence, SharedPresence, SubscriberId};
use crate::outbox::{Outbox, Push};

/// How often changed channels send their coalesced presence frames.
pub const PRESENCE_TICK: Duration = Duration::from_millis(100);

/// How a subscription counts in a channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seat {
    /// A member: listed as `sub` with `info`.
    Member { sub: String, info: MemberInfo },
    /// Counted, never listed.
    Anonymous,
}

/// What a subscription is shown of a channel's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The member list (while under the cap) and the counts.
    List,
    /// The counts only.
    Counts,
    /// Nothing.
    Nothing,
}

/// The seat and view a token (or no token) gives on `channel`.
pub fn seat_and_view(claims: Option<&Claims>, channel: &str) -> (Seat, View) {
    match claims {
        Some(c) if c.is_member_of(channel) => (
            Seat::Member {
                sub: c.sub.clone(),
                info: c.info.clone().unwrap_or_default(),
            },
            View::List,
        ),
        Some(c) if c.sees_counts_of(channel) => (Seat::Anonymous, View::Counts),
        _ => (Seat::Anonymous, View::Nothing),
    }
}

/// Totals for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Channels with at least one member.
    pub channels: usize,
    /// Members (users) over all channels.
    pub members: usize,
}

/// What one flush sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Frames queued to viewers.
    pub frames: usize,
    /// Viewers whose queue overflowed (slow consumers, closed with 4408).
    pub overflowed: usize,
}

struct MemberEntry {
    info: MemberInfo,
    connections: usize,
}

struct Viewer {
    outbox: Arc<Outbox>,
    /// Joined since the last flush: gets the whole `presence` frame at the
    /// next flush instead of that flush's changes (which its view, taken at
    /// the flush, already holds).
    fresh: bool,
    /// Shown the member list (a member), else the counts only.
    lists: bool,
    /// The member this connection is, if it is one.
    member: Option<String>,
    /// With shared presence: its own seat is in the channel's shared view
    /// (it was written to the store before the last read), so its first
    /// `presence` frame may be sent.
    synced: bool,
}

struct Channel {
    members: HashMap<String, MemberEntry>,
    anonymous: usize,
    viewers: HashMap<SubscriberId, Viewer>,
    /// With shared presence: the channel over every node, as last read.
    shared: Option<SharedPresence>,
    /// The members listed at the last flush (empty when the list was not kept).
    sent_members: HashSet<String>,
    /// With shared presence: this node's part changed since it was last
    /// written to the store (else only its expiry is renewed).
    part_changed: bool,
    /// Whether the list was kept (under the cap) at the last flush.
    sent_listed: bool,
    /// (members, anonymous) at the last flush.
    sent_counts: (usize, usize),
}

impl Channel {
    fn new() -> Self {
        Channel {
            members: HashMap::new(),
            anonymous: 0,
            viewers: HashMap::new(),
            shared: None,
            sent_members: HashSet::new(),
            part_changed: true,
            sent_listed: true,
            sent_counts: (0, 0),
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.anonymous == 0 && self.viewers.is_empty()
    }

    /// The channel's presence as viewers are shown it: the members ordered
    /// by `sub` (so every viewer sees the same list; none beyond the cap),
    /// the member count and the anonymous count. With shared presence, over
    /// every node; else this node's.
    fn totals(&self, cap: usize) -> (Option<Vec<Member>>, usize, usize) {
        if let Some(shared) = &self.shared {
            return (
                shared.members.clone(),
                shared.member_count,
                shared.anonymous,
            );
        }
        let list = (self.members.len() <= cap).then(|| {
            let mut list: Vec<Member> = self
                .members
                .iter()
                .map(|(sub, m)| Member {
                    sub: sub.clone(),
                    info: m.info.clone(),
                })
                .collect();
            list.sort_by(|a, b| a.sub.cmp(&b.sub));
            list
        });
        (list, self.members.len(), self.anonymous)
    }

    fn snapshot(&self, name: &str, view: View, cap: usize) -> ServerFrame {
        let (list, member_count, anonymous) = self.totals(cap);
        ServerFrame::Presence {
            channel: name.to_owned(),
            members: list.filter(|_| view == View::List),
            member_count,
            anonymous,
        }
    }
}

#[derive(Default)]
struct Inner {
    channels: HashMap<String, Channel>,
    /// Channels changed since the last flush.
    dirty: HashSet<String>,
    /// Channels forgotten since the last sync, whose part in the shared
    /// presence is still to be withdrawn.
    gone: HashSet<String>,
}

/// Every channel's presence on this node.
pub struct Presence {
    inner: Mutex<Inner>,
    /// Members listed per channel (`--max-presence-members`).
    cap: usize,
    /// Shared with other nodes through the engine's store
    /// ([`Presence::local_parts`], [`Presence::apply_shared`]).
    shares: bool,
}

impl Presence {
    /// Empty presence listing at most `cap` members per channel.
    pub fn new(cap: usize) -> Self {
        Presence {
            inner: Mutex::new(Inner::default()),
            cap,
            shares: false,
        }
    }

    /// Empty presence listing at most `cap` members per channel, shown as
    /// the engine's store has it over every node: each tick, this node's
    /// part goes out ([`Presence::local_parts`]) and the whole comes back
    /// ([`Presence::apply_shared`]) before [`Presence::flush`].
    pub fn shared(cap: usize) -> Self {
        Presence {
            shares: true,
            ..Presence::new(cap)
        }
    }

    /// Members listed per channel at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Whether presence is shared with other nodes.
    pub fn shares(&self) -> bool {
        self.shares
    }

    /// This node's part of every channel's presence, to write to the shared
    /// store (an empty part for a channel forgotten since the last call).
    /// Every viewer counted here may get its first frame once the store's
    /// answer is applied.
    pub fn local_parts(&self) -> Vec<LocalPresence> {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let mut parts: Vec<LocalPresence> = inner
            .gone
            .drain()
            .filter(|name| !inner.channels.contains_key(name))
            .map(|channel| LocalPresence {
                channel,
                members: Vec::new(),
                anonymous: 0,
                unchanged: false,
            })
            .collect();
        for (name, ch) in &mut inner.channels {
            for viewer in ch.viewers.values_mut() {
                viewer.synced = true;
            }
            if !std::mem::take(&mut ch.part_changed) {
                parts.push(LocalPresence {
                    channel: name.clone(),
                    members: Vec::new(),
                    anonymous: 0,
                    unchanged: true,
                });
                continue;
            }
            parts.push(LocalPresence {
                channel: name.clone(),
                members: ch
                    .members
                    .iter()
                    .map(|(sub, m)| {
                        let info = serde_json::to_string(&m.info).unwrap_or_default();
                        (sub.clone(), info)
                    })
                    .collect(),
                anonymous: ch.anonymous,
                unchanged: false,
            });
        }
        parts
    }

    /// The store did not take the parts from [`Presence::local_parts`]
    /// (it did not answer): every part is written whole at the next sync.
    pub fn sync_failed(&self, parts: &[LocalPresence]) {
        let mut inner = lock(&self.inner);
        for part in parts {
            match inner.channels.get_mut(&part.channel) {
                Some(ch) => ch.part_changed = true,
                None if part.members.is_empty() && !part.unchanged => {
                    inner.gone.insert(part.channel.clone());
                }
                None => {}
            }
        }
    }

    /// Takes each channel's presence over every node, as the store answered
    /// for `parts` (in their order); channels whose presence changed send
    /// their frames at the next flush.
    pub fn apply_shared(&self, parts: &[LocalPresence], shared: Vec<SharedPresence>) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        for (part, shared) in parts.iter().zip(shared) {
            let Some(ch) = inner.channels.get_mut(&part.channel) else {
                continue;
            };
            if shared.lost {
                ch.part_changed = true;
            }
            let same = ch.shared.as_ref().is_some_and(|old| {
                (&old.members, old.member_count, old.anonymous)
                    == (&shared.members, shared.member_count, shared.anonymous)
            });
            if !same {
                ch.shared = Some(shared);
                inner.dirty.insert(part.channel.clone());
            }
        }
    }

    /// Counts a new subscription of connection `id` to `channel` and, when
    /// it views presence, registers `outbox` for the channel's presence
    /// frames: the whole `presence` frame at the next flush (within one
    /// [`PRESENCE_TICK`]), then the changes. Taking the view at the flush,
    /// not now, is what keeps every viewer's list exact: the changes a
    /// flush sends are those since the previous flush.
    pub fn join(
        &self,
        channel: &str,
        id: SubscriberId,
        seat: Seat,
        view: View,
        outbox: &Arc<Outbox>,
    ) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let ch = inner
            .channels
            .entry(channel.to_owned())
            .or_insert_with(Channel::new);
        let member = match seat {
            Seat::Member { sub, info } => {
                let entry = ch
                    .members
                    .entry(sub.clone())
                    .or_insert_with(|| MemberEntry {
                        info,
                        connections: 0,
                    });
                entry.connections += 1;
                ch.part_changed |= entry.connections == 1;
                Some(sub)
            }
            Seat::Anonymous => {
                ch.anonymous += 1;
                ch.part_changed = true;
                None
            }
        };
        if view != View::Nothing {
            ch.viewers.insert(
                id,
                Viewer {
                    outbox: Arc::clone(outbox),
                    fresh: true,
                    lists: view == View::List,
                    member,
                    synced: !self.shares,
                },
            );
        }
        inner.dirty.insert(channel.to_owned());
    }

    /// Ends connection `id`'s subscription to `channel` (it must have joined it).
    pub fn leave(&self, channel: &str, id: SubscriberId) {
        let mut inner = lock(&self.inner);
        let Some(ch) = inner.channels.get_mut(channel) else {
            return;
        };
        match ch.viewers.remove(&id).and_then(|v| v.member) {
            Some(sub) => {
                if let Some(entry) = ch.members.get_mut(&sub) {
                    entry.connections -= 1;
                    if entry.connections == 0 {
                        ch.members.remove(&sub);
                        ch.part_changed = true;
                    }
                }
            }
            None => {
                ch.anonymous = ch.anonymous.saturating_sub(1);
                ch.part_changed = true;
            }
        }
        if ch.is_empty() {
            inner.channels.remove(channel);
            inner.dirty.remove(channel);
            if self.shares {
                inner.gone.insert(channel.to_owned());
            }
        } else {
            inner.dirty.insert(channel.to_owned());
        }
    }

    /// Sends every changed channel's coalesced frames: to viewers that
    /// joined since the last flush, the whole `presence` frame; to the
    /// other members, a `presence` frame when the list starts or stops being
    /// kept, else the net `join` and `leave`; to the other viewers,
    /// `presence_count` when the counts changed.
    pub fn flush(&self) -> Flushed {
        let mut out = Flushed::default();
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let mut waiting = Vec::new();
        for name in std::mem::take(&mut inner.dirty) {
            let Some(ch) = inner.channels.get_mut(&name) else {
                continue;
            };
            if self.shares && (ch.shared.is_none() || ch.viewers.values().any(|v| !v.synced)) {
                // Its view over every node is not read yet (or not with every
                // viewer's own seat in it): the next sync will tell.
                waiting.push(name);
                continue;
            }
            let (list, member_count, anonymous) = ch.totals(self.cap);
            let listed = list.is_some();
            let counts = (member_count, anonymous);
            let now: HashSet<String> = list.iter().flatten().map(|m| m.sub.clone()).collect();
            let before = std::mem::replace(&mut ch.sent_members, now);
            let was_listed = std::mem::replace(&mut ch.sent_listed, listed);
            let counts_changed = std::mem::replace(&mut ch.sent_counts, counts) != counts;
            if ch.viewers.is_empty() {
                continue;
            }
            let mut to_listers = Vec::new();
            if listed != was_listed {
                to_listers.push(ch.snapshot(&name, View::List, self.cap));
            } else if let Some(list) = list {
                let joined: Vec<Member> = list
                    .into_iter()
                    .filter(|m| !before.contains(&m.sub))
                    .collect();
                let mut left: Vec<String> = before
                    .into_iter()
                    .filter(|sub| !ch.sent_members.contains(sub))
                    .collect();
                left.sort();
                if !left.is_empty() {
                    to_listers.push(ServerFrame::Leave {
                        channel: name.clone(),
                        subs: left,
                    });
                }
                if !joined.is_empty() {
                    to_listers.push(ServerFrame::Join {
                        channel: name.clone(),
                        members: joined,
                    });
                }
            }
            let to_all = counts_changed.then(|| ServerFrame::PresenceCount {
                channel: name.clone(),
                member_count: counts.0,
                anonymous: counts.1,
            });
            let to_listers: Vec<Utf8Bytes> = to_listers.iter().map(|f| f.encode().into()).collect();
            let to_all: Option<Utf8Bytes> = to_all.map(|f| f.encode().into());
            let snapshot_for = |lists: bool| -> Option<Utf8Bytes> {
                ch.viewers
                    .values()
                    .any(|v| v.fresh && v.lists == lists)
                    .then(|| {
                        let view = if lists { View::List } else { View::Counts };
                        ch.snapshot(&name, view, self.cap).encode().into()
                    })
            };
            let (list_snapshot, count_snapshot) = (snapshot_for(true), snapshot_for(false));
            for viewer in ch.viewers.values_mut() {
                let fresh = std::mem::replace(&mut viewer.fresh, false);
                let frames: Vec<&Utf8Bytes> = match (fresh, viewer.lists) {
                    (true, true) => list_snapshot.iter().collect(),
                    (true, false) => count_snapshot.iter().collect(),
                    (false, true) => to_listers.iter().chain(&to_all).collect(),
                    (false, false) => to_all.iter().collect(),
                };
                for frame in frames {
                    match viewer.outbox.push(frame.clone()) {
                        Push::Queued => out.frames += 1,
                        Push::Overflowed => out.overflowed += 1,
                        Push::Dropped => {}
                    }
                }
            }
        }
        inner.dirty.extend(waiting);
        out
    }

    /// Totals for `/metrics`.
    pub fn stats(&self) -> PresenceStats {
        let inner = lock(&self.inner);
        let mut stats = PresenceStats::default();
        for ch in inner.channels.values() {
            if !ch.members.is_empty() {
                stats.channels += 1;
                stats.members += ch.members.len();
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(sub: &str) -> Seat {
        Seat::Member {
            sub: sub.into(),
            info: MemberInfo {
                name: sub.to_uppercase(),
                avatar: None,
            },
        }
    }

    fn frames(outbox: &Outbox) -> Vec<serde_json::Value> {
        let mut batch = Vec::new();
        outbox.drain_into(&mut batch, usize::MAX);
        batch
            .iter()
            .map(|f| serde_json::from_str(f.as_str()).unwrap())
            .collect()
    }

    #[test]
    fn a_join_and_leave_within_one_tick_is_never_announced() {
        let p = Presence::new(10);
        let watcher = Arc::new(Outbox::new(100));
        p.join("room", 1, member("a"), View::List, &watcher);
        p.flush();
        frames(&watcher);
        let other = Arc::new(Outbox::new(100));
        p.join("room", 2, member("b"), View::List, &other);
        p.leave("room", 2);
        assert_eq!(p.flush().frames, 0);
        assert!(frames(&watcher).is_empty());
    }

    fn shared(subs: &[&str], anonymous: usize) -> SharedPresence {
        SharedPresence {
            members: Some(
                subs.iter()
                    .map(|sub| Member {
                        sub: sub.to_string(),
                        info: MemberInfo {
                            name: sub.to_uppercase(),
                            avatar: None,
                        },
                    })
                    .collect(),
            ),
            member_count: subs.len(),
            anonymous,
            lost: false,
        }
    }

    #[test]
    fn shared_presence_shows_other_nodes_and_waits_for_a_viewers_own_seat() {
        let p = Presence::shared(10);
        let watcher = Arc::new(Outbox::new(100));
        p.join("room", 1, member("a"), View::List, &watcher);
        // Not written to the store yet: nothing to show.
        assert_eq!(p.flush().frames, 0);
        let parts = p.local_parts();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].members.len(), 1);
        assert!(!parts[0].unchanged);
        // Another node's "b" is in the store beside "a".
        p.apply_shared(&parts, vec![shared(&["a", "b"], 0)]);
        p.flush();
        let got = frames(&watcher);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["type"], "presence");
        assert_eq!(got[0]["member_count"], 2);

        // Nothing changed here: only the expiry is renewed. "b" left elsewhere.
        let parts = p.local_parts();
        assert!(parts[0].unchanged);
        p.apply_shared(&parts, vec![shared(&["a"], 0)]);
        p.flush();
        let got = frames(&watcher);
        assert_eq!(got[0]["type"], "leave");
        assert_eq!(got[0]["subs"], serde_json::json!(["b"]));

        // The store lost this node's part: it is written whole next time.
        let parts = p.local_parts();
        p.apply_shared(
            &parts,
            vec![SharedPresence {
                lost: true,
                ..shared(&[], 0)
            }],
        );
        assert!(!p.local_parts()[0].unchanged);

        // The channel forgotten here is withdrawn from the store.
        p.leave("room", 1);
        let parts = p.local_parts();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].members.is_empty() && !parts[0].unchanged);
    }

    #[test]
    fn the_last_leave_forgets_the_channel() {
        let p = Presence::new(10);
        let o = Arc::new(Outbox::new(100));
        p.join("room", 1, member("a"), View::List, &o);
        p.join("room", 2, Seat::Anonymous, View::Nothing, &o);
        assert_eq!(
            p.stats(),
            PresenceStats {
                channels: 1,
                members: 1
            }
        );
        p.leave("room", 1);
        p.leave("room", 2);
        assert!(lock(&p.inner).channels.is_empty());
        assert_eq!(p.stats(), PresenceStats::default());
    }
}
