//! The WebSocket opening handshake on both endpoints: a request that cannot
//! become a WebSocket is answered with the status and the reason, and one
//! that can is switched with the accept key RFC 6455 asks for.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guard against a hung test; never a pass/fail threshold.
const WAIT: Duration = Duration::from_secs(30);

/// The key and accept value of RFC 6455 §1.3's example.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// What the relay answered: status, header block (lowercased), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` on a new connection and reads the answer's head and, when
/// it has one, its body.
async fn answer(relay: &TestRelay, request: &str) -> Answer {
    let mut stream = TcpStream::connect(relay.addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_http_head(&mut stream).await;
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    tokio::time::timeout(WAIT, stream.read_exact(&mut body))
        .await
        .expect("the body in time")
        .expect("read the body");
    Answer {
        status,
        head,
        body: String::from_utf8(body).unwrap(),
    }
}

/// An upgrade request to `path` with `headers` (each line ending in CRLF).
fn request(method: &str, path: &str, headers: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {KEY}\r\n{headers}\r\n"
    )
}

#[tokio::test]
async fn requests_that_cannot_become_a_websocket_are_told_why_on_both_endpoints() {
    let relay = start(config()).await;
    let version = "Sec-WebSocket-Version: 13\r\n";
    let key = format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n");
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    for path in ["/ws", "/publish"] {
        let cases = [
            (
                request(
                    "GET",
                    path,
                    &format!("Upgrade: websocket\r\n{version}{key}"),
                ),
                400,
                "connection header did not include 'upgrade'",
            ),
            (
                request(
                    "GET",
                    path,
                    &format!("Connection: Upgrade\r\n{version}{key}"),
                ),
                400,
                "`upgrade` header did not include 'websocket'",
            ),
            (
                request(
                    "GET",
                    path,
                    &format!("{upgrade}Sec-WebSocket-Version: 8\r\n{key}"),
                ),
                400,
                "`sec-websocket-version` header did not include '13'",
            ),
            (
                request("GET", path, &format!("{upgrade}{version}")),
                400,
                "`sec-websocket-key` header missing",
            ),
        ];
        for (req, status, reason) in cases {
            let got = answer(&relay, &req).await;
            assert_eq!(got.status, status, "{path}: {req:?} → {}", got.head);
            assert_eq!(got.body.to_ascii_lowercase(), reason, "{path}: {req:?}");
        }
        // Not GET: the route itself refuses it.
        let got = answer(
            &relay,
            &request(
                "POST",
                path,
                &format!("{upgrade}{version}{key}Content-Length: 0\r\n"),
            ),
        )
        .await;
        assert_eq!(got.status, 405, "{path}: POST");
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_valid_handshake_is_switched_with_the_rfc_accept_key_whatever_else_connection_lists() {
    let relay = start(config()).await;
    for path in ["/ws", "/publish"] {
        // Firefox sends `Connection: keep-alive, Upgrade`.
        let got = answer(
            &relay,
            &request(
                "GET",
                path,
                &format!(
                    "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n"
                ),
            ),
        )
        .await;
        assert_eq!(got.status, 101, "{path}: {}", got.head);
        assert!(
            got.head.contains(&format!(
                "sec-websocket-accept: {}",
                SAMPLE_ACCEPT.to_ascii_lowercase()
            )),
            "{path}: {}",
            got.head
        );
        assert!(got.head.contains("upgrade: websocket"), "{}", got.head);
    }
    relay.shutdown().await;
}
