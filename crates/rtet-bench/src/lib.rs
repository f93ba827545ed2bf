//! rtet-bench: load for rtet-relay and for two named alternatives, a Node.js
//! relay on the npm `ws` package (`bench/node-ws-peer/server.js`) and nginx
//! with the nchan module, measured the same way in the same run so the table
//! can show ratios.
//!
//! # Layout
//!
//! - [`target`]: what is measured: an address and a [`target::Dialect`]
//!   (rtet-relay's protocol, the Node peer's plain broadcast, or nchan's
//!   WebSocket subscribers and HTTP publisher).
//! - [`conn`]: one WebSocket connection from a chosen 127.0.0.x source address,
//!   which is how tens of thousands of connections pass the ephemeral-port limit.
//! - [`wire`]: the bench's event payload (`{"n":…,"t":…}`: sequence number and
//!   send time) and a scanner that finds it in a received frame without a JSON parse.
//! - [`subscriber`]: subscriber connections that count, order-check and time deliveries.
//! - [`publisher`]: the publisher: flood (acked pipelining window) or a fixed rate.
//! - [`nchan`]: nginx's configuration for the nchan peer, its HTTP answers and status.
//! - [`nodes`]: the setups of `nodes` (memory engine, Redis, two nodes on one
//!   Redis), what a round measured on each, and its table.
//! - [`probe`]: probe subscribers in a separate, pinned process, for the latency
//!   one subscriber feels apart from the load tool's own queueing.
//! - [`presence`]: presence cost (memory, CPU per join/leave) and the join/leave storm.
//! - [`scenario`]: the measurements: flood, latency, idle memory, connection rate.
//! - [`spawn`]: starting rtet-relay, the Node peer and nginx as children on free ports.
//! - [`sys`]: the fd limit, a process tree's memory and CPU, CPU pinning.
//! - [`report`]: the comparison table.
//!
//! The wire works for every target because the measurement lives in the event
//! data: rtet-relay wraps it in an `event` frame, the Node peer forwards the
//! `publish` frame as is, nchan delivers the POSTed `publish` frame as its
//! message, and all carry `"data":{"n":…,"t":…}` untouched.

pub mod conn;
pub mod nchan;
pub mod nodes;
pub mod presence;
pub mod probe;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod spawn;
pub mod subscriber;
pub mod sys;
pub mod target;
pub mod wire;
