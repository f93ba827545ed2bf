//! nginx with the nchan module as a peer: its configuration, and the HTTP
//! side of its protocol (publishing by POST, reading the channel's
//! subscriber count).
//!
//! nchan registers a WebSocket subscriber with the channel's owner worker
//! after the upgrade, possibly in another worker process (by a message
//! between workers), so an open socket is not yet a subscribed one:
//! [`wait_subscribed`] polls nchan's status until it counts every subscriber
//! and no message between workers is in transit or queued, before anything is
//! published, as rtet subscribers wait for `subscribed`. (The channel's own
//! info, GET on the publisher location, counts only the subscribers of the
//! worker that owns the channel.)

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Where Debian's `libnginx-mod-nchan` puts the module.
pub const DEBIAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// nchan's status page (`nchan_stub_status`).
pub const STATUS_PATH: &str = "/nchan_status";

/// An answer's header block, at most.
const MAX_HEAD: usize = 16 * 1024;
/// An answer's body, at most (nchan's channel info is about 100 bytes).
const MAX_BODY: usize = 64 * 1024;

/// What the bench needs to write nginx's configuration.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The directory nginx runs in (`-p`): its pid, log and temp files stay there.
    pub dir: &'a Path,
    /// The loopback address to listen on.
    pub addr: SocketAddr,
    /// Worker processes: as many as rtet-relay has threads (the cores).
    pub workers: usize,
    /// Descriptors per worker (the bench's own limit, which nginx inherits).
    pub nofile: u64,
    /// The nchan module (a `.so`).
    pub module: &'a Path,
    /// Whether nginx starts as root (then its workers stay root: they must
    /// read and write `dir`, and `user` means nothing to anyone else).
    pub root: bool,
}

/// nginx.conf for the peer: nchan WebSocket subscribers on `/sub/CHANNEL`,
/// the HTTP publisher on `/pub/CHANNEL` (with the message buffer as
/// history, as long and as old as rtet-relay's default history),
/// `/healthz` for readiness; nothing outside `dir` is written.
pub fn config(s: &Setup) -> String {
    let history = rtet_protocol::Limits::default();
    let dir = s.dir.display();
    let user = if s.root { "user root root;\n" } else { "" };
    format!(
        r#"load_module {module};
{user}worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections {nofile};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_buffer_size 64k;
    server {{
        listen {addr} backlog=4096;
        location = /healthz {{
            return 200 "ok\n";
        }}
        location = {STATUS_PATH} {{
            nchan_stub_status;
        }}
        location ~ ^/sub/(\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
        location ~ ^/pub/(\w+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
            nchan_message_buffer_length {history};
            nchan_message_timeout {history_secs}s;
        }}
    }}
}}
"#,
        module = s.module.display(),
        workers = s.workers.max(1),
        nofile = s.nofile,
        addr = s.addr,
        history = history.history_events,
        history_secs = history.history_age.as_secs(),
    )
}

/// One HTTP answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (bounded by [`MAX_BODY`]).
    pub body: Vec<u8>,
}

/// Reads HTTP/1.1 answers one after another off a keep-alive connection
/// (pipelined requests are answered in order). Bounded: a header block over
/// [`MAX_HEAD`], a body over [`MAX_BODY`] or a chunked body is an error.
pub struct AnswerReader<R> {
    io: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> AnswerReader<R> {
    /// Reads answers from `io`.
    pub fn new(io: R) -> Self {
        AnswerReader {
            io,
            buf: Vec::with_capacity(8 * 1024),
        }
    }

    /// The next answer; `None` when the connection closed between answers.
    pub async fn next(&mut self) -> Result<Option<Answer>> {
        loop {
            if let Some((status, head, body_len)) = parse_head(&self.buf)? {
                while self.buf.len() < head + body_len {
                    if !self.fill().await? {
                        bail!("the connection closed inside an answer's body");
                    }
                }
                let body = self.buf[head..head + body_len].to_vec();
                self.buf.drain(..head + body_len);
                return Ok(Some(Answer { status, body }));
            }
            if self.buf.len() > MAX_HEAD {
                bail!("an answer's header block is over {MAX_HEAD} bytes");
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("the connection closed inside an answer's header block");
            }
        }
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 8 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }
}

/// Parses a complete header block at the start of `buf`: `(status, header
/// bytes, body bytes)`, or `None` until it has all arrived.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf).context("a malformed HTTP answer")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.context("an HTTP answer without a status")?;
    let mut body = 0usize;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .context("a bad Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer (the bench reads Content-Length bodies only)");
        }
    }
    if body > MAX_BODY {
        bail!("an answer's body of {body} bytes (at most {MAX_BODY})");
    }
    Ok(Some((status, head, body)))
}

/// A POST of `body` to `path`, for a keep-alive connection.
pub fn post(path: &str, body: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// nchan's status (all workers, all channels): `(subscribers, messages
/// between workers in transit or queued)`.
pub async fn status(target: &Target) -> Result<(u64, u64)> {
    let mut s = TcpStream::connect(target.addr).await?;
    let req = format!("GET {STATUS_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let answer = AnswerReader::new(s)
        .next()
        .await?
        .context("no answer from nchan's status")?;
    if answer.status != 200 {
        bail!("nchan's status answered {}", answer.status);
    }
    parse_status(&String::from_utf8_lossy(&answer.body))
}

/// Reads `(subscribers, in transit + queued)` out of nchan's status text.
fn parse_status(text: &str) -> Result<(u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("nchan's status has no {name:?}"))
    };
    Ok((
        field("subscribers")?,
        field("interprocess alerts in transit")? + field("interprocess queued alerts")?,
    ))
}

/// Waits until nchan counts at least `n` subscribers with nothing in
/// transit between its workers (polling, at most `timeout`), so that
/// nothing is published before every socket is subscribed.
pub async fn wait_subscribed(target: &Target, n: u64, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let (have, in_transit) = status(target).await?;
        if have >= n && in_transit == 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "nchan counts {have} subscribers of {n} ({in_transit} messages between workers pending) after {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_pipelined_answers_in_order() {
        let wire: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
        let mut r = AnswerReader::new(wire);
        let a = r.next().await.unwrap().unwrap();
        assert_eq!((a.status, a.body.as_slice()), (202, &b"abc"[..]));
        assert_eq!(r.next().await.unwrap().unwrap().status, 201);
        let c = r.next().await.unwrap().unwrap();
        assert_eq!((c.status, c.body.as_slice()), (403, &b"no"[..]));
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_chunked_oversized_and_truncated_answers() {
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(AnswerReader::new(chunked).next().await.is_err());
        let huge: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n";
        assert!(AnswerReader::new(huge).next().await.is_err());
        let cut: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(AnswerReader::new(cut).next().await.is_err());
        let endless_head = vec![b'a'; MAX_HEAD + 10];
        assert!(AnswerReader::new(endless_head.as_slice())
            .next()
            .await
            .is_err());
    }

    #[test]
    fn reads_subscribers_and_pending_messages_from_the_status() {
        let text = "total published messages: 0\nstored messages: 0\nchannels: 1\nsubscribers: 500\ntotal interprocess alerts received: 3\ninterprocess alerts in transit: 2\ninterprocess queued alerts: 1\nnchan version: 1.3.6\n";
        assert_eq!(parse_status(text).unwrap(), (500, 3));
        assert!(parse_status("subscribers: x\n").is_err());
    }

    #[test]
    fn config_keeps_every_path_in_its_directory() {
        let dir = Path::new("/tmp/rtet-bench-nchan-x");
        let text = config(&Setup {
            dir,
            addr: "127.0.0.1:8080".parse().unwrap(),
            workers: 2,
            nofile: 20_000,
            module: Path::new(DEBIAN_MODULE),
            root: false,
        });
        for line in text
            .lines()
            .filter(|l| l.contains("_path") || l.contains("pid ") || l.contains("error_log"))
        {
            assert!(line.contains("/tmp/rtet-bench-nchan-x/"), "{line}");
        }
        assert!(text.contains("worker_processes 2;"));
        assert!(text.contains("listen 127.0.0.1:8080 "));
        assert!(!text.contains("user "));
    }
}
