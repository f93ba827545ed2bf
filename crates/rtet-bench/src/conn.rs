//! One WebSocket connection from a chosen loopback source address.
//!
//! A TCP connection is named by (source ip, source port, destination ip,
//! destination port); with one source address the ephemeral port range
//! (about 28,000 ports on Debian) caps the connections to one relay port.
//! Binding each socket to one of 127.0.0.1..127.0.0.x before connecting gives
//! each address its own range. Only loopback addresses are ever used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// The `i`-th source address of `count`: 127.0.0.1, 127.0.0.2, … (wrapping).
pub fn source_ip(i: usize, count: usize) -> IpAddr {
    let k = (i % count.clamp(1, 250)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k))
}

/// Client buffers kept small: the bench holds tens of thousands of
/// connections and reads small frames (tungstenite's default is 128 KiB each).
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Connects `url` (a `ws://127.x.x.x:port/path` URL) from `source`, with an
/// optional Bearer key, and completes the WebSocket handshake.
pub async fn connect(url: &str, source: IpAddr, bearer: Option<&str>) -> Result<Ws> {
    let mut request = url.into_client_request().context("bad URL")?;
    let Some(host) = request.uri().host() else {
        bail!("URL {url} has no host");
    };
    let ip: IpAddr = host
        .parse()
        .context("the bench connects to IP addresses only")?;
    if !ip.is_loopback() || !source.is_loopback() {
        bail!("the bench only talks to loopback addresses, not {ip} from {source}");
    }
    let port = request.uri().port_u16().unwrap_or(80);
    if let Some(key) = bearer {
        request
            .headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {key}").parse()?);
    }
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding {source}"))?;
    let stream = socket
        .connect(SocketAddr::new(ip, port))
        .await
        .with_context(|| format!("connecting {ip}:{port} from {source}"))?;
    stream.set_nodelay(true)?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config()))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}
