//! Shared helpers for the relay's integration tests: start a relay on
//! 127.0.0.1:0 in this process, connect real WebSocket clients over TCP,
//! speak plain HTTP/1.1, sign tokens.
#![allow(dead_code)]

pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtet_protocol::token::{sign, Claims};
use rtet_relay::{Config, EngineChoice};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The API key every test relay accepts.
pub const KEY: &str = "test-key-0123456789abcdef0123456789";
/// A second key, for rotation.
pub const KEY2: &str = "second-key-0123456789abcdef0123456789";

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Guard against a hung test; never a pass/fail threshold.
const WAIT: Duration = Duration::from_secs(20);

/// The default configuration with the test key.
pub fn config() -> Config {
    Config::new([KEY])
}

/// A relay running in this process.
pub struct TestRelay {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), rtet_relay::ServeError>>,
    /// The relay's own Redis, when the suite runs on the Redis engine.
    redis: Option<redis::Redis>,
}

/// The environment variable that runs the suite on another engine:
/// `RTET_TEST_ENGINE=redis` gives every relay started with the memory engine
/// a Redis engine on a redis-server of its own instead.
pub const TEST_ENGINE_ENV: &str = "RTET_TEST_ENGINE";

/// Whether this run puts the relays on Redis (`RTET_TEST_ENGINE=redis`).
pub fn on_redis() -> bool {
    match std::env::var(TEST_ENGINE_ENV).as_deref() {
        Ok("redis") => true,
        Ok("memory") | Err(_) => false,
        Ok(other) => panic!("{TEST_ENGINE_ENV}={other}: expected redis or memory"),
    }
}

/// Binds 127.0.0.1:0 and starts the relay on it; connecting is possible at once.
/// Under `RTET_TEST_ENGINE=redis` a memory-engine config gets a fresh redis-server.
pub async fn start(mut config: Config) -> TestRelay {
    let redis = if config.engine == EngineChoice::Memory && on_redis() {
        let redis = redis::Redis::start_new();
        config.engine = EngineChoice::parse(&redis.url()).expect("a Redis URL");
        Some(redis)
    } else {
        None
    };
    let mut relay = start_with(config).await;
    relay.redis = redis;
    relay
}

/// Starts the relay with exactly this config (its engine included).
pub async fn start_with(config: Config) -> TestRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(rtet_relay::run(listener, config, async move {
        let _ = stopped.await;
    }));
    TestRelay {
        addr,
        stop: Some(stop),
        handle,
        redis: None,
    }
}

impl TestRelay {
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Triggers graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        self.trigger_shutdown();
        tokio::time::timeout(WAIT, &mut self.handle)
            .await
            .expect("relay stops")
            .expect("task")
            .expect("run ok");
    }

    /// A publisher connection with the test key.
    pub async fn publisher(&self) -> Ws {
        self.publisher_with(Some(KEY))
            .await
            .expect("publisher connects")
    }

    /// A publisher connection with this key (or none); the HTTP status on refusal.
    pub async fn publisher_with(&self, key: Option<&str>) -> Result<Ws, u16> {
        let mut req = self.ws_url("/publish").into_client_request().unwrap();
        if let Some(key) = key {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
            );
        }
        connect(req).await
    }

    /// A subscriber connection without an Origin header.
    pub async fn subscriber(&self) -> Ws {
        self.subscriber_with_origin(None)
            .await
            .expect("subscriber connects")
    }

    /// A subscriber connection with this Origin; the HTTP status on refusal.
    pub async fn subscriber_with_origin(&self, origin: Option<&str>) -> Result<Ws, u16> {
        match origin {
            Some(o) => self.subscriber_with_headers(&[("origin", o)]).await,
            None => self.subscriber_with_headers(&[]).await,
        }
    }

    /// A subscriber connection with extra request headers; the HTTP status on refusal.
    pub async fn subscriber_with_headers(
        &self,
        headers: &[(&'static str, &str)],
    ) -> Result<Ws, u16> {
        let mut req = self.ws_url("/ws").into_client_request().unwrap();
        for (name, value) in headers {
            req.headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        connect(req).await
    }

    /// A subscriber connection from the loopback address `local` (any of
    /// 127.0.0.0/8 is this machine), with extra request headers; the HTTP
    /// status on refusal. Distinct source addresses are distinct clients.
    pub async fn subscriber_from(
        &self,
        local: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Ws, u16> {
        ws_from(local, &self.ws_url("/ws"), headers).await
    }

    /// One plain HTTP/1.1 request; returns status and body.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
            .await
            .expect("HTTP answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// `POST /api/send-event` with a JSON body and optional Bearer key.
    pub async fn send_event(&self, key: Option<&str>, body: &Value) -> (u16, Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let (status, text) = self
            .http(
                "POST",
                "/api/send-event",
                &headers,
                body.to_string().as_bytes(),
            )
            .await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// The value of one metric sample (e.g. `rtet_nacks_total{code="invalid"}`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (status, body) = self.http("GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Polls `/metrics` until the sample has this value (a real signal, no fixed sleep).
    pub async fn wait_metric(&self, sample: &str, value: f64) {
        tokio::time::timeout(WAIT, async {
            loop {
                if self.metric(sample).await == value {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("metric {sample} never became {value}"));
    }
}

/// A WebSocket connection to `url` from the loopback address `local`, with
/// extra request headers; the HTTP status on refusal.
pub async fn ws_from(local: &str, url: &str, headers: &[(&'static str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let host = req.uri().authority().expect("url has a host").as_str();
    let target: SocketAddr = host.parse().expect("url host is an address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(local.parse().expect("local address"), 0))
        .expect("bind the source address");
    let stream = socket.connect(target).await.expect("connect");
    match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

async fn connect(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// What a client saw next (pings and pongs skipped).
#[derive(Debug, PartialEq)]
pub enum Got {
    /// A JSON text frame.
    Json(Value),
    /// A close frame with this code (1005 when it had none).
    Close(u16),
    /// The connection ended without a close frame.
    End,
}

/// The next frame, skipping pings.
pub async fn next(ws: &mut Ws) -> Got {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None => return Got::End,
                Some(Err(_)) => return Got::End,
                Some(Ok(Message::Text(t))) => {
                    return Got::Json(serde_json::from_str(t.as_str()).expect("relay sends JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Got::Close(frame.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("a frame in time")
}

/// The next JSON frame; panics on anything else.
pub async fn recv(ws: &mut Ws) -> Value {
    match next(ws).await {
        Got::Json(v) => v,
        other => panic!("expected a JSON frame, got {other:?}"),
    }
}

/// Waits for the close frame, skipping JSON frames; returns its code.
pub async fn closed_with(ws: &mut Ws) -> u16 {
    loop {
        match next(ws).await {
            Got::Json(_) => continue,
            Got::Close(code) => return code,
            Got::End => panic!("connection ended without a close frame"),
        }
    }
}

/// Sends a JSON value as a text frame.
pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send");
}

/// Sends raw text.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .expect("send");
}

/// A `publish` frame.
pub fn publish_frame(id: &str, channel: &str, data: Value) -> Value {
    json!({"type":"publish","id":id,"channel":channel,"event":"test_event","data":data})
}

/// Publishes one event and returns the relay's answer.
pub async fn publish(ws: &mut Ws, id: &str, channel: &str, data: Value) -> Value {
    send(ws, publish_frame(id, channel, data)).await;
    recv(ws).await
}

/// A token for `channels`, valid for `ttl` seconds, signed with `key`.
pub fn token_with(key: &str, sub: &str, channels: &[&str], ttl: u64) -> String {
    let claims = Claims::new(
        sub,
        channels.iter().map(|c| c.to_string()).collect(),
        Duration::from_secs(ttl),
    );
    sign(key.as_bytes(), &claims).expect("sign")
}

/// A five-minute token from the test key.
pub fn token(sub: &str, channels: &[&str]) -> String {
    token_with(KEY, sub, channels, 300)
}

/// Authenticates and returns the `auth_ok` frame.
pub async fn auth(ws: &mut Ws, token: &str) -> Value {
    send(ws, json!({"type":"auth","token":token})).await;
    recv(ws).await
}

/// Subscribes and returns the `subscribed` (or `error`) frame.
pub async fn subscribe(ws: &mut Ws, channel: &str, since: Option<(&str, u64)>) -> Value {
    let mut frame = json!({"type":"subscribe","channel":channel});
    if let Some((epoch, seq)) = since {
        frame["since"] = json!({"epoch": epoch, "seq": seq});
    }
    send(ws, frame).await;
    recv(ws).await
}

/// The `rtet-relay` binary, with no `RTET_*` variable of the test's
/// environment, listening on a free loopback port unless the test says
/// otherwise (`--listen` or `RTET_LISTEN`, which beat this default).
pub fn relay_binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rtet-relay"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RTET_") {
            c.env_remove(k);
        }
    }
    c.env("RTET_LISTEN", "127.0.0.1:0");
    c
}

/// A relay child process, stopped when dropped.
pub struct RelayProcess {
    pub child: std::process::Child,
    /// The address it logged (a free port unless the test chose one).
    pub addr: String,
    /// The log lines before the one that says where it listens.
    pub early_log: Vec<String>,
    log: Option<std::thread::JoinHandle<String>>,
}

impl RelayProcess {
    /// Starts `cmd` and waits for the line that says where it listens.
    pub fn start(cmd: &mut std::process::Command) -> RelayProcess {
        use std::io::BufRead;
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the relay starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut early_log = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                }
                panic!("the relay ended without saying where it listens: {err}");
            };
            match line.split("addr=").nth(1) {
                Some(rest) if line.contains("rtet-relay listening") => {
                    break rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
                _ => early_log.push(line),
            }
        };
        // Keep draining the log and stderr (a panic's message) so the relay never blocks
        // on a full pipe; hand both back at the end.
        let stderr = child.stderr.take().map(|e| {
            std::thread::spawn(move || {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(e), &mut err);
                err
            })
        });
        let log = std::thread::spawn(move || {
            let mut log = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
            if let Some(err) = stderr.and_then(|t| t.join().ok()) {
                log.push_str(&err);
            }
            log
        });
        RelayProcess {
            child,
            addr,
            early_log,
            log: Some(log),
        }
    }

    /// Its resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends SIGTERM, waits for the exit and returns the exit status and the log.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        let log = self.log.take().map(|l| l.join().unwrap_or_default());
        (exit, log.unwrap_or_default())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One blocking HTTP/1.1 request to `addr`; the whole answer as text.
pub fn http_blocking(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// An HS256 token with exactly these claims (any JSON), signed with `key`.
pub fn token_from_claims(key: &str, claims: &Value) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(format!("{header}.{body}").as_bytes());
    format!(
        "{header}.{body}.{}",
        b64.encode(mac.finalize().into_bytes())
    )
}

/// Reads an HTTP answer's head (status line and headers, up to the blank
/// line) from a raw connection, lower-cased; the body is left unread.
pub async fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read");
            assert_eq!(
                n, 1,
                "the connection ended before the answer's head: {head:?}"
            );
            head.push(byte[0]);
        }
    })
    .await
    .expect("an answer in time");
    String::from_utf8_lossy(&head).to_lowercase()
}

/// Sends a text frame whose payload is these raw bytes (for invalid UTF-8).
pub async fn send_raw_text(ws: &mut Ws, payload: &[u8]) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.expect("send");
}

/// `data` nested `levels` deep in arrays.
pub fn nested(levels: usize) -> Value {
    let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    serde_json::from_str(&text).expect("within serde_json's own limit of 128 levels")
}

/// The `sub`s a presence members list holds, in its order.
pub fn member_subs(members: &Value) -> Vec<String> {
    members
        .as_array()
        .unwrap_or_else(|| panic!("a member list: {members}"))
        .iter()
        .map(|m| m["sub"].as_str().unwrap().to_owned())
        .collect()
}
