//! Helpers for the publisher core's integration tests: a real relay
//! (`rtet_relay::run_with_engine`) in this process on a port of its own, a
//! real WebSocket subscriber, and events whose data can be checked on arrival.
//!
//! The tests are plain `#[test]` functions, because `Publisher::flush` blocks
//! its thread like the PHP thread it serves. The relay runs on a runtime it
//! owns and each subscriber on one of its own, so nothing here blocks a
//! runtime that something else needs.
//!
//! Ports: a [`Port`] is a socket bound to 127.0.0.1 but not listening, so a
//! publisher connecting to it is refused (the relay is down) while nobody else
//! can take the port; [`Relay::on`] then listens on that very socket. Sockets
//! set `SO_REUSEADDR` and `SO_REUSEPORT`, so [`Relay::port`] can reserve the
//! port of a running relay for its successor: a restart on the same port
//! without a window in which another process could take it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtet_publisher::{publish_frame, Event, Publisher};
use rtet_relay::engine::{Engine, MemoryEngine, MemoryEngineConfig};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The API key the test relays accept.
pub const KEY: &str = "publisher-test-key-0123456789abcdef";

/// Guard against a hung test; never a pass/fail threshold.
pub const WAIT: Duration = Duration::from_secs(60);

/// The relay's defaults, with room for what the tests pile up: history for
/// every event (so a late subscriber can replay them all), subscriber queues
/// deep enough for a subscriber that reads only after `flush` returns, and
/// no publish rate limit (a `rate_limited` answer makes the publisher
/// reconnect, which would change the connection counts the tests check),
/// and no replay bound (the tests replay whole histories to check them).
pub fn relay_config() -> rtet_relay::Config {
    let mut c = rtet_relay::Config::new([KEY]);
    c.max_replay_bytes = usize::MAX;
    c.replay_bytes_per_connection = usize::MAX;
    c.replay_bytes_per_ip = usize::MAX;
    c.limits.history_events = 100_000;
    c.limits.subscriber_queue_frames = 100_000;
    c.limits.publishes_per_sec_per_key = 10_000_000;
    c
}

/// A publisher config for the relay at `addr` with the test key, spooling to `spool_dir`.
pub fn publisher_config(addr: SocketAddr, spool_dir: &Path) -> rtet_publisher::Config {
    let mut c = rtet_publisher::Config::new(format!("ws://{addr}"), KEY);
    c.spool_dir = spool_dir.to_path_buf();
    c
}

/// A publisher that is shut down (sender thread stopped, leftovers spooled)
/// when it goes out of scope, even when the test fails.
pub struct Running(pub Publisher);

impl Running {
    pub fn start(cfg: rtet_publisher::Config) -> Running {
        let (p, warnings) = Publisher::start(cfg).expect("publisher starts");
        assert!(warnings.is_empty(), "warnings at start: {warnings:?}");
        Running(p)
    }
}

impl std::ops::Deref for Running {
    type Target = Publisher;
    fn deref(&self) -> &Publisher {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Publisher {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// The JSON data of test event `n`: text that needs escaping, non-ASCII, numbers, nesting.
pub fn data(n: usize) -> Value {
    json!({
        "n": n,
        "text": format!("héllo \"wörld\" ✓ <b>&amp;</b> \\ \n #{n}"),
        "list": [1, 2.5, null, true, "x"],
        "nested": {"k": [n, {"deep": "v"}]},
    })
}

/// The id of test event `n` with this prefix.
pub fn id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n:06}")
}

/// Test event `n` for `channel`, as the extension would enqueue it.
pub fn event(prefix: &str, n: usize, channel: &str) -> Event {
    let id = id(prefix, n);
    let frame = publish_frame(&id, channel, "test.event", &data(n).to_string(), None);
    Event::new(id, channel.to_owned(), frame)
}

/// Enqueues events `range` of `prefix` on `public`, one `enqueue` call each
/// (as one `rtet_send_event` per event would).
pub fn enqueue_range(p: &Publisher, prefix: &str, range: std::ops::Range<usize>) {
    for n in range {
        p.enqueue(vec![event(prefix, n, "public")]);
    }
}

/// Checks that `got` (event frames) are exactly events `range` of `prefix`
/// on `public`, in order, each once, data intact, with `seq` running on
/// from `first_seq` without a gap.
pub fn assert_events(got: &[Value], prefix: &str, range: std::ops::Range<usize>, first_seq: u64) {
    let ids: Vec<&str> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("?"))
        .collect();
    let want: Vec<String> = range.clone().map(|n| id(prefix, n)).collect();
    if ids != want {
        let first_diff = ids
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(ids.len().min(want.len()));
        panic!(
            "got {} events, wanted {} ({prefix} {range:?}); first difference at index {first_diff}: got {:?}, wanted {:?}",
            ids.len(),
            want.len(),
            ids.get(first_diff),
            want.get(first_diff)
        );
    }
    for (i, (e, n)) in got.iter().zip(range).enumerate() {
        assert_eq!(e["type"], "event", "{e}");
        assert_eq!(e["channel"], "public", "{e}");
        assert_eq!(e["event"], "test.event", "{e}");
        assert_eq!(e["data"], data(n), "data of event {n}");
        assert_eq!(e["seq"], first_seq + i as u64, "seq of event {n}");
    }
}

/// Polls `cond` until it holds (a real condition, not a pause); panics after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The spool files (not temporary files) in `dir`, sorted by name.
pub fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// The ids of the `publish` frames in a spool file, in order.
pub fn spooled_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read spool file")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a spool line is JSON");
            assert_eq!(v["type"], "publish", "{l}");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// A port on 127.0.0.1 that listens but never answers: a publisher's TCP
/// connect succeeds and its upgrade request waits (like a hung relay), until
/// [`Relay::on_silent`] starts serving it.
pub struct Silent {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
}

impl Silent {
    /// A fresh silent port.
    pub fn new() -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        Silent { listener, addr }
    }

    /// The listening socket, for a server of the test's own.
    pub fn into_listener(self) -> std::net::TcpListener {
        self.listener
    }
}

/// A port on 127.0.0.1 held by a bound socket that does not listen: a
/// publisher connecting to it is refused, and no other process can take it.
pub struct Port {
    socket: TcpSocket,
    pub addr: SocketAddr,
}

impl Port {
    /// A fresh port.
    pub fn reserve() -> Port {
        Port::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn bind(addr: SocketAddr) -> Port {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket
            .bind(addr)
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = socket.local_addr().expect("local addr");
        Port { socket, addr }
    }
}

/// A relay running in this process. Dropping it shuts it down.
pub struct Relay {
    pub addr: SocketAddr,
    engine: Arc<MemoryEngine>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), rtet_relay::ServeError>>>,
    rt: Runtime,
}

impl Relay {
    /// A relay on a fresh port.
    pub fn start(config: rtet_relay::Config) -> Relay {
        Relay::on(Port::reserve(), config)
    }

    /// A relay listening on `port`. Connecting is possible as soon as this returns.
    pub fn on(port: Port, config: rtet_relay::Config) -> Relay {
        let rt = Relay::runtime();
        let listener = {
            let _in_rt = rt.enter();
            port.socket.listen(1024).expect("listen")
        };
        Relay::serve(rt, listener, config)
    }

    /// A relay that starts answering on a [`Silent`] port, connections
    /// already waiting there included.
    pub fn on_silent(silent: Silent, config: rtet_relay::Config) -> Relay {
        let rt = Relay::runtime();
        let listener = {
            let _in_rt = rt.enter();
            silent.listener.set_nonblocking(true).expect("nonblocking");
            tokio::net::TcpListener::from_std(silent.listener).expect("listener")
        };
        Relay::serve(rt, listener, config)
    }

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-relay")
            .enable_all()
            .build()
            .expect("relay runtime")
    }

    fn serve(rt: Runtime, listener: tokio::net::TcpListener, config: rtet_relay::Config) -> Relay {
        let addr = listener.local_addr().expect("local addr");
        let engine = Arc::new(MemoryEngine::new(MemoryEngineConfig::from(&config)));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = rt.spawn(rtet_relay::run_with_engine(
            listener,
            config,
            Arc::clone(&engine) as Arc<dyn Engine>,
            async move {
                let _ = stopped.await;
            },
        ));
        Relay {
            addr,
            engine,
            stop: Some(stop),
            handle: Some(handle),
            rt,
        }
    }

    /// Reserves this relay's port for a successor (see [`Port`]); call it
    /// before [`Relay::stop`].
    pub fn port(&self) -> Port {
        Port::bind(self.addr)
    }

    /// Shuts the relay down gracefully and waits until it has stopped (its
    /// port no longer listens). Its history stays readable.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let result = self
                .rt
                .block_on(async { tokio::time::timeout(WAIT, handle).await });
            if !std::thread::panicking() {
                result
                    .expect("the relay stops in time")
                    .expect("relay task")
                    .expect("relay ran without error");
            }
        }
    }

    /// What the relay holds for `channel`: its epoch, latest `seq`, and the
    /// history's events (all of them, as the tests configure it).
    pub fn history(&self, channel: &str) -> Option<(String, u64, Vec<Value>)> {
        let h = self.rt.block_on(self.engine.history(channel.to_owned()))?;
        let events = h
            .events
            .iter()
            .map(|f| serde_json::from_str(f.as_str()).expect("history holds JSON"))
            .collect();
        Some((h.epoch, h.seq, events))
    }

    /// A subscriber of `channel` (anonymous), subscribed from now on.
    pub fn subscribe(&self, channel: &str) -> Subscriber {
        let mut s = Subscriber::connect(self.addr);
        let ok = s.subscribe(channel, None);
        assert_eq!(ok["type"], "subscribed", "{ok}");
        s
    }

    /// Every event of `channel` as a subscriber that comes late sees it:
    /// subscribe to learn the epoch, then again with `since` seq 0, which
    /// replays the whole history (`recovered: true`).
    pub fn replay(&self, channel: &str) -> Vec<Value> {
        let mut s = Subscriber::connect(self.addr);
        let first = s.subscribe(channel, None);
        assert_eq!(first["type"], "subscribed", "{first}");
        let epoch = first["epoch"].as_str().expect("epoch").to_owned();
        let latest = first["seq"].as_u64().expect("seq");
        s.send(json!({"type":"unsubscribe","channel":channel}));
        let un = s.recv();
        assert_eq!(un["type"], "unsubscribed", "{un}");
        let again = s.subscribe(channel, Some((&epoch, 0)));
        assert_eq!(again["type"], "subscribed", "{again}");
        assert_eq!(again["recovered"], true, "{again}");
        assert_eq!(again["seq"], latest, "nothing was published meanwhile");
        s.events(latest as usize)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a subscriber saw next (pings and pongs skipped).
#[derive(Debug)]
pub enum Got {
    Json(Value),
    /// A close frame with this code (1005 when it had none).
    Close(u16),
    /// The connection ended without a close frame.
    End,
}

/// A WebSocket subscriber (no Origin header, like a server-side client).
pub struct Subscriber {
    ws: Ws,
    rt: Runtime,
}

impl Subscriber {
    pub fn connect(addr: SocketAddr) -> Subscriber {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("subscriber runtime");
        let url = format!("ws://{addr}/ws");
        let (ws, _) = rt
            .block_on(tokio_tungstenite::connect_async(url))
            .expect("subscriber connects");
        Subscriber { ws, rt }
    }

    pub fn send(&mut self, v: Value) {
        self.rt
            .block_on(self.ws.send(Message::Text(v.to_string().into())))
            .expect("send");
    }

    pub fn next(&mut self) -> Got {
        let ws = &mut self.ws;
        let got = self.rt.block_on(async {
            tokio::time::timeout(WAIT, async {
                loop {
                    match ws.next().await {
                        None | Some(Err(_)) => return Got::End,
                        Some(Ok(Message::Text(t))) => {
                            return Got::Json(
                                serde_json::from_str(t.as_str()).expect("the relay sends JSON"),
                            )
                        }
                        Some(Ok(Message::Close(f))) => {
                            return Got::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
                        }
                        Some(Ok(_)) => continue,
                    }
                }
            })
            .await
        });
        got.expect("a frame in time")
    }

    pub fn recv(&mut self) -> Value {
        match self.next() {
            Got::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Subscribes and returns the answer (`subscribed` or `error`).
    pub fn subscribe(&mut self, channel: &str, since: Option<(&str, u64)>) -> Value {
        let mut frame = json!({"type":"subscribe","channel":channel});
        if let Some((epoch, seq)) = since {
            frame["since"] = json!({"epoch": epoch, "seq": seq});
        }
        self.send(frame);
        self.recv()
    }

    /// The next `n` frames, each of which must be an `event`.
    pub fn events(&mut self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let v = self.recv();
                assert_eq!(v["type"], "event", "frame {i} of {n}: {v}");
                v
            })
            .collect()
    }

    /// Every event until the relay closes the connection; returns them and the close code.
    pub fn events_until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut out = Vec::new();
        loop {
            match self.next() {
                Got::Json(v) => {
                    assert_eq!(v["type"], "event", "{v}");
                    out.push(v);
                }
                Got::Close(code) => return (out, Some(code)),
                Got::End => return (out, None),
            }
        }
    }
}
