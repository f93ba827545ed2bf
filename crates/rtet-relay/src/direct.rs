//! A plain TCP connection that the fan-out may write whole event frames to
//! directly, beside its connection task.
//!
//! A server's WebSocket frames are not masked, so an event's frame is the same
//! bytes for every subscriber: [`wire_frame`] builds it once per event, and the
//! fan-out hands it to each caught-up subscriber's socket with one non-blocking
//! write ([`Direct::try_write_frame`]) instead of waking that subscriber's task.
//! What the socket does not take at once goes the usual way: the frame is
//! queued in the subscriber's [`crate::outbox::Outbox`], or the part not
//! written is kept here and written before anything else.
//!
//! Two writers share one socket, so every byte tungstenite writes also goes
//! through [`DirectIo`], which keeps two rules:
//! - a direct frame's unwritten remainder is written before any byte of
//!   tungstenite's (its frames never start inside a direct frame);
//! - while tungstenite's last write left part of its buffer unwritten it is in
//!   the middle of a frame, and no direct frame is started. tungstenite offers
//!   its whole buffer of whole frames at each write, so a write that took all
//!   it was offered ends on a frame boundary.
//!
//! The order between the task's frames and direct ones is the outbox's job:
//! it allows direct writes only while the task holds nothing to write.
//!
//! TLS connections do not have one: the fan-out queues their frames.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use axum::extract::ws::Utf8Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Bytes;

use rtet_protocol::sync::lock;

/// The WebSocket frame carrying `text`, as a server sends it (one final,
/// unmasked text frame).
pub fn wire_frame(text: &Utf8Bytes) -> Bytes {
    let frame = Frame::message(Bytes::from(text.clone()), OpCode::Data(Data::Text), true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("formatting into a Vec does not fail");
    out.into()
}

/// What [`Direct::try_write_frame`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The socket took all of it.
    Whole,
    /// The socket took part of it; the rest is kept and written first by the
    /// connection task, which must flush.
    Part,
    /// Nothing was written: the socket would block, or a frame is under way.
    Not,
}

#[derive(Debug, Default)]
struct WriteState {
    /// The part of a direct frame the socket has not taken yet.
    remainder: Option<Bytes>,
    /// tungstenite's last write left bytes of its buffer unwritten.
    mid_frame: bool,
}

/// One plain TCP connection, shared by its connection (through [`DirectIo`])
/// and the fan-out.
#[derive(Debug)]
pub struct Direct {
    tcp: TcpStream,
    state: Mutex<WriteState>,
}

impl Direct {
    /// Takes a freshly accepted connection.
    pub fn new(tcp: TcpStream) -> Self {
        Direct {
            tcp,
            state: Mutex::new(WriteState::default()),
        }
    }

    /// Writes `wire` (one whole frame) without waiting, if the socket is at a
    /// frame boundary. Never blocks: a writer busy on the socket counts as
    /// "would block". An error other than "would block" also writes nothing:
    /// the connection task meets it on its own next read or write.
    pub fn try_write_frame(&self, wire: &Bytes) -> Written {
        let Ok(mut state) = self.state.try_lock() else {
            return Written::Not;
        };
        if state.remainder.is_some() || state.mid_frame {
            return Written::Not;
        }
        match self.tcp.try_write(wire) {
            Ok(n) if n == wire.len() => Written::Whole,
            Ok(0) | Err(_) => Written::Not,
            Ok(n) => {
                state.remainder = Some(wire.slice(n..));
                Written::Part
            }
        }
    }

    /// Writes what is left of a direct frame, waiting for the socket as needed.
    fn poll_remainder(&self, cx: &mut Context<'_>, state: &mut WriteState) -> Poll<io::Result<()>> {
        while let Some(rest) = &mut state.remainder {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(rest) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) if n == rest.len() => state.remainder = None,
                Ok(n) => *rest = rest.slice(n..),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The connection's side of a [`Direct`] socket: what hyper and tungstenite
/// read from and write to.
#[derive(Debug)]
pub struct DirectIo(pub std::sync::Arc<Direct>);

impl AsyncRead for DirectIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for DirectIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let direct = &*self.0;
        let mut state = lock(&direct.state);
        ready!(direct.poll_remainder(cx, &mut state))?;
        loop {
            ready!(direct.tcp.poll_write_ready(cx))?;
            match direct.tcp.try_write(buf) {
                Ok(n) => {
                    state.mid_frame = n < buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let direct = &*self.0;
        let mut state = lock(&direct.state);
        ready!(direct.poll_remainder(cx, &mut state))?;
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            ready!(direct.tcp.poll_write_ready(cx))?;
            match direct.tcp.try_write_vectored(bufs) {
                Ok(n) => {
                    state.mid_frame = n < offered;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes a direct frame's remainder: the socket keeps no other buffer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let direct = &*self.0;
        let mut state = lock(&direct.state);
        direct.poll_remainder(cx, &mut state)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback connection: the relay's end as a [`Direct`], and the peer's.
    pub(crate) async fn socket_pair() -> (Arc<Direct>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (Arc::new(Direct::new(ours)), peer)
    }

    /// The payloads of the whole text frames in `bytes`; panics on anything else.
    pub(crate) fn texts(bytes: &[u8]) -> Vec<String> {
        let mut cursor = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let (header, length) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("a whole header");
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            let start = cursor.position() as usize;
            let end = start + length as usize;
            out.push(String::from_utf8(bytes[start..end].to_vec()).expect("UTF-8"));
            cursor.set_position(end as u64);
        }
        out
    }

    #[tokio::test]
    async fn what_a_direct_write_leaves_is_written_before_the_connections_next_bytes() {
        let (direct, mut peer) = socket_pair().await;
        let mut received = Vec::new();
        let mut sent = Vec::new();
        // Frames of an odd size until the socket takes only part of one (the
        // peer reads a little whenever it takes none).
        for n in 0.. {
            let text: Utf8Bytes = format!("{n:05}{}", "y".repeat(10_001)).into();
            match direct.try_write_frame(&wire_frame(&text)) {
                Written::Whole => sent.push(text.to_string()),
                Written::Part => {
                    sent.push(text.to_string());
                    break;
                }
                Written::Not => {
                    let mut chunk = [0u8; 3_000];
                    let n = peer.read(&mut chunk).await.unwrap();
                    received.extend_from_slice(&chunk[..n]);
                }
            }
            assert!(n < 100_000, "the socket never took part of a frame");
        }
        let rest: Utf8Bytes = "after".into();
        assert_eq!(
            direct.try_write_frame(&wire_frame(&rest)),
            Written::Not,
            "no frame starts inside another"
        );
        // The connection's own write goes after the remainder.
        let mut io = DirectIo(Arc::clone(&direct));
        let writer = tokio::spawn(async move {
            io.write_all(&wire_frame(&rest)).await.unwrap();
            io.flush().await.unwrap();
            io.shutdown().await.unwrap();
        });
        peer.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        sent.push("after".into());
        assert_eq!(texts(&received), sent);
    }

    #[test]
    fn a_wire_frame_is_what_tungstenite_sends_for_the_text() {
        for len in [0, 5, 125, 126, 65_535, 65_536, 70_000] {
            let text: Utf8Bytes = "x".repeat(len).into();
            let wire = wire_frame(&text);
            let mut cursor = std::io::Cursor::new(&wire[..]);
            let (header, length) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("a whole header");
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert!(header.mask.is_none(), "a server's frames are not masked");
            assert_eq!(length as usize, len);
            let start = cursor.position() as usize;
            assert_eq!(&wire[start..], text.as_bytes());
        }
    }
}
