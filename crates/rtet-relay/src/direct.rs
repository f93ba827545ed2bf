//! A plain TCP connection that the fan-out may write whole event frames to
//! directly, beside the connection's own task.
//!
//! A server's WebSocket frames are not masked, so an event's frame is the same
//! bytes for every subscriber: [`wire_frame`] builds it once per event, and the
//! hub's fan-out hands it to each caught-up subscriber's socket with one
//! non-blocking write ([`Direct::try_write_frames`]) instead of waking that
//! subscriber's task to do it. What the socket does not take at once goes the
//! usual way: the frames are queued in the subscriber's
//! [`crate::outbox::Outbox`], and the part of a frame the socket took only in
//! part is kept here and written before anything else.
//!
//! Two writers share one socket, so every byte the connection writes (hyper's
//! response, then tungstenite's and [`crate::frame_writer`]'s frames, all
//! collected by [`crate::batched_writes`]) also goes through [`SharedTcp`],
//! which keeps two rules:
//! - the unwritten rest of a direct frame is written before any byte of the
//!   connection's (so none of its frames starts inside a direct one);
//! - while the connection's last write left part of what it offered
//!   unwritten, it is inside a frame, and no direct frame starts. It always
//!   offers whole frames (its batches are collected whole), so a write that
//!   took all it was offered ends on a frame boundary.
//!
//! The order between the task's frames and direct ones is the outbox's
//! business: it writes directly only while the task holds nothing to write.
//!
//! TLS connections have no [`Direct`]: their frames are always queued.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::Utf8Bytes;

use rtet_protocol::sync::lock;

/// Most frames handed to the socket in one direct write (one `writev`).
pub const FRAMES_PER_WRITE: usize = 64;

/// The WebSocket frame carrying `text` as a server sends it: one final,
/// unmasked text frame.
pub fn wire_frame(text: &Utf8Bytes) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        opcode: OpCode::Data(Data::Text),
        mask: None,
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(10 + text.len());
    header
        .format(text.len() as u64, &mut out)
        .expect("formatting into a Vec does not fail");
    out.extend_from_slice(text.as_bytes());
    out.into()
}

/// What [`Direct::try_write_frames`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The socket took this many whole frames, and nothing of the next.
    Whole(usize),
    /// The socket took this many whole frames and part of the next: the rest
    /// of that one is kept here, and the connection's next write or flush
    /// writes it first. The frames after it were not touched.
    Part(usize),
}

#[derive(Debug, Default)]
struct WriteState {
    /// The part of a direct frame the socket has not taken yet.
    remainder: Option<Bytes>,
    /// The connection's last write left bytes of what it offered unwritten.
    mid_frame: bool,
}

/// One plain TCP connection, shared by its connection (through [`SharedTcp`])
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

    /// Writes whole frames from the start of `frames` without waiting, if the
    /// socket is at a frame boundary. Never blocks: the connection writing
    /// at this moment counts as a socket that would block. An error other
    /// than "would block" writes nothing either: the connection meets it on
    /// its own next read or write.
    pub fn try_write_frames(&self, frames: &[&Bytes]) -> Written {
        let Ok(mut state) = self.state.try_lock() else {
            return Written::Whole(0);
        };
        if state.remainder.is_some() || state.mid_frame || frames.is_empty() {
            return Written::Whole(0);
        }
        let frames = &frames[..frames.len().min(FRAMES_PER_WRITE)];
        let written = match frames {
            [one] => self.tcp.try_write(one),
            _ => {
                let slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
                self.tcp.try_write_vectored(&slices)
            }
        };
        let Ok(mut n) = written else {
            return Written::Whole(0);
        };
        for (i, frame) in frames.iter().enumerate() {
            if n < frame.len() {
                if n == 0 {
                    return Written::Whole(i);
                }
                state.remainder = Some(frame.slice(n..));
                return Written::Part(i);
            }
            n -= frame.len();
        }
        Written::Whole(frames.len())
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

/// The connection's side of a [`Direct`] socket: what hyper, tungstenite and
/// the relay's own frame writer read from and write to.
#[derive(Debug, Clone)]
pub struct SharedTcp(pub Arc<Direct>);

impl AsyncRead for SharedTcp {
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

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
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
        // SAFETY: shutdown(2) on a descriptor this socket owns, which outlives the call.
        let rc = unsafe { libc::shutdown(self.0.tcp.as_raw_fd(), libc::SHUT_WR) };
        if rc == 0 {
            Poll::Ready(Ok(()))
        } else {
            let e = io::Error::last_os_error();
            // Already shut down or reset by the peer: there is nothing left to end.
            match e.raw_os_error() {
                Some(libc::ENOTCONN) => Poll::Ready(Ok(())),
                _ => Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
            let (header, length) = FrameHeader::parse(&mut cursor)
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
        // Frames of an odd size, three at a time, until the socket takes only
        // part of one (the peer reads a little whenever it takes none).
        let mut n = 0;
        'filling: loop {
            let texts: Vec<String> = (n..n + 3)
                .map(|i| format!("{i:05}{}", "y".repeat(10_001)))
                .collect();
            let wires: Vec<Bytes> = texts
                .iter()
                .map(|t| wire_frame(&t.clone().into()))
                .collect();
            let refs: Vec<&Bytes> = wires.iter().collect();
            match direct.try_write_frames(&refs) {
                Written::Whole(k) => {
                    sent.extend(texts[..k].iter().cloned());
                    n += k;
                    if k == 0 {
                        let mut chunk = [0u8; 3_000];
                        let got = peer.read(&mut chunk).await.unwrap();
                        received.extend_from_slice(&chunk[..got]);
                    }
                }
                Written::Part(k) => {
                    sent.extend(texts[..=k].iter().cloned());
                    break 'filling;
                }
            }
            assert!(n < 100_000, "the socket never took part of a frame");
        }
        let after: Utf8Bytes = "after".into();
        assert_eq!(
            direct.try_write_frames(&[&wire_frame(&after)]),
            Written::Whole(0),
            "no frame starts inside another"
        );
        // The connection's own write goes after the remainder.
        let mut io = SharedTcp(Arc::clone(&direct));
        let writer = tokio::spawn(async move {
            io.write_all(&wire_frame(&after)).await.unwrap();
            io.flush().await.unwrap();
            io.shutdown().await.unwrap();
        });
        peer.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        sent.push("after".into());
        assert_eq!(texts(&received), sent);
    }

    #[tokio::test]
    async fn no_direct_frame_starts_inside_one_of_the_connections() {
        let (direct, mut peer) = socket_pair().await;
        let mut io = SharedTcp(Arc::clone(&direct));
        let own = wire_frame(&"z".repeat(50_000_000).into());
        let n = io.write(&own).await.unwrap();
        assert!(n < own.len(), "the socket took all of 50 MB at once");
        let event = wire_frame(&"event".into());
        assert_eq!(direct.try_write_frames(&[&event]), Written::Whole(0));
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            received
        });
        io.write_all(&own[n..]).await.unwrap();
        // At the boundary again: the event goes as soon as the socket has room.
        loop {
            direct.tcp.writable().await.unwrap();
            match direct.try_write_frames(&[&event]) {
                Written::Whole(1) => break,
                Written::Whole(0) => continue,
                other => panic!("a 7-byte frame written as {other:?}"),
            }
        }
        io.shutdown().await.unwrap();
        let received = reader.await.unwrap();
        let got = texts(&received);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], "event");
    }

    #[test]
    fn a_wire_frame_is_what_tungstenite_sends_for_the_text() {
        for len in [0, 5, 125, 126, 65_535, 65_536, 70_000] {
            let text: Utf8Bytes = "x".repeat(len).into();
            let wire = wire_frame(&text);
            let mut cursor = std::io::Cursor::new(&wire[..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
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
