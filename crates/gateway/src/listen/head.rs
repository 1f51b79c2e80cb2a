//! The HTTP/1.1 request heads a connection sends, checked before hyper reads them: httparse,
//! under hyper, accepts a bare LF as a line ending (and hyper answers its own refusals, a 431
//! for instance, with no body). [`HeadCheck`] sits between the socket and hyper: it holds each
//! request head until it is complete, refuses one with a bare LF, one past
//! `server.max_request_head_bytes` or 100 fields, one httparse refuses, and one whose body
//! lengths are ambiguous (`Transfer-Encoding` with `Content-Length`, differing
//! `Content-Length`s, an encoding other than chunked last); then it follows the body's framing
//! byte for byte, with the same rules as hyper's decoder, to know where the next head starts.
//!
//! A refused head never reaches hyper: in its place hyper reads a stand-in request with
//! `Connection: close`, then nothing more; the listener's service recognises the
//! stand-in by the [`Refusal`] slot and has the application answer it ([`RefusedHead`]), so the
//! caller gets a JSON error like any other. Memory: one head at most (the limit), and whatever
//! one read returned.
//!
//! HTTP/2 (the prior-knowledge preface, or ALPN `h2`) passes through untouched. A request that
//! asks for an upgrade (or `CONNECT`) is the connection's last: nothing after it is read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use mtls_api::RefusedHead;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

/// The most header fields a request head may have (hyper's own default).
pub const MAX_HEADERS: usize = 100;
/// What hyper reads in place of a refused head.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n";
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
/// Room made in `pending` before each read from the socket.
const READ_CHUNK: usize = 8192;
/// Longest chunk-extension text on one chunk-size line (hyper refuses 16 KiB in total).
const MAX_EXTENSION: usize = 16 * 1024;

/// Where a connection's refused head is handed to its service. The check may run ahead of
/// hyper (several pipelined requests in one read), so the refusal names its place in the
/// connection's sequence of requests, and the service counts the requests it is called for.
#[derive(Clone, Debug, Default)]
pub struct Refusal(Arc<Mutex<Slot>>);

#[derive(Debug, Default)]
struct Slot {
    /// The refused request's place (0: the first), and why.
    refused: Option<(usize, RefusedHead)>,
    /// Requests the service was called for.
    served: usize,
}

impl Refusal {
    /// For the service, at each request: the refusal when this request is the stand-in.
    pub fn next_request(&self) -> Option<RefusedHead> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let place = slot.served;
        slot.served = place.saturating_add(1);
        match slot.refused {
            Some((refused, why)) if refused == place => Some(why),
            _ => None,
        }
    }

    fn set(&self, place: usize, refused: RefusedHead) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused = Some((place, refused));
    }
}

#[derive(Debug)]
enum State {
    /// Collecting a request head; `scanned` bytes of it are known to hold no bare LF and no
    /// end of head.
    Head { scanned: usize },
    /// Following a request body; `last`: the connection ends after it.
    Body { framing: Framing, last: bool },
    /// HTTP/2: bytes pass untouched.
    Through,
    /// Nothing more is read, and hyper is not told so: an end of stream while it serves a
    /// request would make it drop the request unanswered. It closes the connection after its
    /// answer (`Connection: close`, a framing error), or its timers do.
    Held,
    /// The peer ended the stream.
    Ended,
}

/// An HTTP/1.1 socket whose request heads are checked before hyper reads them.
#[derive(Debug)]
pub struct HeadCheck<I> {
    io: I,
    limit: usize,
    state: State,
    /// Bytes read from the socket and not yet handed on.
    pending: BytesMut,
    /// How many bytes at the front of `pending` are checked and may be handed on.
    ready: usize,
    /// Request heads handed on so far.
    heads: usize,
    refusal: Refusal,
}

impl<I> HeadCheck<I> {
    /// `http2`: the connection speaks HTTP/2 (ALPN), nothing is checked.
    pub fn new(io: I, limit: usize, http2: bool, refusal: Refusal) -> Self {
        Self {
            io,
            limit,
            state: if http2 {
                State::Through
            } else {
                State::Head { scanned: 0 }
            },
            pending: BytesMut::new(),
            ready: 0,
            heads: 0,
            refusal,
        }
    }

    /// Replaces everything not yet handed on by the stand-in request, then the end.
    fn refuse(&mut self, refused: RefusedHead) {
        self.refusal.set(self.heads, refused);
        // What is already checked (the end of an earlier request's body) still goes first.
        self.pending.truncate(self.ready);
        self.pending.extend_from_slice(STAND_IN);
        self.ready = self.pending.len();
        self.state = State::Held;
    }

    /// Moves on as far as the bytes in `pending` allow.
    fn advance(&mut self) {
        loop {
            match &mut self.state {
                State::Through => {
                    self.ready = self.pending.len();
                    return;
                }
                State::Held | State::Ended => {
                    // Nothing past the end is handed on (a smuggled head after a broken
                    // body, anything after an upgrade request).
                    self.pending.truncate(self.ready);
                    return;
                }
                State::Body { framing, last } => {
                    let rest = self.pending.get(self.ready..).unwrap_or_default();
                    if rest.is_empty() {
                        return;
                    }
                    let step = framing.consume(rest);
                    self.ready += step.consumed;
                    match step.outcome {
                        Outcome::More => return,
                        Outcome::Done if *last => self.state = State::Held,
                        Outcome::Done => self.state = State::Head { scanned: 0 },
                        // hyper's decoder stops at the same byte: it sees the byte, fails,
                        // and closes the connection.
                        Outcome::Invalid => self.state = State::Held,
                    }
                }
                State::Head { scanned } => {
                    let start = self.ready;
                    let head = self.pending.get(start..).unwrap_or_default();
                    // Empty lines before a request line are allowed (RFC 9112 2.2) and
                    // skipped by hyper; they are not part of any head.
                    let blank = head.chunks(2).take_while(|pair| *pair == b"\r\n").count() * 2;
                    if blank > 0 && *scanned == 0 {
                        // Dropped, not handed on: hyper would keep them in its buffer until
                        // a request line comes.
                        let rest = self.pending.split_off(start + blank);
                        self.pending.truncate(start);
                        self.pending.unsplit(rest);
                        continue;
                    }
                    match scan(head, *scanned) {
                        Scan::BareLineFeed => {
                            return self.refuse(RefusedHead::Malformed(
                                "a line ends with LF alone, not CRLF",
                            ));
                        }
                        Scan::Incomplete(upto) => {
                            if head.len() > self.limit {
                                return self.refuse(RefusedHead::TooLarge);
                            }
                            // A partial `\r\n\r` stays to be scanned again.
                            *scanned = upto;
                            return;
                        }
                        Scan::Complete(end) => {
                            if end > self.limit {
                                return self.refuse(RefusedHead::TooLarge);
                            }
                            let head = head.get(..end).unwrap_or_default();
                            if start == 0 && head.starts_with(H2_PREFACE_START) {
                                self.state = State::Through;
                                continue;
                            }
                            match framing(head) {
                                Err(refused) => return self.refuse(refused),
                                Ok((framing, last)) => {
                                    self.ready += end;
                                    self.heads += 1;
                                    self.state = match framing {
                                        Some(framing) => State::Body { framing, last },
                                        None if last => State::Held,
                                        None => State::Head { scanned: 0 },
                                    };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadCheck<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let count = this.ready.min(buf.remaining());
                buf.put_slice(this.pending.get(..count).unwrap_or_default());
                this.pending.advance(count);
                this.ready -= count;
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Ended => return Poll::Ready(Ok(())),
                State::Held => return Poll::Pending,
                _ => {}
            }
            if this.pending.is_empty() && matches!(this.state, State::Through) {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            // Read on. Bytes go through `pending` (one copy) so that a head can be held back
            // until it is complete and checked. Read into its spare capacity, never into a
            // zeroed buffer: zeroing 8 KiB on every read was a third of the instructions of a
            // forwarded request (`CALLGRIND=1 bench/forward.sh`).
            this.pending.reserve(READ_CHUNK);
            if ready!(poll_read_buf(Pin::new(&mut this.io), cx, &mut this.pending))? == 0 {
                // The peer ended: hand on whatever is left (hyper judges a cut-off head or
                // body), then the end.
                this.ready = this.pending.len();
                this.state = State::Ended;
                continue;
            }
            this.advance();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadCheck<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// No end of head yet; bytes before this offset need no second look.
    Incomplete(usize),
    /// The head ends at this offset (after its empty line).
    Complete(usize),
    BareLineFeed,
}

/// Looks for the end of a head (`\r\n\r\n`) and for any LF not preceded by CR, from `from`.
/// Only the LFs are looked at, found by `memchr` (a byte-by-byte loop was about 2,700
/// instructions per forwarded request, `CALLGRIND=1 bench/forward.sh`).
fn scan(head: &[u8], from: usize) -> Scan {
    let mut at = from;
    while let Some(found) = head.get(at..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let index = at + found;
        if index == 0 || head.get(index - 1) != Some(&b'\r') {
            return Scan::BareLineFeed;
        }
        if index >= 3 && head.get(index - 3..=index) == Some(b"\r\n\r\n") {
            return Scan::Complete(index + 1);
        }
        at = index + 1;
    }
    // Keep the last three bytes for the next look: they may begin `\r\n\r\n`.
    Scan::Incomplete(head.len().saturating_sub(3).max(from))
}

/// How the body of a complete, parsed head is framed (`None`: no body), and whether the
/// connection ends after this request.
fn framing(head: &[u8]) -> Result<(Option<Framing>, bool), RefusedHead> {
    // Uninitialized, as hyper's own parse has them: filling 100 empty fields before each
    // parse cost about 500 instructions per request (`CALLGRIND=1 bench/forward.sh`).
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(RefusedHead::Malformed("the head is cut short"));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RefusedHead::TooLarge),
        Err(_) => {
            return Err(RefusedHead::Malformed(
                "a malformed request line or header field",
            ));
        }
    }
    let mut lengths = Vec::new();
    let mut encodings = Vec::new();
    let mut last = request
        .method
        .is_some_and(|method| method.eq_ignore_ascii_case("CONNECT"));
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("content-length") {
            lengths.push(field.value);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.push(field.value);
        } else if field.name.eq_ignore_ascii_case("upgrade") {
            last = true;
        }
    }
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err(RefusedHead::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if request.version != Some(1) {
            return Err(RefusedHead::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        let final_coding = encodings
            .last()
            .and_then(|value| value.rsplit(|byte| *byte == b',').next())
            .map(<[u8]>::trim_ascii)
            .unwrap_or_default();
        if !final_coding.eq_ignore_ascii_case(b"chunked") {
            return Err(RefusedHead::Malformed(
                "a Transfer-Encoding whose last coding is not chunked",
            ));
        }
        return Ok((Some(Framing::Chunked(Chunked::default())), last));
    }
    let mut length = None;
    for value in lengths {
        for item in value.split(|byte| *byte == b',') {
            let parsed = parse_length(item.trim_ascii())
                .ok_or(RefusedHead::Malformed("an invalid Content-Length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(RefusedHead::Malformed("Content-Length values that differ"));
            }
            length = Some(parsed);
        }
    }
    Ok((
        length.filter(|length| *length > 0).map(Framing::Length),
        last,
    ))
}

/// Decimal digits only, no sign, no overflow.
fn parse_length(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |total, byte| {
        let digit = char::from(*byte).to_digit(10)?;
        total.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A request body's framing, followed byte for byte.
#[derive(Debug)]
enum Framing {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(Chunked),
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body goes on past these bytes.
    More,
    /// The body ended within them.
    Done,
    /// The last consumed byte breaks the framing.
    Invalid,
}

struct Step {
    consumed: usize,
    outcome: Outcome,
}

/// The states of hyper's chunked decoder (`proto/h1/decode.rs`), with its rules: CRLF after
/// every line, optional spaces or tabs after the size, extensions without LF, trailers until an
/// empty line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    /// Extension bytes and trailer bytes over the whole body (hyper counts both so).
    extension: usize,
    trailers: usize,
}

impl Framing {
    fn consume(&mut self, bytes: &[u8]) -> Step {
        match self {
            Framing::Length(left) => {
                let take = usize::try_from(*left).map_or(bytes.len(), |left| left.min(bytes.len()));
                *left -= u64::try_from(take).unwrap_or(*left);
                Step {
                    consumed: take,
                    outcome: if *left == 0 {
                        Outcome::Done
                    } else {
                        Outcome::More
                    },
                }
            }
            Framing::Chunked(chunked) => chunked.consume(bytes),
        }
    }
}

impl Chunked {
    fn consume(&mut self, bytes: &[u8]) -> Step {
        let mut index = 0;
        while let Some(byte) = bytes.get(index).copied() {
            if self.state == ChunkState::Data {
                let left = bytes.len() - index;
                let take = usize::try_from(self.size).map_or(left, |size| size.min(left));
                self.size -= u64::try_from(take).unwrap_or(self.size);
                index += take;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            index += 1;
            match self.next(byte) {
                Some(ChunkState::Data) if self.size == 0 => {
                    return Step {
                        consumed: index,
                        outcome: Outcome::Done,
                    };
                }
                Some(state) => self.state = state,
                None => {
                    return Step {
                        consumed: index,
                        outcome: Outcome::Invalid,
                    };
                }
            }
        }
        Step {
            consumed: index,
            outcome: Outcome::More,
        }
    }

    /// The state after `byte`; `Data` with a size of 0 means the body has ended; `None`: the
    /// byte is not allowed here.
    fn next(&mut self, byte: u8) -> Option<ChunkState> {
        use ChunkState::*;
        let digit = || char::from(byte).to_digit(16).map(u64::from);
        Some(match (self.state, byte) {
            (Start | Size, _) if digit().is_some() => {
                self.size = self.size.checked_mul(16)?.checked_add(digit()?)?;
                Size
            }
            (Size | SizeSpace, b'\t' | b' ') => SizeSpace,
            (Size | SizeSpace, b';') => Extension,
            (Size | SizeSpace | Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return None,
            (Extension, _) => {
                self.extension += 1;
                if self.extension >= MAX_EXTENSION {
                    return None;
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            (EndLf, b'\n') => {
                self.size = 0;
                Data
            }
            (EndCr | Trailer, _) => {
                self.trailers += 1;
                if self.trailers > MAX_EXTENSION {
                    return None;
                }
                if byte == b'\r' { TrailerLf } else { Trailer }
            }
            (TrailerLf, b'\n') => EndCr,
            _ => return None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// What hyper would read from `input` arriving in pieces of `piece` bytes, and the
    /// refusal, if any, with its place among the requests.
    async fn through(input: &[u8], piece: usize) -> (Vec<u8>, Option<RefusedHead>) {
        let mut builder = tokio_test_io(input, piece);
        let refusal = Refusal::default();
        let check = HeadCheck::new(&mut builder, 1024, false, refusal.clone());
        (read_all(check).await, refused(&refusal))
    }

    /// The refusal, whichever request it is.
    fn refused(refusal: &Refusal) -> Option<RefusedHead> {
        refusal
            .0
            .lock()
            .unwrap()
            .refused
            .map(|(_, refused)| refused)
    }

    #[tokio::test]
    async fn the_refusal_names_its_place_among_pipelined_requests() {
        let refusal = Refusal::default();
        let input: &[u8] =
            b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 1\r\n\r\n\n\
            GET /3 HTTP/1.1\nX: y\r\n\r\n";
        let check = HeadCheck::new(input, 1024, false, refusal.clone());
        // All of it is checked in one read, before hyper calls the service even once.
        read_all(check).await;
        assert_eq!(refusal.next_request(), None, "the first request is served");
        assert_eq!(refusal.next_request(), None, "so is the second");
        assert!(matches!(
            refusal.next_request(),
            Some(RefusedHead::Malformed(_))
        ));
        assert_eq!(refusal.next_request(), None);
    }

    /// Everything hyper could read: until the end of the stream, or until the check holds
    /// the rest back (pending with nothing to wake it).
    async fn read_all(mut check: impl AsyncRead + Unpin) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = [0u8; 100];
        while let Ok(read) = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            check.read(&mut buffer),
        )
        .await
        {
            match read.unwrap() {
                0 => break,
                count => out.extend_from_slice(&buffer[..count]),
            }
        }
        out
    }

    /// A reader that returns `input` in pieces.
    fn tokio_test_io(input: &[u8], piece: usize) -> Pieces {
        Pieces {
            chunks: input.chunks(piece.max(1)).map(<[u8]>::to_vec).collect(),
            end: true,
        }
    }

    struct Pieces {
        chunks: std::collections::VecDeque<Vec<u8>>,
        /// After the last piece: the end of the stream, or a peer that says no more (yet).
        end: bool,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            match this.chunks.pop_front() {
                Some(chunk) => buf.put_slice(&chunk),
                None if !this.end => return Poll::Pending,
                None => {}
            }
            Poll::Ready(Ok(()))
        }
    }

    const PIECES: [usize; 5] = [1, 2, 3, 7, 4096];

    #[tokio::test]
    async fn valid_requests_pass_unchanged_in_any_pieces() {
        let input: &[u8] = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe\nlo\
            POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            3;ext=1\r\na\nb\r\n2 \r\n\r\n\r\n0\r\nTrailer: x\r\n\r\n\
            GET /z HTTP/1.1\r\nHost: a\r\n\r\n";
        for piece in PIECES {
            let (out, refused) = through(input, piece).await;
            assert_eq!(refused, None, "pieces of {piece}");
            // Only the leading empty line is left out (hyper skips it too).
            assert_eq!(out, &input[2..], "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn a_bare_lf_in_a_head_is_refused_but_not_in_a_body() {
        for input in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            // The second request of the connection, after a body holding bare LFs.
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\n\n\nGET / HTTP/1.1\r\nX: y\n\r\n",
        ] {
            for piece in PIECES {
                let (out, refused) = through(input, piece).await;
                assert!(
                    matches!(refused, Some(RefusedHead::Malformed(_))),
                    "{:?}",
                    String::from_utf8_lossy(input)
                );
                assert!(
                    out.ends_with(STAND_IN),
                    "hyper reads the stand-in, then the end"
                );
                assert!(
                    !out.windows(2).any(|pair| pair == b"X:"),
                    "the bad head is not passed"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_head_past_the_limit_is_refused_before_it_ends() {
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 2000));
        let (out, refused) = through(&input, 100).await;
        assert_eq!(
            refused,
            Some(RefusedHead::TooLarge),
            "no end of head needed"
        );
        assert_eq!(out, STAND_IN);
        let mut fields = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..=MAX_HEADERS {
            fields.extend(format!("a{index}: b\r\n").as_bytes());
        }
        fields.extend(b"\r\n");
        let refusal = Refusal::default();
        let check = HeadCheck::new(&fields[..], 1 << 20, false, refusal.clone());
        read_all(check).await;
        assert_eq!(
            super::tests::refused(&refusal),
            Some(RefusedHead::TooLarge),
            "101 fields"
        );
    }

    #[tokio::test]
    async fn ambiguous_body_lengths_are_refused() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
        ] {
            let (_, refused) = through(head, 5).await;
            assert!(
                matches!(refused, Some(RefusedHead::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // The same length twice is one length.
        let (_, refused) = through(b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nab", 5).await;
        assert_eq!(refused, None);
    }

    #[tokio::test]
    async fn a_broken_chunked_body_ends_the_stream_where_hyper_fails() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\na\r\nGET /smuggled HTTP/1.1\nX: y\n\n";
        for piece in PIECES {
            let (out, refused) = through(input, piece).await;
            assert_eq!(refused, None);
            let cut = input.iter().position(|byte| *byte == b'\n').unwrap();
            let body_start = input
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
                .unwrap()
                + 4;
            assert_eq!(out.len(), body_start + 2, "up to the bad byte ({cut})");
        }
    }

    #[tokio::test]
    async fn upgrades_and_connect_are_the_last_request() {
        let input = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let (out, refused) = through(input, 4096).await;
        assert_eq!(refused, None);
        assert!(!out.windows(5).any(|window| window == b"/next"));
    }

    #[tokio::test]
    async fn http2_passes_through() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend([0, 0, 0, 4, 0, 0, 0, 0, 0, b'\n', b'\n']);
        for piece in PIECES {
            let (out, refused) = through(&input, piece).await;
            assert_eq!(refused, None);
            assert_eq!(out, input);
        }
    }

    #[test]
    fn the_chunk_decoder_follows_hyper_on_sizes_and_limits() {
        let mut chunked = Chunked::default();
        let step = chunked.consume(b"fffffffffffffffff\r\n");
        assert_eq!(step.outcome, Outcome::Invalid, "a size that overflows");
        let mut chunked = Chunked::default();
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_EXTENSION));
        assert_eq!(chunked.consume(&line).outcome, Outcome::Invalid);
        let mut chunked = Chunked::default();
        assert_eq!(chunked.consume(b"0\r\n\r\nrest").consumed, 5);
    }

    /// Drives a check over `input` cut at `cuts` (offsets), without a runtime: what hyper
    /// would read, until the end or until the check holds back.
    fn drive(input: &[u8], cuts: &[usize], end: bool) -> (Vec<u8>, Option<RefusedHead>) {
        let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
        offsets.push(0);
        offsets.push(input.len());
        offsets.sort_unstable();
        offsets.dedup();
        let pieces = Pieces {
            chunks: offsets
                .windows(2)
                .map(|pair| input[pair[0]..pair[1]].to_vec())
                .collect(),
            end,
        };
        let refusal = Refusal::default();
        let mut check = HeadCheck::new(pieces, 256, false, refusal.clone());
        let mut out = Vec::new();
        let mut context = Context::from_waker(std::task::Waker::noop());
        loop {
            let mut buffer = [0u8; 64];
            let mut read = ReadBuf::new(&mut buffer);
            match Pin::new(&mut check).poll_read(&mut context, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => break,
                Poll::Ready(Ok(())) => out.extend_from_slice(read.filled()),
                Poll::Ready(Err(error)) => panic!("{error}"),
                Poll::Pending => break,
            }
        }
        (out, refused(&refusal))
    }

    /// One valid HTTP/1.1 request: a head of CRLF lines, and a body framed by length or by
    /// chunks (with extensions and trailers), whose bytes may be anything (bare LFs too).
    fn request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let body = proptest::collection::vec(any::<u8>(), 0..40);
        let chunks = proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 1..20), any::<bool>()),
            0..4,
        );
        (
            prop_oneof!["GET", "POST", "PUT"],
            "/[a-z0-9/?=&]{0,20}",
            proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..4),
            prop_oneof![Just(None), body.prop_map(Some),],
            chunks,
            any::<bool>(),
        )
            .prop_map(|(method, path, fields, body, chunks, chunked)| {
                let mut out = format!("{method} /{path} HTTP/1.1\r\nHost: a\r\n").into_bytes();
                for (name, value) in fields {
                    out.extend(format!("{name}: {}\r\n", value.trim()).as_bytes());
                }
                if chunked {
                    out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                    for (data, extension) in chunks {
                        let ext = if extension { ";a=b" } else { "" };
                        out.extend(format!("{:x}{ext}\r\n", data.len()).as_bytes());
                        out.extend(data);
                        out.extend(b"\r\n");
                    }
                    out.extend(b"0\r\nx-trailer: t\r\n\r\n");
                } else if let Some(body) = body {
                    out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                    out.extend(body);
                } else {
                    out.extend(b"\r\n");
                }
                out
            })
    }

    proptest::proptest! {
        /// Valid requests, pipelined and cut anywhere, reach hyper unchanged and at once.
        #[test]
        fn valid_pipelined_requests_pass_unchanged(
            requests in proptest::collection::vec(request(), 1..5),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
        ) {
            let input: Vec<u8> = requests.concat();
            // The peer then waits: every complete request must have been handed on without
            // an end of stream to flush it.
            let (out, refused) = drive(&input, &cuts, false);
            proptest::prop_assert_eq!(refused, None);
            proptest::prop_assert_eq!(out, input);
        }

        /// Any bytes, cut anywhere: no panic, and the same outcome however the bytes arrive
        /// (the scan resumes correctly), never more than the input and a stand-in.
        #[test]
        fn any_bytes_in_any_pieces_give_one_outcome(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::prelude::Just(b'\r'),
                    proptest::prelude::Just(b'\n'),
                ],
                0..600,
            ),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
        ) {
            let whole = drive(&input, &[], true);
            let cut = drive(&input, &cuts, true);
            proptest::prop_assert_eq!(&whole, &cut);
            proptest::prop_assert!(whole.0.len() <= input.len() + STAND_IN.len());
            if whole.1.is_some() {
                proptest::prop_assert!(whole.0.ends_with(STAND_IN));
            }
        }
    }
}
