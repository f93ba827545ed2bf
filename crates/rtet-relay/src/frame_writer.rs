//! Text frames written by the relay itself, beneath tungstenite.
//!
//! tungstenite builds every frame it sends in a write buffer that it keeps for
//! the life of the connection and never shrinks: a subscriber sent one event
//! of 60 KB would hold 60 KB for as long as it stays connected, however idle
//! (and one of 500 bytes, 630). A server's frames are not masked, so a text
//! frame on the wire is a 2 to 10 byte header followed by the payload as it
//! is. The relay therefore writes its text frames (events and answers)
//! itself, straight from the payload it shares with every other subscriber of
//! the event, and leaves tungstenite the control frames (pings, pongs, close:
//! at most 131 bytes each), so its buffer stays that small.
//!
//! Both write to the same socket, so their bytes must not interleave inside a
//! frame. At most one frame of ours is under way; tungstenite's writes wait
//! until it is out. Ours starts only when tungstenite holds no bytes it could
//! not hand over: tungstenite offers its whole buffer on every write (its
//! write buffer size is 0), so a write taken in full leaves it holding none.
//! [`crate::connection::Connection`] keeps that rule.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest header of an unmasked frame: two bytes and a 64-bit length.
const HEADER_MAX: usize = 10;

/// A socket under tungstenite through which the relay also writes its own
/// text frames.
pub struct FrameWriter<S> {
    inner: S,
    /// Our frame being written, boxed so an idle connection pays one pointer.
    under_way: Option<Box<UnderWay>>,
    /// tungstenite's last write was not taken in full: it still holds bytes,
    /// and our next frame must wait until they are out.
    tungstenite_holds: bool,
}

/// One frame of ours: its header, its shared payload, and how far it got.
struct UnderWay {
    header: [u8; HEADER_MAX],
    header_len: u8,
    payload: Bytes,
    /// Bytes of header and payload, in that order, the socket has taken.
    written: usize,
}

impl<S> FrameWriter<S> {
    /// Wraps a socket.
    pub fn new(inner: S) -> Self {
        FrameWriter {
            inner,
            under_way: None,
            tungstenite_holds: false,
        }
    }

    /// Whether tungstenite holds bytes the socket has not taken yet (then a
    /// flush of tungstenite must come before our next frame).
    pub fn tungstenite_holds(&self) -> bool {
        self.tungstenite_holds
    }

    /// Starts writing a text frame carrying `payload`. Call it only once
    /// [`FrameWriter::poll_frame_done`] is ready and tungstenite holds nothing;
    /// the frame goes out on the next write, flush or `poll_frame_done`.
    pub fn start_text_frame(&mut self, payload: Bytes) {
        assert!(
            self.under_way.is_none() && !self.tungstenite_holds,
            "a frame started while another was under way"
        );
        let header = FrameHeader {
            is_final: true,
            opcode: OpCode::Data(Data::Text),
            mask: None,
            ..FrameHeader::default()
        };
        let mut bytes = [0u8; HEADER_MAX];
        let mut out = &mut bytes[..];
        header
            .format(payload.len() as u64, &mut out)
            .expect("an unmasked header fits in 10 bytes");
        let header_len = (HEADER_MAX - out.len()) as u8;
        self.under_way = Some(Box::new(UnderWay {
            header: bytes,
            header_len,
            payload,
            written: 0,
        }));
    }
}

impl<S: AsyncWrite + Unpin> FrameWriter<S> {
    /// Writes our frame under way, if any, until the socket has all of it or
    /// would block.
    pub fn poll_frame_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(frame) = self.under_way.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let header_len = usize::from(frame.header_len);
        let total = header_len + frame.payload.len();
        while frame.written < total {
            let inner = Pin::new(&mut self.inner);
            let n = if frame.written < header_len {
                // Header and payload in one write where the socket takes both.
                let parts = [
                    io::IoSlice::new(&frame.header[frame.written..header_len]),
                    io::IoSlice::new(&frame.payload),
                ];
                ready!(inner.poll_write_vectored(cx, &parts))?
            } else {
                ready!(inner.poll_write(cx, &frame.payload[frame.written - header_len..]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            frame.written += n;
        }
        self.under_way = None;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWriter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// tungstenite's side: its bytes go out after our frame under way.
impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWriter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Until a write of tungstenite's is taken in full, it holds bytes.
        this.tungstenite_holds = !buf.is_empty();
        ready!(this.poll_frame_done(cx))?;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.tungstenite_holds = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_frame_done(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_frame_done(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::protocol::{Role, WebSocketConfig};
    use tungstenite::Message;

    /// A server socket over an in-memory pipe of `capacity` bytes, and the
    /// client reading the other end with tungstenite.
    async fn pair(
        capacity: usize,
    ) -> (
        WebSocketStream<FrameWriter<tokio::io::DuplexStream>>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (near, far) = tokio::io::duplex(capacity);
        let config = WebSocketConfig::default().write_buffer_size(0);
        let server =
            WebSocketStream::from_raw_socket(FrameWriter::new(near), Role::Server, Some(config))
                .await;
        let client = WebSocketStream::from_raw_socket(far, Role::Client, None).await;
        (server, client)
    }

    async fn send_own(ws: &mut WebSocketStream<FrameWriter<tokio::io::DuplexStream>>, text: &str) {
        if ws.get_ref().tungstenite_holds() {
            ws.flush().await.unwrap();
        }
        std::future::poll_fn(|cx| ws.get_mut().poll_frame_done(cx))
            .await
            .unwrap();
        ws.get_mut()
            .start_text_frame(Bytes::copy_from_slice(text.as_bytes()));
    }

    #[tokio::test]
    async fn frames_of_ours_and_of_tungstenite_arrive_whole_and_in_order_through_a_small_pipe() {
        // 300 bytes of pipe: every large frame is written in many pieces while
        // the client reads, and tungstenite's frames wait for ours.
        let (mut server, mut client) = pair(300).await;
        let sizes = [10usize, 126, 65_535, 65_536, 70_000, 5, 1024, 3];
        let texts: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| char::from(b'a' + i as u8).to_string().repeat(n))
            .collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(m)) = client.next().await {
                match m {
                    Message::Text(t) => got.push(t.to_string()),
                    Message::Ping(_) => got.push("ping".into()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            got
        });
        let mut expected = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if i % 2 == 0 {
                send_own(&mut server, text).await;
            } else {
                server.feed(Message::text(text.clone())).await.unwrap();
            }
            expected.push(text.clone());
            if i == 3 {
                server.feed(Message::Ping(Bytes::new())).await.unwrap();
                expected.push("ping".into());
            }
        }
        server.flush().await.unwrap();
        server.close(None).await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.len(), e.len());
            assert_eq!(g, e);
        }
    }

    #[tokio::test]
    async fn a_frame_of_ours_keeps_no_memory_once_written() {
        let (mut server, mut client) = pair(1 << 20).await;
        send_own(&mut server, &"x".repeat(60_000)).await;
        server.flush().await.unwrap();
        assert!(server.get_ref().under_way.is_none());
        let Some(Ok(Message::Text(t))) = client.next().await else {
            panic!("no text frame");
        };
        assert_eq!(t.len(), 60_000);
    }
}
