//! The in-memory engine: one mutex-guarded state per channel.
//!
//! Publishing takes the channel's lock, assigns `seq`, encodes the event once
//! and, still holding it, has the [`Hub`] push the same bytes into every
//! subscriber's [`Outbox`] without waiting. Subscribing takes the same lock
//! to read the replay and register the outbox with the hub, so replay and
//! live events meet exactly. History lives as long
//! as this process: each channel gets a random epoch when it is created, so a
//! restart (or a channel forgotten after going quiet) is visible to clients.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtet_protocol::frames::encode_event;
use rtet_protocol::{PublishFrame, Since};
use tokio::time::Instant;
use tungstenite::Utf8Bytes;

use super::hub::Hub;
use super::{
    new_epoch, BoxFuture, Engine, EngineError, EngineStats, History, Published, SubscriberId,
    Subscription,
};
use crate::config::Config;
use crate::outbox::Outbox;
use rtet_protocol::sync::lock;

/// Bounds of the in-memory engine, taken from the relay's [`Config`].
#[derive(Debug, Clone)]
pub struct MemoryEngineConfig {
    /// Events kept per channel.
    pub history_events: usize,
    /// Age after which an event leaves history.
    pub history_age: Duration,
    /// How long an acked (channel, id) is remembered.
    pub dedupe_window: Duration,
    /// Channels held at once.
    pub max_channels: usize,
    /// Bytes of encoded events in all channels' history together.
    pub max_history_bytes: usize,
    /// Remembered (channel, id) pairs in all channels together.
    pub max_dedupe_entries: usize,
}

impl From<&Config> for MemoryEngineConfig {
    fn from(config: &Config) -> Self {
        MemoryEngineConfig {
            history_events: config.limits.history_events,
            history_age: config.limits.history_age,
            dedupe_window: config.limits.dedupe_window,
            max_channels: config.max_channels,
            max_history_bytes: config.max_history_bytes,
            max_dedupe_entries: config.max_dedupe_entries,
        }
    }
}

impl Default for MemoryEngineConfig {
    /// The relay's defaults.
    fn default() -> Self {
        MemoryEngineConfig::from(&Config::new(Vec::<String>::new()))
    }
}

/// An amount all channels draw from, with a ceiling: history bytes, dedupe entries.
struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    fn new(max: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `n` if that stays within the ceiling.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

struct Stored {
    seq: u64,
    at: Instant,
    frame: Utf8Bytes,
}

struct ChannelState {
    /// Set when the channel was removed from the map; holders of the `Arc` must look again.
    dead: bool,
    epoch: String,
    seq: u64,
    history: VecDeque<Stored>,
    dedupe: HashMap<String, u64>,
    dedupe_order: VecDeque<(Instant, String)>,
}

type Channel = Mutex<ChannelState>;

/// Fan-out and history in this process's memory.
pub struct MemoryEngine {
    config: MemoryEngineConfig,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    history_events: AtomicUsize,
    history_bytes: Budget,
    dedupe_entries: Budget,
    /// This process's subscribers; a publish fans out through it while it
    /// holds the channel's lock, so deliveries follow `seq` exactly.
    hub: Hub,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new(config: MemoryEngineConfig) -> Self {
        MemoryEngine {
            channels: Mutex::new(HashMap::new()),
            history_events: AtomicUsize::new(0),
            history_bytes: Budget::new(config.max_history_bytes),
            dedupe_entries: Budget::new(config.max_dedupe_entries),
            hub: Hub::new(),
            config,
        }
    }

    /// Runs `f` on the channel's locked state, creating the channel if needed.
    fn with_channel<R>(
        &self,
        name: &str,
        f: impl Fn(&mut ChannelState) -> R,
    ) -> Result<R, EngineError> {
        loop {
            let channel = {
                let mut map = lock(&self.channels);
                match map.get(name) {
                    Some(c) => Arc::clone(c),
                    None => {
                        if map.len() >= self.config.max_channels {
                            return Err(EngineError::TooManyChannels {
                                max: self.config.max_channels,
                            });
                        }
                        let c = Arc::new(Mutex::new(ChannelState {
                            dead: false,
                            epoch: new_epoch(),
                            seq: 0,
                            history: VecDeque::new(),
                            dedupe: HashMap::new(),
                            dedupe_order: VecDeque::new(),
                        }));
                        map.insert(name.to_owned(), Arc::clone(&c));
                        c
                    }
                }
            };
            let mut state = lock(&channel);
            if state.dead {
                // Removed by `maintain` between the map lookup and our lock: look again.
                continue;
            }
            return Ok(f(&mut state));
        }
    }

    fn existing(&self, name: &str) -> Option<Arc<Channel>> {
        lock(&self.channels).get(name).cloned()
    }

    /// Drops history older than the age limit and dedupe entries older than the window.
    fn expire(&self, state: &mut ChannelState, now: Instant) {
        while let Some(front) = state.history.front() {
            if now.saturating_duration_since(front.at) > self.config.history_age {
                self.forget_front(state);
            } else {
                break;
            }
        }
        while let Some((at, _)) = state.dedupe_order.front() {
            if now.saturating_duration_since(*at) > self.config.dedupe_window {
                if let Some((_, id)) = state.dedupe_order.pop_front() {
                    state.dedupe.remove(&id);
                    self.dedupe_entries.give(1);
                }
            } else {
                break;
            }
        }
    }

    fn forget_front(&self, state: &mut ChannelState) {
        if let Some(old) = state.history.pop_front() {
            self.history_events.fetch_sub(1, Ordering::Relaxed);
            self.history_bytes.give(old.frame.len());
        }
    }

    /// Stores and fans out one event, unless a global budget is spent: then
    /// nothing changes and the publisher is told to retry later.
    fn publish_locked(
        &self,
        state: &mut ChannelState,
        event: &PublishFrame,
        ts: u64,
    ) -> Result<Published, EngineError> {
        let now = Instant::now();
        self.expire(state, now);
        if let Some(&seq) = state.dedupe.get(&event.id) {
            return Ok(Published {
                seq,
                duplicate: true,
            });
        }
        let seq = state.seq + 1;
        let frame = Utf8Bytes::from(encode_event(
            &event.channel,
            seq,
            &event.id,
            &event.event,
            &event.data,
            ts,
        ));
        if !self.dedupe_entries.try_take(1) {
            return Err(EngineError::DedupeFull {
                max: self.config.max_dedupe_entries,
            });
        }
        let keep = self.config.history_events > 0;
        // At its count limit the channel drops its oldest event for this one:
        // only the difference is new to the budget.
        let pushed_out = match state.history.front() {
            Some(oldest) if keep && state.history.len() >= self.config.history_events => {
                oldest.frame.len()
            }
            _ => 0,
        };
        if keep
            && !self
                .history_bytes
                .try_take(frame.len().saturating_sub(pushed_out))
        {
            self.dedupe_entries.give(1);
            return Err(EngineError::HistoryFull {
                max: self.config.max_history_bytes,
            });
        }
        state.seq = seq;
        self.hub.deliver(&event.channel, seq, &frame);
        if keep {
            if pushed_out > 0 {
                // Taken above was the growth only; what shrinks comes back here.
                state.history.pop_front();
                self.history_bytes
                    .give(pushed_out.saturating_sub(frame.len()));
            } else {
                self.history_events.fetch_add(1, Ordering::Relaxed);
            }
            state.history.push_back(Stored {
                seq,
                at: now,
                frame,
            });
        }
        state.dedupe.insert(event.id.clone(), seq);
        state.dedupe_order.push_back((now, event.id.clone()));
        Ok(Published {
            seq,
            duplicate: false,
        })
    }

    fn subscribe_locked(
        &self,
        state: &mut ChannelState,
        channel: &str,
        since: Option<&Since>,
        subscriber: SubscriberId,
        outbox: &Arc<Outbox>,
        max_replay_bytes: usize,
    ) -> Subscription {
        self.expire(state, Instant::now());
        let mut replay_cut = false;
        let (recovered, replay) = match since {
            None => (false, Vec::new()),
            Some(since) if since.epoch != state.epoch || since.seq > state.seq => {
                (false, Vec::new())
            }
            Some(since) if since.seq == state.seq => (true, Vec::new()),
            Some(since) => {
                // Events since.seq+1 ..= state.seq are wanted; history must start at or before since.seq+1.
                match state.history.front() {
                    Some(first) if first.seq <= since.seq + 1 => {
                        let skip = (since.seq + 1 - first.seq) as usize;
                        let wanted = || state.history.iter().skip(skip);
                        let bytes: usize = wanted().map(|s| s.frame.len()).sum();
                        if bytes > max_replay_bytes {
                            replay_cut = true;
                            (false, Vec::new())
                        } else {
                            (true, wanted().map(|s| s.frame.clone()).collect())
                        }
                    }
                    _ => (false, Vec::new()),
                }
            }
        };
        // Under the channel's lock no event comes between the replay and the
        // registration, so the hub's hold is released at once.
        self.hub.add_held(channel, subscriber, Arc::clone(outbox));
        self.hub.release(channel, subscriber, state.seq);
        Subscription {
            epoch: state.epoch.clone(),
            seq: state.seq,
            recovered,
            replay,
            replay_cut,
        }
    }
}

impl Engine for MemoryEngine {
    fn publish<'a>(
        &'a self,
        event: &'a PublishFrame,
        ts: u64,
    ) -> BoxFuture<'a, Result<Published, EngineError>> {
        let result = self
            .with_channel(&event.channel, |state| {
                self.publish_locked(state, event, ts)
            })
            .and_then(|published| published);
        Box::pin(std::future::ready(result))
    }

    fn subscribe(
        &self,
        channel: String,
        since: Option<Since>,
        subscriber: SubscriberId,
        outbox: Arc<Outbox>,
        max_replay_bytes: usize,
    ) -> BoxFuture<'_, Result<Subscription, EngineError>> {
        let result = self.with_channel(&channel, |state| {
            self.subscribe_locked(
                state,
                &channel,
                since.as_ref(),
                subscriber,
                &outbox,
                max_replay_bytes,
            )
        });
        Box::pin(std::future::ready(result))
    }

    fn unsubscribe(&self, channel: String, subscriber: SubscriberId) -> BoxFuture<'_, ()> {
        self.hub.remove(&channel, subscriber);
        Box::pin(self.hub.written())
    }

    fn history(&self, channel: String) -> BoxFuture<'_, Option<History>> {
        let result = self.existing(&channel).map(|c| {
            let mut state = lock(&c);
            self.expire(&mut state, Instant::now());
            History {
                epoch: state.epoch.clone(),
                seq: state.seq,
                events: state.history.iter().map(|s| s.frame.clone()).collect(),
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.hub.written())
    }

    fn stats(&self) -> EngineStats {
        let (fed_deliveries, fed_overflows) = self.hub.totals();
        EngineStats {
            channels: lock(&self.channels).len(),
            history_events: self.history_events.load(Ordering::Relaxed),
            history_bytes: self.history_bytes.used(),
            dedupe_entries: self.dedupe_entries.used(),
            subscriptions: self.hub.subscriptions(),
            fed_deliveries,
            fed_overflows,
            ..EngineStats::default()
        }
    }

    fn maintain(&self) {
        let now = Instant::now();
        let mut map = lock(&self.channels);
        map.retain(|name, channel| {
            let mut state = lock(channel);
            self.expire(&mut state, now);
            // Subscribers register under the channel's lock, so this cannot miss one.
            let empty = state.history.is_empty() && !self.hub.has(name) && state.dedupe.is_empty();
            if empty {
                state.dead = true;
            }
            !empty
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtet_protocol::frames::parse_publish;

    fn publish(engine: &MemoryEngine, channel: &str, id: &str) -> Published {
        let frame = parse_publish(&format!(
            r#"{{"type":"publish","id":"{id}","channel":"{channel}","event":"e","data":{{"n":1}}}}"#
        ))
        .unwrap();
        futures_util::FutureExt::now_or_never(engine.publish(&frame, 1))
            .unwrap()
            .unwrap()
    }

    fn subscribe(
        engine: &MemoryEngine,
        since: Option<Since>,
        outbox: &Arc<Outbox>,
    ) -> Subscription {
        futures_util::FutureExt::now_or_never(engine.subscribe(
            "c".into(),
            since,
            1,
            Arc::clone(outbox),
            usize::MAX,
        ))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn seq_increases_and_duplicates_keep_their_seq() {
        let e = MemoryEngine::new(MemoryEngineConfig::default());
        assert_eq!(publish(&e, "c", "a").seq, 1);
        assert_eq!(publish(&e, "c", "b").seq, 2);
        let dup = publish(&e, "c", "a");
        assert_eq!((dup.seq, dup.duplicate), (1, true));
        assert_eq!(publish(&e, "other", "a").seq, 1, "dedupe is per channel");
    }

    #[test]
    fn replay_after_since_and_recovered_rules() {
        let e = MemoryEngine::new(MemoryEngineConfig {
            history_events: 3,
            ..Default::default()
        });
        let q = Arc::new(Outbox::new(10));
        let first = subscribe(&e, None, &q);
        assert_eq!((first.seq, first.recovered), (0, false));
        for i in 0..5 {
            publish(&e, "c", &format!("id{i}"));
        }
        let epoch = first.epoch.clone();
        let s = subscribe(
            &e,
            Some(Since {
                epoch: epoch.clone(),
                seq: 2,
            }),
            &q,
        );
        assert!(s.recovered);
        assert_eq!(s.replay.len(), 3, "seq 3, 4, 5");
        let s = subscribe(
            &e,
            Some(Since {
                epoch: epoch.clone(),
                seq: 1,
            }),
            &q,
        );
        assert!(!s.recovered, "seq 2 has left history");
        assert!(s.replay.is_empty());
        let s = subscribe(
            &e,
            Some(Since {
                epoch: "other".into(),
                seq: 4,
            }),
            &q,
        );
        assert!(!s.recovered && s.replay.is_empty());
        let s = subscribe(&e, Some(Since { epoch, seq: 5 }), &q);
        assert!(s.recovered && s.replay.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn history_drops_events_older_than_the_age_limit() {
        let e = MemoryEngine::new(MemoryEngineConfig {
            history_age: Duration::from_secs(60),
            ..Default::default()
        });
        publish(&e, "c", "old");
        tokio::time::advance(Duration::from_secs(45)).await;
        publish(&e, "c", "new");
        tokio::time::advance(Duration::from_secs(30)).await;
        let q = Arc::new(Outbox::new(10));
        let epoch = subscribe(&e, None, &q).epoch;
        let s = subscribe(
            &e,
            Some(Since {
                epoch: epoch.clone(),
                seq: 0,
            }),
            &q,
        );
        assert!(!s.recovered, "seq 1 aged out");
        let s = subscribe(&e, Some(Since { epoch, seq: 1 }), &q);
        assert!(s.recovered);
        assert_eq!(s.replay.len(), 1);
        assert_eq!(e.stats().history_events, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dedupe_lasts_the_window_and_quiet_channels_are_forgotten_with_a_new_epoch() {
        let e = MemoryEngine::new(MemoryEngineConfig::default());
        publish(&e, "c", "a");
        let epoch = futures_util::FutureExt::now_or_never(e.history("c".into()))
            .unwrap()
            .unwrap()
            .epoch;
        tokio::time::advance(Duration::from_secs(599)).await;
        e.maintain();
        assert!(publish(&e, "c", "a").duplicate, "still within 10 minutes");
        tokio::time::advance(Duration::from_secs(2)).await;
        e.maintain();
        assert_eq!(e.stats().channels, 0, "nothing left: forgotten");
        let again = publish(&e, "c", "a");
        assert!(!again.duplicate);
        assert_eq!(again.seq, 1);
        let new_epoch = futures_util::FutureExt::now_or_never(e.history("c".into()))
            .unwrap()
            .unwrap()
            .epoch;
        assert_ne!(new_epoch, epoch, "a new life of the channel's history");
    }

    #[test]
    fn fan_out_pushes_the_same_bytes_to_every_subscriber() {
        let e = MemoryEngine::new(MemoryEngineConfig::default());
        let (a, b) = (Arc::new(Outbox::new(10)), Arc::new(Outbox::new(1)));
        futures_util::FutureExt::now_or_never(e.subscribe("c".into(), None, 1, Arc::clone(&a), 0));
        futures_util::FutureExt::now_or_never(e.subscribe("c".into(), None, 2, Arc::clone(&b), 0));
        publish(&e, "c", "x");
        let stats = e.stats();
        assert_eq!((stats.fed_deliveries, stats.fed_overflows), (2, 0));
        publish(&e, "c", "y");
        let stats = e.stats();
        assert_eq!(
            (stats.fed_deliveries, stats.fed_overflows),
            (3, 1),
            "b's queue of 1 overflowed"
        );
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        a.drain_into(&mut fa, 10);
        b.drain_into(&mut fb, 10);
        assert!(
            fb.is_empty(),
            "an overflowed queue is emptied: its connection closes"
        );
        assert_eq!(fa.len(), 2);
        assert!(fa[0].as_str().contains(r#""id":"x""#));
    }

    #[test]
    fn too_many_channels_is_refused() {
        let e = MemoryEngine::new(MemoryEngineConfig {
            max_channels: 1,
            ..Default::default()
        });
        publish(&e, "a", "1");
        let frame =
            parse_publish(r#"{"type":"publish","id":"1","channel":"b","event":"e"}"#).unwrap();
        let err = futures_util::FutureExt::now_or_never(e.publish(&frame, 1))
            .unwrap()
            .unwrap_err();
        assert_eq!(err, EngineError::TooManyChannels { max: 1 });
    }

    fn try_publish(
        engine: &MemoryEngine,
        channel: &str,
        id: &str,
    ) -> Result<Published, EngineError> {
        let frame = parse_publish(&format!(
            r#"{{"type":"publish","id":"{id}","channel":"{channel}","event":"e","data":{{"n":1}}}}"#
        ))
        .unwrap();
        futures_util::FutureExt::now_or_never(engine.publish(&frame, 1)).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_history_byte_budget_refuses_growth_and_frees_what_ages_out() {
        // Every test event encodes to the same length (one-character ids and channels).
        let one = {
            let probe = MemoryEngine::new(MemoryEngineConfig::default());
            publish(&probe, "c", "x");
            probe.stats().history_bytes
        };
        let e = MemoryEngine::new(MemoryEngineConfig {
            max_history_bytes: 3 * one,
            history_events: 2,
            history_age: Duration::from_secs(60),
            ..Default::default()
        });
        publish(&e, "a", "1");
        publish(&e, "a", "2");
        publish(&e, "b", "3");
        assert_eq!(e.stats().history_bytes, 3 * one);
        let err = try_publish(&e, "b", "4").unwrap_err();
        assert_eq!(err, EngineError::HistoryFull { max: 3 * one });
        assert_eq!(err.code(), rtet_protocol::ErrorCode::RateLimited);
        assert_eq!(e.stats().history_bytes, 3 * one, "a refusal stores nothing");
        assert_eq!(e.stats().dedupe_entries, 3, "nor remembers its id");
        assert_eq!(
            try_publish(&e, "b", "4").unwrap_err(),
            EngineError::HistoryFull { max: 3 * one },
            "a retry is refused again, not taken for a duplicate"
        );
        assert_eq!(
            publish(&e, "a", "5").seq,
            3,
            "a channel at its count limit swaps its oldest event: no growth"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        e.maintain();
        assert_eq!(e.stats().history_bytes, 0, "aged out: the budget is back");
        publish(&e, "c", "6");
        publish(&e, "d", "7");
    }

    #[tokio::test(start_paused = true)]
    async fn the_dedupe_budget_refuses_new_ids_but_still_answers_duplicates() {
        let e = MemoryEngine::new(MemoryEngineConfig {
            max_dedupe_entries: 2,
            ..Default::default()
        });
        publish(&e, "a", "1");
        publish(&e, "b", "2");
        assert_eq!(
            try_publish(&e, "a", "3").unwrap_err(),
            EngineError::DedupeFull { max: 2 }
        );
        assert!(
            publish(&e, "a", "1").duplicate,
            "a retry is still recognised"
        );
        assert_eq!(e.stats().dedupe_entries, 2);
        assert_eq!(
            e.stats().history_events,
            2,
            "nothing stored for the refused one"
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        e.maintain();
        assert_eq!(
            e.stats().dedupe_entries,
            0,
            "past the window: the budget is back"
        );
        assert!(!publish(&e, "a", "3").duplicate);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_channel_frees_its_place() {
        let e = MemoryEngine::new(MemoryEngineConfig {
            max_channels: 1,
            ..Default::default()
        });
        publish(&e, "a", "1");
        assert_eq!(
            try_publish(&e, "b", "1").unwrap_err(),
            EngineError::TooManyChannels { max: 1 }
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        e.maintain();
        assert_eq!(e.stats().channels, 0);
        assert_eq!(publish(&e, "b", "1").seq, 1);
    }

    #[test]
    fn a_replay_over_the_byte_bound_is_not_recovered_and_sends_nothing() {
        let e = MemoryEngine::new(MemoryEngineConfig::default());
        for i in 0..4 {
            publish(&e, "c", &format!("id{i}"));
        }
        let one = e.stats().history_bytes / 4;
        let q = Arc::new(Outbox::new(10));
        let epoch = subscribe(&e, None, &q).epoch;
        let since = |seq| {
            Some(Since {
                epoch: epoch.clone(),
                seq,
            })
        };
        let sub = |since, max| {
            futures_util::FutureExt::now_or_never(e.subscribe(
                "c".into(),
                since,
                2,
                Arc::clone(&q),
                max,
            ))
            .unwrap()
            .unwrap()
        };
        let s = sub(since(1), 3 * one);
        assert!(s.recovered && !s.replay_cut);
        assert_eq!(s.replay.len(), 3, "exactly the bound: all of it");
        let s = sub(since(0), 3 * one);
        assert!(
            !s.recovered && s.replay_cut && s.replay.is_empty(),
            "one over: none of it"
        );
        assert_eq!(s.seq, 4, "live events go on from the latest seq");
        let s = sub(since(4), 0);
        assert!(
            s.recovered && !s.replay_cut,
            "nothing to replay needs no bytes"
        );
    }
}
