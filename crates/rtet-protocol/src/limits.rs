//! The protocol's default limits ("Default limits"), in one place.

use std::time::Duration;

/// Shortest API key a relay accepts (and a publisher or the plugin should
/// offer). 32 characters is 128 bits or more from `openssl rand -hex 32`.
pub const MIN_API_KEY_LEN: usize = 32;

/// Most channels one `rtet_send_event()` call may name. Each channel is one
/// frame in the queue, so this bounds what one call can add to it.
pub const MAX_CHANNELS_PER_PUBLISH: usize = 64;

/// Lifetime of a subscriber token when the issuer does not choose one.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Shortest token lifetime an issuer may ask for.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(1);

/// Every limit the relay enforces and publishers respect. `Default` gives the
/// protocol's documented defaults (the one place they are written: the
/// relay's `--help` and the docs' tables are derived from or tested against
/// it); the relay makes each one configurable.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest WebSocket frame or HTTP publish body, in bytes.
    pub max_frame_bytes: usize,
    /// Largest subscriber token, in bytes.
    pub max_token_bytes: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Frames per second a subscriber may send, sustained.
    pub client_frames_per_sec: u32,
    /// Frames a subscriber may send in a burst.
    pub client_frames_burst: u32,
    /// Publishes per second for one publisher key.
    pub publishes_per_sec_per_key: u32,
    /// Open connections from one client IP.
    pub connections_per_ip: usize,
    /// Events kept per channel.
    pub history_events: usize,
    /// Age after which history events are dropped.
    pub history_age: Duration,
    /// Frames queued for one subscriber before the slow-consumer policy applies.
    pub subscriber_queue_frames: usize,
    /// How long an acked (channel, id) pair is remembered for dedupe.
    pub dedupe_window: Duration,
    /// A subscriber must send its first frame within this.
    pub first_frame_timeout: Duration,
    /// Interval between pings from the relay.
    pub ping_interval: Duration,
    /// A connection that answers no ping for this long is closed.
    pub dead_peer_timeout: Duration,
    /// Clock leeway when checking token expiry, at most 60 s.
    pub token_leeway: Duration,
    /// How deep an event's `data` may nest arrays and objects.
    /// Clients parse events recursively; a deeper value would crash them.
    pub max_data_depth: usize,
    /// Presence members listed per channel; beyond it every subscriber of the
    /// channel is shown counts only.
    pub max_presence_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_token_bytes: 4 * 1024,
            max_subscriptions: 64,
            client_frames_per_sec: 20,
            client_frames_burst: 50,
            publishes_per_sec_per_key: 10_000,
            connections_per_ip: 1_000,
            history_events: 1_000,
            history_age: Duration::from_secs(600),
            subscriber_queue_frames: 4_096,
            dedupe_window: Duration::from_secs(600),
            first_frame_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            dead_peer_timeout: Duration::from_secs(60),
            token_leeway: Duration::from_secs(60),
            max_data_depth: 64,
            max_presence_members: 100,
        }
    }
}

/// How deep arrays and objects nest in `json` (0 for a scalar), counting no
/// further than `stop`: a caller comparing with a limit needs no more.
/// Brackets inside strings do not count. `json` must be valid JSON (as a
/// parsed frame's raw `data` is).
pub fn nesting_depth(json: &str, stop: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest >= stop {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_arrays_and_objects_but_not_strings() {
        assert_eq!(nesting_depth("1", 100), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":[]}]}"#, 100), 4);
        assert_eq!(nesting_depth(r#"["[[[[", "\"[[", {}]"#, 100), 2);
        assert_eq!(nesting_depth(&"[".repeat(30_000), 65), 65, "stops counting");
    }
}
