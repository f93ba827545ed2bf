//! The WebSocket opening handshake (RFC 6455 §4.2), server side.
//!
//! The relay checks the upgrade request and switches protocols itself, as
//! axum's `WebSocketUpgrade` would (the same checks, statuses and messages),
//! so that the socket under tungstenite is one of ours: a [`FrameWriter`],
//! through which [`crate::connection`] writes large text frames without
//! tungstenite's buffer, over a [`FrameSplitter`], which hands tungstenite a
//! client's large frames in pieces so that its read buffer stays small.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::frame_splitter::FrameSplitter;
use crate::frame_writer::FrameWriter;

/// An upgraded connection as the endpoints see it.
pub type Socket = WebSocketStream<FrameWriter<FrameSplitter<TokioIo<Upgraded>>>>;

/// A request that asked to become a WebSocket and may.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request cannot become a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MethodNotGet,
    NoConnectionUpgrade,
    NoUpgradeWebsocket,
    VersionNot13,
    NoKey,
    NotUpgradable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refused::MethodNotGet => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            ),
            Refused::NoConnectionUpgrade => (
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ),
            Refused::NoUpgradeWebsocket => (
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            ),
            Refused::VersionNot13 => (
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            ),
            Refused::NoKey => (
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            ),
            Refused::NotUpgradable => (
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ),
        };
        (status, text).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refused> {
        if parts.method != Method::GET {
            return Err(Refused::MethodNotGet);
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(Refused::NoConnectionUpgrade);
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(Refused::NoUpgradeWebsocket);
        }
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(Refused::VersionNot13);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(Refused::NoKey)?
            .clone();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Refused::NotUpgradable)?;
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 Switching Protocols and, once hyper hands the connection
    /// over, runs `serve` on it as a WebSocket with `config`; the client's data
    /// frames larger than `piece` bytes reach tungstenite in pieces (`None`:
    /// whole, see [`FrameSplitter`]).
    #[must_use = "the connection is upgraded only when this response is returned"]
    pub fn accept<F, Fut>(self, config: WebSocketConfig, piece: Option<usize>, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let max_frame = config.max_frame_size.unwrap_or(usize::MAX);
            let reads = FrameSplitter::new(TokioIo::new(upgraded), piece, max_frame);
            let io = FrameWriter::new(reads);
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            serve(socket).await;
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&derive_accept_key(self.key.as_bytes()))
                        .expect("base64 is a valid header value"),
                ),
            ],
        )
            .into_response()
    }
}

/// Whether the header's value is `value`, ignoring ASCII case.
fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(&name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// Whether the comma-separated header lists `token`, ignoring ASCII case.
fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(&name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}
