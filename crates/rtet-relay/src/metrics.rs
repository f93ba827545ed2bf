//! Prometheus metrics, served on `GET /metrics` in the text exposition format.
//!
//! | metric | type | labels | meaning |
//! |--------|------|--------|---------|
//! | `rtet_connections` | gauge | `role` = publisher, subscriber, http | open WebSocket connections, and HTTP publishes in flight |
//! | `rtet_connections_accepted_total` | counter | `role` = publisher, subscriber | WebSocket connections admitted and answered with the upgrade since the relay started (counted before the `101`; subscribers closed for their origin not counted) |
//! | `rtet_connections_refused_total` | counter | `reason` = per_ip, max_connections, origin, handshakes | connections refused before or at upgrade |
//! | `rtet_events_published_total` | counter | | events stored (duplicates not counted) |
//! | `rtet_duplicates_total` | counter | | publishes answered from the dedupe window |
//! | `rtet_deliveries_total` | counter | | event frames queued to subscribers, replays included |
//! | `rtet_slow_consumer_disconnects_total` | counter | | subscribers closed with 4408 because their queue overflowed |
//! | `rtet_nacks_total` | counter | `code` | refused publisher frames (nacks, errors on /publish, HTTP publish errors) by code |
//! | `rtet_subscriber_errors_total` | counter | `code` | `error` frames sent to subscribers by code |
//! | `rtet_auth_failures_total` | counter | `role` | refused API keys (publisher) and tokens (subscriber) |
//! | `rtet_channels` | gauge | | channels held by the engine |
//! | `rtet_history_events` | gauge | | events held in all channels' history |
//! | `rtet_history_bytes` | gauge | | bytes of encoded events in all channels' history |
//! | `rtet_subscriptions` | gauge | | subscriptions over all channels |
//! | `rtet_replay_bytes_total` | counter | | bytes of history replayed to subscribers |
//! | `rtet_replays_cut_total` | counter | | subscribes with `since` answered `recovered: false` because the replay was over a replay bound or budget |
//! | `rtet_dedupe_entries` | gauge | | (channel, id) pairs remembered for dedupe in all channels |
//! | `rtet_presence_members` | gauge | | presence members (users, not connections) over all channels |
//! | `rtet_presence_channels` | gauge | | channels with at least one presence member |
//! | `rtet_engine_up` | gauge | | 1 when the engine's backing store answers (always, in memory), else 0 (and `/healthz` answers 503) |
//! | `rtet_engine_errors_total` | counter | `op` = publish, subscribe, history, pubsub, maintain, corrupt | failed operations of the engine's backing store |
//! | `rtet_budget_refusals_total` | counter | `budget` = channels, history_bytes, dedupe_entries | publishes and subscribes refused `rate_limited` because a global memory budget was spent |

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rtet_protocol::ErrorCode;

use crate::engine::EngineStats;
use crate::presence::PresenceStats;

/// Which endpoint a connection came in on.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Role {
    /// `/publish` (and HTTP publish, for auth failures).
    publisher,
    /// `/ws`.
    subscriber,
    /// An HTTP publish in flight (`POST /api/send-event`).
    http,
}

/// Label set `{role="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// The role.
    pub role: Role,
}

/// Label set `{code="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// An error code as on the wire.
    pub code: &'static str,
}

/// Label set `{reason="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why a connection was refused.
    pub reason: &'static str,
}

/// Label set `{budget="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabel {
    /// Which global budget was spent.
    pub budget: &'static str,
}

/// Label set `{op="..."}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// The engine operation that failed.
    pub op: &'static str,
}

/// Every metric of the relay, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Open connections by role.
    pub connections: Family<RoleLabel, Gauge>,
    /// Connections admitted to the upgrade by role, since start.
    pub accepted: Family<RoleLabel, Counter>,
    /// Connections refused by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// Events stored.
    pub events_published: Counter,
    /// Duplicate publishes.
    pub duplicates: Counter,
    /// Event frames queued to subscribers.
    pub deliveries: Counter,
    /// Slow subscribers disconnected.
    pub slow_consumers: Counter,
    /// Nacks by code.
    pub nacks: Family<CodeLabel, Counter>,
    /// Subscriber error frames by code.
    pub subscriber_errors: Family<CodeLabel, Counter>,
    /// Auth failures by role.
    pub auth_failures: Family<RoleLabel, Counter>,
    channels: Gauge,
    history_events: Gauge,
    history_bytes: Gauge,
    subscriptions: Gauge,
    dedupe_entries: Gauge,
    presence_members: Gauge,
    presence_channels: Gauge,
    /// Bytes of history replayed.
    pub replay_bytes: Counter,
    /// Replays not sent for a replay bound or budget.
    pub replays_cut: Counter,
    /// Refusals because a global memory budget was spent, by budget.
    pub budget_refusals: Family<BudgetLabel, Counter>,
    engine_up: Gauge,
    engine_errors: Family<OpLabel, Counter>,
    /// The engine's own deliveries and overflows already added to the counters.
    fed_seen: std::sync::Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            connections: Family::default(),
            accepted: Family::default(),
            refused: Family::default(),
            events_published: Counter::default(),
            duplicates: Counter::default(),
            deliveries: Counter::default(),
            slow_consumers: Counter::default(),
            nacks: Family::default(),
            subscriber_errors: Family::default(),
            auth_failures: Family::default(),
            channels: Gauge::default(),
            history_events: Gauge::default(),
            history_bytes: Gauge::default(),
            subscriptions: Gauge::default(),
            dedupe_entries: Gauge::default(),
            presence_members: Gauge::default(),
            presence_channels: Gauge::default(),
            replay_bytes: Counter::default(),
            replays_cut: Counter::default(),
            budget_refusals: Family::default(),
            engine_up: Gauge::default(),
            engine_errors: Family::default(),
            fed_seen: std::sync::Mutex::new((0, 0)),
            registry: Registry::default(),
        };
        registry.register(
            "rtet_connections",
            "Open WebSocket connections by role, and HTTP publishes in flight",
            m.connections.clone(),
        );
        registry.register(
            "rtet_connections_accepted",
            "WebSocket connections accepted (answered with the upgrade) since start, by role",
            m.accepted.clone(),
        );
        registry.register(
            "rtet_connections_refused",
            "Connections refused (per-IP limit, connection limit, origin)",
            m.refused.clone(),
        );
        registry.register(
            "rtet_events_published",
            "Events stored and fanned out (duplicates not counted)",
            m.events_published.clone(),
        );
        registry.register(
            "rtet_duplicates",
            "Publishes answered from the dedupe window without a second delivery",
            m.duplicates.clone(),
        );
        registry.register(
            "rtet_deliveries",
            "Event frames queued to subscribers, replays included",
            m.deliveries.clone(),
        );
        registry.register(
            "rtet_slow_consumer_disconnects",
            "Subscribers closed with 4408 because their outgoing queue overflowed",
            m.slow_consumers.clone(),
        );
        registry.register(
            "rtet_nacks",
            "Refused publisher frames (nacks, errors on /publish, HTTP publish errors) by code",
            m.nacks.clone(),
        );
        registry.register(
            "rtet_subscriber_errors",
            "Error frames sent to subscribers by code",
            m.subscriber_errors.clone(),
        );
        registry.register(
            "rtet_auth_failures",
            "Refused API keys (publisher) and tokens (subscriber)",
            m.auth_failures.clone(),
        );
        registry.register("rtet_channels", "Channels held", m.channels.clone());
        registry.register(
            "rtet_history_events",
            "Events held in all channels' history",
            m.history_events.clone(),
        );
        registry.register(
            "rtet_history_bytes",
            "Bytes of encoded events in all channels' history",
            m.history_bytes.clone(),
        );
        registry.register(
            "rtet_subscriptions",
            "Subscriptions over all channels",
            m.subscriptions.clone(),
        );
        registry.register(
            "rtet_dedupe_entries",
            "(channel, id) pairs remembered for dedupe in all channels",
            m.dedupe_entries.clone(),
        );
        registry.register(
            "rtet_presence_members",
            "Presence members (users, not connections) over all channels",
            m.presence_members.clone(),
        );
        registry.register(
            "rtet_presence_channels",
            "Channels with at least one presence member",
            m.presence_channels.clone(),
        );
        registry.register(
            "rtet_replay_bytes",
            "Bytes of history replayed to subscribers",
            m.replay_bytes.clone(),
        );
        registry.register(
            "rtet_replays_cut",
            "Subscribes with since answered recovered false because the replay was over a replay bound or budget",
            m.replays_cut.clone(),
        );
        registry.register(
            "rtet_budget_refusals",
            "Publishes and subscribes refused rate_limited because a global memory budget was spent",
            m.budget_refusals.clone(),
        );
        registry.register(
            "rtet_engine_up",
            "1 when the engine's backing store answers, else 0",
            m.engine_up.clone(),
        );
        registry.register(
            "rtet_engine_errors",
            "Failed operations of the engine's backing store",
            m.engine_errors.clone(),
        );
        // Both roles show from the start (0), so a scrape can tell "none yet" from "not exported".
        for role in [Role::publisher, Role::subscriber] {
            let _ = m.accepted.get_or_create(&RoleLabel { role });
        }
        Metrics { registry, ..m }
    }

    /// Counts a nack (or HTTP publish error).
    pub fn nack(&self, code: ErrorCode) {
        self.nacks
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
    }

    /// Counts an error frame to a subscriber.
    pub fn subscriber_error(&self, code: ErrorCode) {
        self.subscriber_errors
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
    }

    /// Counts an auth failure.
    pub fn auth_failure(&self, role: Role) {
        self.auth_failures.get_or_create(&RoleLabel { role }).inc();
    }

    /// Counts a connection admitted to the upgrade.
    pub fn accepted(&self, role: Role) {
        self.accepted.get_or_create(&RoleLabel { role }).inc();
    }

    /// Counts a refusal for a spent global budget.
    pub fn budget_refused(&self, budget: &'static str) {
        self.budget_refusals
            .get_or_create(&BudgetLabel { budget })
            .inc();
    }

    /// Counts a refused connection.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Renders the text exposition, with the engine's and presence's totals as of now.
    pub fn render(&self, stats: EngineStats, presence: PresenceStats) -> String {
        self.presence_members.set(presence.members as i64);
        self.presence_channels.set(presence.channels as i64);
        self.channels.set(stats.channels as i64);
        self.history_events.set(stats.history_events as i64);
        self.history_bytes.set(stats.history_bytes as i64);
        self.subscriptions.set(stats.subscriptions as i64);
        self.dedupe_entries.set(stats.dedupe_entries as i64);
        self.engine_up.set(i64::from(!stats.down));
        {
            // Deliveries the engine made on its own (events from other nodes) count as any other.
            let mut seen = rtet_protocol::sync::lock(&self.fed_seen);
            self.deliveries
                .inc_by(stats.fed_deliveries.saturating_sub(seen.0));
            self.slow_consumers
                .inc_by(stats.fed_overflows.saturating_sub(seen.1));
            *seen = (stats.fed_deliveries, stats.fed_overflows);
        }
        for (op, n) in stats.errors.by_op() {
            // The engine keeps the count; the counter shows it.
            self.engine_errors
                .get_or_create(&OpLabel { op })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
