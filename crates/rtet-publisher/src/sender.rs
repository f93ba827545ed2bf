//! The background sender: one thread per publisher, running a single-threaded
//! tokio runtime that owns the WebSocket to the relay's `/publish`.
//!
//! It writes frames without waiting for answers (up to `max_inflight`),
//! matches each `ack`/`nack` to the oldest in-flight event with that id,
//! reconnects with exponential backoff and full jitter, and on a new
//! connection first sends again, in order, every event that was not acked.
//! The relay's (channel, id) dedupe makes those resends harmless.
//!
//! Order of delivery: spool files claimed from ended processes, then the
//! in-memory queue, then this process's overflow files. While overflow files
//! exist, new events go to disk too (see [`crate::Queue::spooling`]).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtet_protocol::{ErrorCode, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::spool::{SpoolFile, SpoolReader};
use crate::{lock, Error, Event, Shared};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A spool file being delivered.
struct Track {
    file: SpoolFile,
    unacked: u64,
    eof: bool,
}

struct State {
    shared: Arc<Shared>,
    inflight: VecDeque<Event>,
    reader: Option<(u64, SpoolReader)>,
    files: HashMap<u64, Track>,
    next_file: u64,
    tls: Option<native_tls::TlsConnector>,
    /// Bytes of events delivered since the allocator last gave free memory back.
    freed_since_release: usize,
}

/// Once events holding this many bytes have been delivered, the next time
/// nothing is in flight or queued the allocator's free memory goes back to
/// the system (see [`release_freed_memory`]). Counted in bytes, not events:
/// a few hundred events near the frame limit hold megabytes. A worker keeps
/// at most about this much of what its events held; below it, the release (a
/// walk of the allocator's free lists, under the lock the PHP thread's
/// allocations take) is not paid for each request's few events.
const RELEASE_AFTER_BYTES: usize = 256 * 1024;

enum End {
    /// The process is ending.
    Stop,
    /// The connection broke; reconnect after a pause.
    Lost(String),
}

/// The thread's body. Never panics out: a panic is recorded as the last error.
pub(crate) fn run(shared: Arc<Shared>) {
    let s = shared.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build();
        match rt {
            Ok(rt) => rt.block_on(main_loop(s)),
            Err(e) => s.set_error(format!("cannot start the sender runtime: {e}")),
        }
    }));
    if result.is_err() {
        shared.set_error("the sender thread failed; undelivered events are spooled at process end");
    }
    shared.connected.store(false, Ordering::Relaxed);
}

async fn main_loop(shared: Arc<Shared>) {
    let tls = match tls_connector(&shared.cfg) {
        Ok(t) => t,
        Err(e) => {
            shared.set_error(e);
            None
        }
    };
    let mut st = State {
        shared: shared.clone(),
        inflight: VecDeque::new(),
        reader: None,
        files: HashMap::new(),
        next_file: 1,
        tls,
        freed_since_release: 0,
    };
    let min = shared.cfg.reconnect_min.max(Duration::from_millis(1));
    let max = shared.cfg.reconnect_max.max(min);
    let mut backoff = min;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let connected = tokio::select! {
            r = st.connect() => r,
            _ = stopped(&shared) => break,
        };
        match connected {
            Ok(ws) => {
                shared.down.store(false, Ordering::Relaxed);
                if shared.c.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                    shared.c.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                shared.connected.store(true, Ordering::Relaxed);
                backoff = min;
                let end = st.session(ws).await;
                shared.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Stop => break,
                    End::Lost(e) => shared.set_error(e),
                }
            }
            Err(e) => shared.set_error(e),
        }
        st.relay_down();
        // Full jitter: anywhere between 0 and the current backoff.
        let pause = backoff.mul_f64(fastrand::f64());
        backoff = (backoff * 2).min(max);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.kick.notified() => {}
            _ = stopped(&shared) => break,
        }
    }
    st.spool_out();
}

/// Resolves once the stop flag is set. Only one `stopped` waits at a time,
/// so the single stored permit of `stop_n` always reaches it.
async fn stopped(shared: &Shared) {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        shared.stop_n.notified().await;
    }
}

fn tls_connector(cfg: &crate::Config) -> Result<Option<native_tls::TlsConnector>, Error> {
    let url = cfg.publish_url()?;
    if !url.starts_with("wss://") {
        return Ok(None);
    }
    let mut b = native_tls::TlsConnector::builder();
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Tls(format!("cannot read the CA file {}: {e}", ca.display())))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            Error::Tls(format!(
                "the CA file {} is not a PEM certificate: {e}",
                ca.display()
            ))
        })?;
        b.add_root_certificate(cert);
    }
    if !cfg.verify_tls {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
}

/// Buffers of the connection to the relay, sized for what it carries. The
/// relay sends a publisher only acks, nacks and pings, each well under a
/// kilobyte, and tungstenite allocates and zeroes its whole read buffer up
/// front: 4 KiB instead of its default 128 KiB, which would be most of what
/// the sender holds in a php-fpm worker. Frames go out once 16 KiB have
/// gathered, or at the flush that ends each batch. A frame from the relay
/// larger than the protocol's frame limit is refused, not buffered.
fn ws_config() -> WebSocketConfig {
    let max = rtet_protocol::Limits::default().max_frame_bytes;
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Returns the allocator's free memory to the system, once a burst (or
/// [`RELEASE_AFTER_BYTES`] of events in all) has been delivered and nothing
/// is in flight or queued. The events were allocated by the PHP thread and freed
/// here; glibc keeps such memory in its free lists unless it sits at the
/// very top of the heap, so without this a worker would keep the size of
/// its largest burst for the rest of its life. It runs on this thread, never
/// on a PHP call's path.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free pages back; it takes the
    // allocator's own locks and touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            if status.as_u16() == 401 {
                "the relay refused the API key (HTTP 401)".to_owned()
            } else {
                format!("the relay answered HTTP {status} to the upgrade")
            }
        }
        other => other.to_string(),
    }
}

impl State {
    async fn connect(&self) -> Result<Ws, Error> {
        let cfg = &self.shared.cfg;
        let url = cfg.publish_url()?;
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config(format!("bad relay URL: {e}")))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", cfg.api_key))
            .map_err(|_| Error::Config("the API key cannot be sent in a header".to_owned()))?;
        req.headers_mut().insert("authorization", auth);
        let connector = if url.starts_with("wss://") {
            match &self.tls {
                Some(t) => Some(Connector::NativeTls(t.clone())),
                None => {
                    return Err(Error::Tls(
                        "TLS is not available (see the earlier error)".into(),
                    ))
                }
            }
        } else {
            Some(Connector::Plain)
        };
        let attempt = tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(ws_config()),
            true,
            connector,
        );
        match tokio::time::timeout(cfg.connect_timeout, attempt).await {
            Ok(Ok((ws, _resp))) => Ok(ws),
            Ok(Err(e)) => Err(Error::Connect(format!(
                "cannot connect to {url}: {}",
                describe(&e)
            ))),
            Err(_) => Err(Error::Connect(format!(
                "cannot connect to {url}: no answer within {} ms",
                cfg.connect_timeout.as_millis()
            ))),
        }
    }

    /// Takes the next event to send, in delivery order, or `None` when there is nothing.
    fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some((id, reader)) = self.reader.as_mut() {
                let id = *id;
                if let Some(ev) = reader.next_event(id) {
                    if let Some(t) = self.files.get_mut(&id) {
                        t.unacked += 1;
                    }
                    return Some(ev);
                }
                self.reader = None;
                self.file_done_reading(id);
                continue;
            }
            let mut q = lock(&self.shared.q);
            let file = if let Some(f) = q.claimed.pop_front() {
                f
            } else if let Some(ev) = q.mem.pop_front() {
                return Some(ev);
            } else if let Some(f) = q.sealed.pop_front() {
                f
            } else if let Some(f) = q.overflow.take() {
                f
            } else {
                q.spooling = false;
                return None;
            };
            drop(q);
            match file.reader() {
                Ok(r) => {
                    let id = self.next_file;
                    self.next_file += 1;
                    self.files.insert(
                        id,
                        Track {
                            file,
                            unacked: 0,
                            eof: false,
                        },
                    );
                    self.reader = Some((id, r));
                }
                Err(e) => {
                    let msg = format!(
                        "rtet: cannot read spool file {}: {e}; it stays for a later process",
                        file.path.display()
                    );
                    self.shared.set_error(msg.clone());
                    self.shared.log(msg);
                    // Its events can no longer be waited for here.
                    self.shared.resolved(file.events);
                }
            }
        }
    }

    fn file_done_reading(&mut self, id: u64) {
        let finished = match self.files.get_mut(&id) {
            Some(t) => {
                t.eof = true;
                t.unacked == 0
            }
            None => false,
        };
        if finished {
            if let Some(t) = self.files.remove(&id) {
                t.file.remove();
            }
        }
    }

    fn event_done(&mut self, ev: &Event) {
        if let Some(id) = ev.origin {
            let finished = match self.files.get_mut(&id) {
                Some(t) => {
                    t.unacked = t.unacked.saturating_sub(1);
                    t.eof && t.unacked == 0
                }
                None => false,
            };
            if finished {
                if let Some(t) = self.files.remove(&id) {
                    t.file.remove();
                }
            }
        }
        self.shared.resolved(1);
    }

    async fn session(&mut self, ws: Ws) -> End {
        let (mut sink, mut stream) = ws.split();
        let shared = self.shared.clone();
        // Resend, in order, whatever the last connection did not get acked.
        let resend = self.inflight.len() as u64;
        for ev in &self.inflight {
            if let Err(e) = sink.feed(Message::text(ev.frame.clone())).await {
                return End::Lost(format!("connection lost while resending: {e}"));
            }
        }
        if resend > 0 {
            if let Err(e) = sink.flush().await {
                return End::Lost(format!("connection lost while resending: {e}"));
            }
            shared.c.sent.fetch_add(resend, Ordering::Relaxed);
        }
        loop {
            if shared.stop.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
                return End::Stop;
            }
            // Fill the pipeline.
            let mut wrote = 0u64;
            while self.inflight.len() < shared.cfg.max_inflight {
                let Some(ev) = self.next_event() else { break };
                if let Err(e) = sink.feed(Message::text(ev.frame.clone())).await {
                    self.inflight.push_back(ev);
                    return End::Lost(format!("connection lost while sending: {e}"));
                }
                self.inflight.push_back(ev);
                wrote += 1;
            }
            if wrote > 0 {
                if let Err(e) = sink.flush().await {
                    return End::Lost(format!("connection lost while sending: {e}"));
                }
                shared.c.sent.fetch_add(wrote, Ordering::Relaxed);
            }
            let room = self.inflight.len() < shared.cfg.max_inflight;
            tokio::select! {
                _ = shared.wake.notified(), if room => {}
                _ = shared.kick.notified() => {}
                _ = stopped(&shared) => {}
                msg = stream.next() => {
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.answer(text.as_str()) {
                                return end;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return End::Lost(format!(
                                "the relay closed the connection{}",
                                frame.map(|f| format!(" ({} {})", f.code, f.reason)).unwrap_or_default()
                            ));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return End::Lost(format!("connection lost: {e}")),
                        None => return End::Lost("the relay closed the connection".into()),
                    }
                }
            }
        }
    }

    /// Drops an event taken out of flight (acked or refused for good); once
    /// [`RELEASE_AFTER_BYTES`] have gone and nothing is left in flight or
    /// queued, gives the allocator's free memory back.
    fn forget(&mut self, ev: Event) {
        self.freed_since_release += ev.held_bytes();
        drop(ev);
        crate::shrink_when_empty(&mut self.inflight);
        if self.freed_since_release >= RELEASE_AFTER_BYTES
            && self.inflight.is_empty()
            && lock(&self.shared.q).mem.is_empty()
        {
            release_freed_memory();
            self.freed_since_release = 0;
        }
    }

    /// Handles one frame from the relay; `Some` ends the session.
    fn answer(&mut self, text: &str) -> Option<End> {
        let shared = self.shared.clone();
        match rtet_protocol::frames::parse_server_frame(text) {
            Ok(ServerFrame::Ack { id, channel, .. }) => {
                let pos = self
                    .inflight
                    .iter()
                    .position(|e| e.id == id && e.channel == channel);
                if let Some(ev) = pos.and_then(|p| self.inflight.remove(p)) {
                    shared.c.acked.fetch_add(1, Ordering::Relaxed);
                    self.event_done(&ev);
                    self.forget(ev);
                }
                None
            }
            Ok(ServerFrame::Nack { id, code, message }) => {
                let pos = self.inflight.iter().position(|e| e.id == id);
                if code == ErrorCode::RateLimited {
                    // Transient: keep the event; pause and send it again on a new connection.
                    shared.c.rate_limited.fetch_add(1, Ordering::Relaxed);
                    return Some(End::Lost(format!("rate limited by the relay: {message}")));
                }
                if let Some(ev) = pos.and_then(|p| self.inflight.remove(p)) {
                    shared.c.nacked.fetch_add(1, Ordering::Relaxed);
                    let msg = format!(
                        "rtet: the relay refused event {} on channel {} ({}): {message}",
                        ev.id,
                        ev.channel,
                        code.as_str()
                    );
                    shared.set_error(msg.clone());
                    shared.log(msg);
                    self.event_done(&ev);
                    self.forget(ev);
                }
                None
            }
            Ok(_) => None,
            Err(e) => {
                shared.set_error(format!("unexpected frame from the relay: {}", e.message));
                None
            }
        }
    }

    /// The relay is unreachable: what exists only in memory (events sent but
    /// not acked, then the queue) moves to an overflow file, which new events
    /// then follow (`enqueue` spools while `down`), so a process killed
    /// before the relay is back leaves them for the next one. Skipped while
    /// spool files are in play (their events are on disk already, and the
    /// order between them and memory must stay as it is) or if the file
    /// cannot be written (memory keeps them, as before).
    fn relay_down(&mut self) {
        let mut q = lock(&self.shared.q);
        self.shared.down.store(true, Ordering::Relaxed);
        if self.reader.is_some() || self.inflight.iter().any(|e| e.origin.is_some()) {
            return;
        }
        if q.spooling || !q.claimed.is_empty() || (self.inflight.is_empty() && q.mem.is_empty()) {
            return;
        }
        let sent = self.inflight.len();
        let events: Vec<Event> = self.inflight.drain(..).chain(q.mem.take_all()).collect();
        crate::shrink_when_empty(&mut self.inflight);
        let first = events.iter().map(|e| e.at_us).min().unwrap_or(0);
        let frames = events.iter().map(|e| e.frame.as_str());
        match crate::spool::create(
            &self.shared.cfg.spool_dir,
            &self.shared.tag,
            first,
            None,
            frames,
        ) {
            Ok(file) => {
                self.shared
                    .c
                    .spooled
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                q.overflow = Some(file);
                q.spooling = true;
            }
            Err(e) => {
                let mut events = events;
                q.mem = events.split_off(sent).into();
                self.inflight = events.into();
                let msg = format!(
                    "rtet: cannot write the spool file in {}: {e}; keeping the events in memory",
                    self.shared.cfg.spool_dir.display()
                );
                self.shared.log(msg);
            }
        }
    }

    /// Process end: in-memory and in-flight events go to one spool file;
    /// spool files in progress are released (unlocked) as they are.
    fn spool_out(&mut self) {
        let mut rest: Vec<Event> = self
            .inflight
            .drain(..)
            .filter(|e| e.origin.is_none())
            .collect();
        let mut q = lock(&self.shared.q);
        rest.extend(q.mem.take_all());
        // Dropping the handles releases their locks; the files stay for a later process.
        q.claimed.clear();
        q.sealed.clear();
        q.overflow = None;
        drop(q);
        self.files.clear();
        self.reader = None;
        spool_events(&self.shared, rest.iter());
        // Everything is acked or on disk for a later process: this one holds nothing now.
        let left = self.shared.pending.load(Ordering::Acquire);
        self.shared.resolved(left);
    }
}

/// Writes `events` to a new spool file (named to sort before this process's
/// overflow files) and counts them as spooled and resolved.
pub(crate) fn spool_events<'a>(shared: &Shared, events: impl Iterator<Item = &'a Event> + Clone) {
    let n = events.clone().count() as u64;
    if n == 0 {
        return;
    }
    let first = events.clone().map(|e| e.at_us).min().unwrap_or(0);
    match crate::spool::create(
        &shared.cfg.spool_dir,
        &shared.tag,
        first,
        Some(0),
        events.map(|e| e.frame.as_str()),
    ) {
        Ok(_file) => {
            shared.c.spooled.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            let msg = format!(
                "rtet: {n} events could not be spooled to {}: {e}",
                shared.cfg.spool_dir.display()
            );
            shared.set_error(msg.clone());
            shared.log(msg.clone());
            eprintln!("{msg}");
        }
    }
    shared.resolved(n);
}
