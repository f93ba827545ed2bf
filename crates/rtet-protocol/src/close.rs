//! WebSocket close codes the relay sends (protocol: "Close codes").

/// The relay is shutting down ("going away").
pub const GOING_AWAY: u16 = 1001;
/// A text frame that is not valid UTF-8 ("invalid frame payload data").
pub const INVALID_DATA: u16 = 1007;
/// Policy violation: a refused `Origin`, or no first frame within the deadline.
pub const POLICY: u16 = 1008;
/// A frame larger than the frame limit.
pub const TOO_LARGE: u16 = 1009;
/// The subscriber token is invalid or has expired.
pub const TOKEN_INVALID: u16 = 4401;
/// The client did something it is not allowed to.
pub const FORBIDDEN: u16 = 4403;
/// The client sent frames faster than its rate limit, after a warning.
pub const RATE_LIMITED: u16 = 4429;
/// The subscriber fell too far behind: its outgoing queue overflowed. The
/// client reconnects and resumes with `since` (an rtet extension of the
/// protocol's table; see `docs/protocol.md`, "Slow consumers").
pub const SLOW_CONSUMER: u16 = 4408;
