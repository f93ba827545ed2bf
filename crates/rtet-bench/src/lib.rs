//! rtet-bench: load for rtet-relay and for a named alternative, a Node.js relay
//! on the npm `ws` package (`bench/node-ws-peer/server.js`), measured the same
//! way in the same run so the table can show ratios.
//!
//! # Layout
//!
//! - [`target`]: what is measured: an address and a [`target::Dialect`]
//!   (rtet-relay's protocol or the Node peer's plain broadcast).
//! - [`conn`]: one WebSocket connection from a chosen 127.0.0.x source address,
//!   which is how tens of thousands of connections pass the ephemeral-port limit.
//! - [`wire`]: the bench's event payload (`{"n":…,"t":…}`: sequence number and
//!   send time) and a scanner that finds it in a received frame without a JSON parse.
//! - [`subscriber`]: subscriber connections that count, order-check and time deliveries.
//! - [`publisher`]: the publisher: flood (acked pipelining window) or a fixed rate.
//! - [`scenario`]: the measurements: flood, latency, idle memory, connection rate.
//! - [`spawn`]: starting rtet-relay and the Node peer as children on free ports.
//! - [`sys`]: the fd limit and a process's resident memory.
//! - [`report`]: the comparison table.
//!
//! The wire works for both targets because the measurement lives in the event
//! data: rtet-relay wraps it in an `event` frame, the Node peer forwards the
//! `publish` frame as is, and both carry `"data":{"n":…,"t":…}` untouched.

pub mod conn;
pub mod nchan;
pub mod probe;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod spawn;
pub mod subscriber;
pub mod sys;
pub mod target;
pub mod wire;
