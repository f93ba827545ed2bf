//! The bench's event payload and how it is found again in a received frame.
//!
//! The publisher sends `data = {"n":N,"t":T,"p":"…"}`: `n` counts events
//! from 0, `t` is the send time in microseconds since the run's clock started
//! (both ends are in this process, so one monotonic clock serves), `p` pads
//! the event to a realistic size. rtet-relay copies `data` byte for byte into
//! its `event` frame; the Node peer forwards the whole `publish` frame. Either
//! way the text contains `"data":{"n":N,"t":T`, which [`scan`] finds without
//! a JSON parse, so the bench spends its share of the 2 cores on sockets.

use std::time::Instant;

use rtet_protocol::PublishFrame;
use serde_json::value::RawValue;

/// The event name the bench publishes.
pub const EVENT: &str = "bench";

/// Builds the publish frame for event `n`, sent at `t_us`.
pub fn publish_frame(run: &str, channel: &str, n: u64, t_us: u64, pad: &str) -> String {
    let data = format!(r#"{{"n":{n},"t":{t_us},"p":"{pad}"}}"#);
    let frame = PublishFrame {
        id: format!("{run}-{n}"),
        channel: channel.to_owned(),
        event: EVENT.to_owned(),
        data: RawValue::from_string(data).unwrap_or_else(|_| rtet_protocol::frames::null_data()),
        ts: None,
    };
    frame.encode()
}

/// Padding of `bytes` ASCII characters.
pub fn padding(bytes: usize) -> String {
    "x".repeat(bytes)
}

/// Finds `(n, t)` in a frame that carries a bench event; `None` for any other frame.
pub fn scan(text: &str) -> Option<(u64, u64)> {
    const KEY: &str = r#""data":{"n":"#;
    let at = text.find(KEY)? + KEY.len();
    let rest = &text[at..];
    let (n, rest) = digits(rest)?;
    let rest = rest.strip_prefix(r#","t":"#)?;
    let (t, _) = digits(rest)?;
    Some((n, t))
}

fn digits(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// The run's clock: microseconds since it started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_both_dialects() {
        let publish = publish_frame("r1", "public", 7, 1234, "xx");
        assert_eq!(scan(&publish), Some((7, 1234)));
        let event = rtet_protocol::frames::encode_event(
            "public",
            8,
            "r1-7",
            EVENT,
            &RawValue::from_string(r#"{"n":7,"t":1234,"p":"xx"}"#.to_owned()).unwrap(),
            99,
        );
        assert_eq!(scan(&event), Some((7, 1234)));
        assert_eq!(scan(r#"{"type":"ack","id":"r1-7"}"#), None);
    }
}
