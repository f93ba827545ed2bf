//! The rtet wire protocol (see `docs/protocol.md`), shared by the relay, the
//! publisher core and the PHP extension so they cannot drift apart.
//!
//! # Layout
//!
//! - [`names`]: the rules for channel, event and id names.
//! - [`frames`]: every JSON frame of the protocol, parsed and encoded with serde.
//! - [`limits`]: the default limits from the protocol's table, in one struct.
//! - [`token`]: HS256 subscriber tokens (JWT): signing and checking.
//! - [`close`]: WebSocket close codes the relay uses.
//!
//! Nothing here does I/O; everything is testable with plain strings.

pub mod close;
pub mod frames;
pub mod limits;
pub mod names;
pub mod token;

pub use frames::{ClientFrame, ErrorCode, FrameError, PublishFrame, ServerFrame, Since};
pub use limits::Limits;
pub use names::{validate_channel, validate_event, validate_id, NameError};
pub use token::{Claims, TokenError};

/// Makes a new event id: a ULID, which sorts by creation time and fits the id rule.
pub fn new_event_id() -> String {
    ulid::Ulid::new().to_string()
}
