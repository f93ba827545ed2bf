//! A connection's socket with a write buffer that exists only while there is
//! something to write.
//!
//! tungstenite keeps its write buffer for the life of a connection and never
//! gives its capacity back. With frames collected there before each write, a
//! subscriber that receives a burst of events would keep that much memory for
//! as long as it stays connected (about 12 KiB per connection after 50 events
//! of 500 bytes, where an idle connection costs 3 KiB). So the relay sets
//! tungstenite's write buffer to 0 (it hands each frame on as soon as it is
//! made) and collects the frames of a batch here instead, in a buffer that is
//! written out on flush and freed once the socket has taken all of it. A
//! batch still costs one write to the socket. Text frames do not pass through
//! tungstenite's buffer at all ([`crate::frame_writer`]).
//!
//! Every connection of the port (HTTP requests and both WebSocket endpoints)
//! goes through it, beneath TLS when there is TLS.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes collected before a write stops waiting for the flush. A slow reader
/// holds at most this plus one frame here: past it, writes wait for the
/// socket, and the frame that did not fit waits where it was made.
pub const COLLECT_MAX: usize = 64 * 1024;

/// A socket whose writes are collected until flushed.
pub struct BatchedWrites<S> {
    inner: S,
    /// Bytes not yet taken by the socket, from `taken` on.
    pending: Vec<u8>,
    taken: usize,
}

impl<S> BatchedWrites<S> {
    /// Wraps a socket.
    pub fn new(inner: S) -> Self {
        BatchedWrites {
            inner,
            pending: Vec::new(),
            taken: 0,
        }
    }

    /// Bytes collected and not yet taken by the socket.
    fn unwritten(&self) -> usize {
        self.pending.len() - self.taken
    }
}

impl<S: AsyncWrite + Unpin> BatchedWrites<S> {
    /// Writes what was collected until the socket has all of it (then the
    /// buffer is freed) or would block.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.taken < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.taken..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.taken += n;
        }
        self.pending = Vec::new();
        self.taken = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Collects all of `bufs` (a frame's header and payload) with one allocation.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.unwritten() >= COLLECT_MAX {
            ready!(self.poll_write_out(cx))?;
        }
        let len = bufs.iter().map(|b| b.len()).sum();
        self.pending.reserve(len);
        for buf in bufs {
            self.pending.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_reach_the_peer_in_order_on_flush_and_leave_no_buffer_behind() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut w = BatchedWrites::new(near);
        w.write_all(b"one ").await.unwrap();
        w.write_all(b"two").await.unwrap();
        assert_eq!(w.unwritten(), 7, "collected, not yet written");
        w.flush().await.unwrap();
        assert_eq!(w.pending.capacity(), 0, "the buffer is freed once written");
        let mut got = [0u8; 7];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
    }

    #[tokio::test]
    async fn a_vectored_write_is_collected_whole_and_in_order() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut w = BatchedWrites::new(near);
        let parts = [io::IoSlice::new(b"head "), io::IoSlice::new(b"and payload")];
        let n = w.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 16, "both parts taken");
        assert_eq!(w.pending.capacity(), 16, "in one allocation of their size");
        w.flush().await.unwrap();
        let mut got = [0u8; 16];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"head and payload");
    }

    #[tokio::test]
    async fn a_reader_that_does_not_read_holds_at_most_the_limit_plus_one_write() {
        // The socket takes 1 KiB and then blocks, as a peer that stopped reading.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut w = BatchedWrites::new(near);
        let frame = vec![7u8; 16 * 1024];
        let mut accepted = 0;
        // The socket is in memory: a write either completes at once or waits for the reader.
        while let Some(wrote) = w.write_all(&frame).now_or_never() {
            wrote.unwrap();
            accepted += frame.len();
        }
        assert!(
            w.unwritten() <= COLLECT_MAX + frame.len(),
            "{} held",
            w.unwritten()
        );
        assert!(
            accepted >= COLLECT_MAX,
            "collected up to the limit first: {accepted}"
        );

        // Once the peer reads, everything arrives, in order and complete.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        let all = reader.await.unwrap();
        assert_eq!(
            all.len(),
            accepted,
            "every frame the writer accepted arrives, whole"
        );
        assert!(all.iter().all(|&b| b == 7));
        assert_eq!(w.pending.capacity(), 0);
    }
}
