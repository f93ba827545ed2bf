//! A client's large frames, handed to tungstenite in pieces.
//!
//! tungstenite reads each frame whole into its read buffer, which grows to
//! the largest frame the peer ever sent and never shrinks. A browser sends a
//! few hundred bytes at most (`subscribe`, `auth`), but any client may send
//! one frame up to `--max-frame-bytes` (64 KiB) and leave: 400 subscribers
//! that each sent one 60 KB frame held 59 KiB each for as long as they stayed
//! connected, twenty times what an idle connection costs.
//!
//! Beneath tungstenite, [`FrameSplitter`] reads the client's byte stream
//! frame by frame and passes a data frame whose payload is larger than
//! `piece` bytes on as fragments of at most `piece` bytes (RFC 6455 §5.4): the
//! first keeps the frame's opcode, the rest are continuations, the last keeps
//! its FIN bit. Pieces start at multiples of 4 bytes of the payload, so each
//! carries the frame's own masking key and the payload passes through
//! unchanged, straight into tungstenite's buffer. tungstenite joins the pieces
//! into one message, as it joins a browser's own fragments; its read buffer
//! stays the size of a piece, and the joined message is freed once read.
//!
//! A frame is passed on as it came when tungstenite should judge it whole:
//! control frames, frames with reserved bits or an unknown opcode, unmasked
//! frames (a protocol error tungstenite answers), and frames over the frame
//! limit, which tungstenite refuses from their header alone.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest frame header: two bytes, a 64-bit length and a masking key.
const HEADER_MAX: usize = 14;

/// A socket that hands tungstenite a client's large data frames in pieces.
pub struct FrameSplitter<S> {
    inner: S,
    /// The frame being read, while one is: boxed, so that a connection
    /// between frames (an idle one) holds one pointer.
    frame: Option<Box<State>>,
    /// Split frames with more payload than this; 0: pass every frame as it came.
    piece: u16,
    /// Frames larger than this are passed on whole, for tungstenite to refuse.
    max_frame: u32,
}

/// Where in a frame the reader is.
enum State {
    /// Reading the header: `have` bytes of it so far.
    Header { bytes: [u8; HEADER_MAX], have: u8 },
    /// Handing tungstenite a header (the frame's own, or a piece's): `bytes[at..len]`.
    Emit {
        bytes: [u8; HEADER_MAX],
        at: u8,
        len: u8,
        then: Payload,
    },
    /// Passing payload bytes through.
    Payload(Payload),
}

/// The payload of the frame or piece being passed through.
#[derive(Clone, Copy)]
struct Payload {
    /// Bytes of this frame or piece still to pass.
    left: u64,
    /// When splitting: what comes after this piece.
    split: Option<Split>,
}

/// A frame being passed on in pieces.
#[derive(Clone, Copy)]
struct Split {
    /// Payload bytes after the current piece.
    rest: u64,
    /// The frame's FIN bit, which the last piece carries.
    fin: bool,
    mask: [u8; 4],
}

impl<S> FrameSplitter<S> {
    /// Passes data frames larger than `piece` bytes (rounded down to a multiple
    /// of 4, at least 4) on in pieces, up to `max_frame`; `piece: None` passes
    /// every byte through as it came.
    pub fn new(inner: S, piece: Option<usize>, max_frame: usize) -> Self {
        let piece = piece.map_or(0, |p| (p.clamp(4, usize::from(u16::MAX)) & !3) as u16);
        FrameSplitter {
            inner,
            frame: None,
            piece,
            max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
        }
    }
}

/// What follows a complete `header` of a frame of `len` payload bytes.
fn after_header(
    header: &[u8],
    parsed: &FrameHeader,
    len: u64,
    piece: u16,
    max_frame: u32,
) -> State {
    let splittable = matches!(
        parsed.opcode,
        OpCode::Data(Data::Text | Data::Binary | Data::Continue)
    ) && !(parsed.rsv1 || parsed.rsv2 || parsed.rsv3)
        && len > u64::from(piece)
        && len <= u64::from(max_frame);
    match parsed.mask {
        Some(mask) if splittable => {
            let split = Split {
                rest: len,
                fin: parsed.is_final,
                mask,
            };
            next_piece(piece, split, parsed.opcode)
        }
        _ => emit_as_read(header, len),
    }
}

/// Hands on `header` as it was read, then `len` bytes of payload.
fn emit_as_read(header: &[u8], len: u64) -> State {
    let mut bytes = [0; HEADER_MAX];
    bytes[..header.len()].copy_from_slice(header);
    State::Emit {
        bytes,
        at: 0,
        len: header.len() as u8,
        then: Payload {
            left: len,
            split: None,
        },
    }
}

/// The header of the next piece of `split`, with `opcode` (the frame's own
/// for the first piece, a continuation after).
fn next_piece(piece: u16, split: Split, opcode: OpCode) -> State {
    let n = split.rest.min(u64::from(piece));
    let rest = split.rest - n;
    let header = FrameHeader {
        is_final: split.fin && rest == 0,
        opcode,
        mask: Some(split.mask),
        ..FrameHeader::default()
    };
    let mut bytes = [0; HEADER_MAX];
    let mut out = &mut bytes[..];
    header
        .format(n, &mut out)
        .expect("a piece's header fits in 14 bytes");
    let len = (HEADER_MAX - out.len()) as u8;
    State::Emit {
        bytes,
        at: 0,
        len,
        then: Payload {
            left: n,
            split: Some(Split { rest, ..split }),
        },
    }
}

/// How many bytes the header starting with `bytes` has in all (2 until the
/// second byte is known).
fn header_len(bytes: &[u8]) -> usize {
    let Some(&second) = bytes.get(1) else {
        return 2;
    };
    let length_bytes = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second & 0x80 != 0 { 4 } else { 0 };
    2 + length_bytes + mask_bytes
}

/// Reads from `inner` into `dst`: `Ready(0)` at the end of the stream.
fn read_into<S: AsyncRead + Unpin>(
    inner: &mut S,
    cx: &mut Context<'_>,
    dst: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(dst);
    ready!(Pin::new(inner).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameSplitter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.piece == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let start = buf.filled().len();
        // Reads into `$dst` and yields the bytes read (0: the end of the
        // stream). When the socket has nothing yet, the read ends here: with
        // what was handed over so far, or Pending if nothing was.
        macro_rules! read {
            ($dst:expr) => {
                match read_into(&mut this.inner, cx, $dst) {
                    Poll::Pending if buf.filled().len() > start => break,
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r?,
                }
            };
        }
        while buf.remaining() > 0 {
            let Some(state) = this.frame.as_mut() else {
                // Between frames: the first bytes of the next header. Header
                // bytes are read on their own, never past the header.
                let mut first = [0; 2];
                let n = read!(&mut first);
                if n == 0 {
                    break; // the end of the stream, between frames
                }
                let mut bytes = [0; HEADER_MAX];
                bytes[..n].copy_from_slice(&first[..n]);
                this.frame = Some(Box::new(State::Header {
                    bytes,
                    have: n as u8,
                }));
                continue;
            };
            match &mut **state {
                State::Header { bytes, have } => {
                    let got = usize::from(*have);
                    let need = header_len(&bytes[..got]);
                    if got < need {
                        let n = read!(&mut bytes[got..need]);
                        if n == 0 {
                            // It ended inside a header: tungstenite sees the header as it came.
                            **state = emit_as_read(&bytes[..got], 0);
                        } else {
                            *have += n as u8;
                        }
                        continue;
                    }
                    let header = &bytes[..need];
                    **state = match FrameHeader::parse(&mut io::Cursor::new(header)) {
                        Ok(Some((parsed, len))) => {
                            after_header(header, &parsed, len, this.piece, this.max_frame)
                        }
                        // A header tungstenite cannot read: it sees it as it came and refuses it.
                        _ => emit_as_read(header, 0),
                    };
                }
                State::Emit {
                    bytes,
                    at,
                    len,
                    then,
                } => {
                    let from = &bytes[usize::from(*at)..usize::from(*len)];
                    let n = from.len().min(buf.remaining());
                    buf.put_slice(&from[..n]);
                    *at += n as u8;
                    if at == len {
                        **state = State::Payload(*then);
                    }
                }
                State::Payload(payload) if payload.left > 0 => {
                    let limit = payload.left.min(buf.remaining() as u64) as usize;
                    let n = read!(buf.initialize_unfilled_to(limit));
                    if n == 0 {
                        break; // the end of the stream, inside a payload
                    }
                    buf.advance(n);
                    payload.left -= n as u64;
                }
                State::Payload(Payload {
                    split: Some(split), ..
                }) if split.rest > 0 => {
                    **state = next_piece(this.piece, *split, OpCode::Data(Data::Continue));
                }
                // The frame is through: an idle connection holds nothing of it.
                State::Payload(_) => this.frame = None,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Writes pass through.
impl<S: AsyncWrite + Unpin> AsyncWrite for FrameSplitter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::{Role, WebSocketConfig};
    use tungstenite::Message;

    const PIECE: usize = 256;
    const MAX_FRAME: usize = 70_000;

    type Server = WebSocketStream<FrameSplitter<DuplexStream>>;

    /// A server reading through a splitter over an in-memory pipe of
    /// `capacity` bytes (so it reads in small bursts), and the other end.
    async fn pair(capacity: usize) -> (Server, DuplexStream) {
        let (near, far) = tokio::io::duplex(capacity);
        let config = WebSocketConfig::default()
            .read_buffer_size(PIECE)
            .max_frame_size(Some(MAX_FRAME))
            .max_message_size(Some(4 * MAX_FRAME));
        let splitter = FrameSplitter::new(near, Some(PIECE), MAX_FRAME);
        let server = WebSocketStream::from_raw_socket(splitter, Role::Server, Some(config)).await;
        (server, far)
    }

    async fn client(far: DuplexStream) -> WebSocketStream<DuplexStream> {
        WebSocketStream::from_raw_socket(far, Role::Client, None).await
    }

    /// Text whose multi-byte characters straddle the pieces' boundaries.
    fn text(len: usize, seed: usize) -> String {
        let chars = ['a', 'é', '€', '𝄞', 'z'];
        let mut s = String::new();
        let mut i = seed;
        while s.len() < len {
            let c = chars[i % chars.len()];
            if s.len() + c.len_utf8() > len {
                s.push('x');
            } else {
                s.push(c);
            }
            i += 1;
        }
        s
    }

    #[tokio::test]
    async fn a_clients_frames_of_every_size_arrive_as_sent() {
        let (mut server, far) = pair(100).await;
        let sizes = [
            0, 3, 125, 126, 255, 256, 257, 1000, 4097, 65_535, 65_536, MAX_FRAME,
        ];
        let writer = tokio::spawn(async move {
            let mut ws = client(far).await;
            for (i, &n) in sizes.iter().enumerate() {
                ws.send(Message::text(text(n, i))).await.unwrap();
                ws.send(Message::binary(vec![i as u8; n])).await.unwrap();
                ws.send(Message::Ping(Bytes::from_static(b"p")))
                    .await
                    .unwrap();
            }
            // A message the client fragments itself, its second fragment
            // larger than a piece, with a ping between the fragments.
            // The cuts fall inside characters, as a client's own fragments may.
            let whole = text(1_500, 7);
            let bytes = Bytes::from(whole.clone());
            let (a, b, c) = (
                bytes.slice(..100),
                bytes.slice(100..1_300),
                bytes.slice(1_300..),
            );
            assert!(!whole.is_char_boundary(100) && !whole.is_char_boundary(1_300));
            ws.send(Message::Frame(Frame::message(
                a,
                OpCode::Data(Data::Text),
                false,
            )))
            .await
            .unwrap();
            ws.send(Message::Frame(Frame::message(
                b,
                OpCode::Data(Data::Continue),
                false,
            )))
            .await
            .unwrap();
            ws.send(Message::Ping(Bytes::from_static(b"q")))
                .await
                .unwrap();
            ws.send(Message::Frame(Frame::message(
                c,
                OpCode::Data(Data::Continue),
                true,
            )))
            .await
            .unwrap();
            ws.close(None).await.unwrap();
            whole
        });
        let mut got = Vec::new();
        while let Some(message) = server.next().await {
            match message.expect("every frame reads") {
                Message::Close(_) => break,
                m => got.push(m),
            }
        }
        let whole = writer.await.unwrap();
        let mut expected = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            expected.push(Message::text(text(n, i)));
            expected.push(Message::binary(vec![i as u8; n]));
            expected.push(Message::Ping(Bytes::from_static(b"p")));
        }
        expected.push(Message::Ping(Bytes::from_static(b"q")));
        expected.push(Message::text(whole));
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                g == e,
                "got {} bytes of {g:?}, expected {} bytes",
                g.len(),
                e.len()
            );
        }
    }

    #[tokio::test]
    async fn a_large_frame_is_passed_on_as_pieces_of_at_most_a_piece() {
        let (near, far) = tokio::io::duplex(1 << 20);
        let mut splitter = FrameSplitter::new(near, Some(PIECE), MAX_FRAME);
        let sent = text(1_000, 3);
        let mut ws = client(far).await;
        ws.send(Message::text(sent.clone())).await.unwrap();
        drop(ws);
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut splitter, &mut out)
            .await
            .unwrap();
        assert!(splitter.frame.is_none(), "nothing is kept between frames");

        let mut cursor = io::Cursor::new(&out[..]);
        let mut pieces = Vec::new();
        let mut payload = Vec::new();
        while let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() {
            let at = cursor.position() as usize;
            let mask = header.mask.expect("every piece is masked");
            let piece = &out[at..at + len as usize];
            payload.extend(piece.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            cursor.set_position((at + piece.len()) as u64);
            pieces.push((header.opcode, header.is_final, len));
        }
        let text = OpCode::Data(Data::Text);
        let more = OpCode::Data(Data::Continue);
        assert_eq!(
            pieces,
            [
                (text, false, 256),
                (more, false, 256),
                (more, false, 256),
                (more, true, 232)
            ]
        );
        assert_eq!(payload, sent.as_bytes());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        let (mut server, far) = pair(1 << 20).await;
        let mut ws = client(far).await;
        // Only the header and a little of the payload are sent: the refusal
        // must not wait for the rest.
        ws.send(Message::text("ok")).await.unwrap();
        let mut far = ws.into_inner();
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(MAX_FRAME as u64 + 1).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4, b'a', b'b']);
        far.write_all(&header).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), Message::text("ok"));
        match server.next().await {
            Some(Err(tungstenite::Error::Capacity(_))) => {}
            other => panic!("expected a capacity error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unmasked_frame_is_refused_whatever_its_size() {
        for len in [5usize, 1_000] {
            let (mut server, mut far) = pair(1 << 20).await;
            let mut frame = vec![0x81];
            if len < 126 {
                frame.push(len as u8);
            } else {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            frame.extend(std::iter::repeat_n(b'a', len));
            far.write_all(&frame).await.unwrap();
            match server.next().await {
                Some(Err(tungstenite::Error::Protocol(_))) => {}
                other => panic!("{len} bytes unmasked: expected a protocol error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_stream_ending_inside_a_frame_ends_the_reads() {
        let (mut server, mut far) = pair(1 << 20).await;
        // A masked text frame of 1,000 bytes of which 300 arrive.
        let mut frame = vec![0x81, 0x80 | 126];
        frame.extend_from_slice(&1_000u16.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend(std::iter::repeat_n(b'a', 300));
        far.write_all(&frame).await.unwrap();
        drop(far);
        match server.next().await {
            None | Some(Err(_)) => {}
            Some(Ok(m)) => panic!("a message from a cut frame: {} bytes", m.len()),
        }
    }
}
