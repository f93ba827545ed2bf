//! The bench's event payload and how it is found again in a received frame.
//!
//! The publisher sends `data = {"n":N,"t":T,"p":"…"}`: `n` counts events
//! from 0, `t` is the send time in microseconds since the run's clock started
//! (the system's monotonic clock, which the probe processes share), `p` pads
//! the event to a realistic size. rtet-relay copies `data` byte for byte into
//! its `event` frame; the Node peer forwards the whole `publish` frame, and
//! nchan the POST body, which is that same frame. Either
//! way the text contains `"data":{"n":N,"t":T`, which [`scan`] finds without
//! a JSON parse, so the bench spends its share of the 2 cores on sockets.

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

/// WebSocket opcodes the bench's reader handles.
pub const OP_TEXT: u8 = 0x1;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// Where one complete WebSocket frame lies at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    /// The frame's opcode (low 4 bits of its first byte).
    pub opcode: u8,
    /// Header bytes (2, 4 or 10, plus 4 if masked), before the payload.
    pub header: usize,
    /// Payload bytes.
    pub len: usize,
}

/// Finds the first complete frame in `buf` (RFC 6455 section 5.2); `None`
/// until all of it has arrived. Servers do not mask, so a masked frame is
/// reported with its masked payload (the bench never receives one).
pub fn parse_frame(buf: &[u8]) -> Option<FrameAt> {
    let (&b0, rest) = buf.split_first()?;
    let &b1 = rest.first()?;
    let masked = b1 & 0x80 != 0;
    let (len, mut header): (usize, usize) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        header += 4;
    }
    if buf.len() < header.checked_add(len)? {
        return None;
    }
    Some(FrameAt {
        opcode: b0 & 0x0f,
        header,
        len,
    })
}

/// A final client frame (masked, as clients must; the zero key leaves the
/// payload as is) with a payload under 126 bytes, e.g. a pong or a close.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut frame = vec![0x80 | opcode, 0x80 | len as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload[..len]);
    frame
}

/// The run's clock: microseconds since it started, on the system's monotonic
/// clock (`CLOCK_MONOTONIC`), which every process on the machine shares: a
/// probe process given the run's [`Clock::origin`] reads the same clock as
/// the publisher that stamped the event.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_us: u64,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        Clock {
            origin_us: monotonic_us(),
        }
    }

    /// The clock another process started at `origin` (see [`Clock::origin`]).
    pub fn from_origin(origin_us: u64) -> Self {
        Clock { origin_us }
    }

    /// When this clock started, in µs of the system's monotonic clock.
    pub fn origin(&self) -> u64 {
        self.origin_us
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        monotonic_us().saturating_sub(self.origin_us)
    }
}

/// `CLOCK_MONOTONIC` in µs.
fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
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

    #[test]
    fn parses_frames_of_each_length_form() {
        let short = [0x81, 3, b'a', b'b', b'c'];
        assert_eq!(
            parse_frame(&short),
            Some(FrameAt {
                opcode: OP_TEXT,
                header: 2,
                len: 3
            })
        );
        assert_eq!(parse_frame(&short[..4]), None);
        let mut medium = vec![0x81, 126, 0x01, 0x00];
        medium.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(
            parse_frame(&medium).map(|f| (f.header, f.len)),
            Some((4, 256))
        );
        assert_eq!(parse_frame(&medium[..200]), None);
        let mut long = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        long.extend(std::iter::repeat_n(0u8, 65_536));
        assert_eq!(
            parse_frame(&long).map(|f| (f.header, f.len)),
            Some((10, 65_536))
        );
        let ping = client_frame(OP_PING, b"hi");
        assert_eq!(
            parse_frame(&ping),
            Some(FrameAt {
                opcode: OP_PING,
                header: 6,
                len: 2
            })
        );
        assert_eq!(parse_frame(&[]), None);
    }
}
