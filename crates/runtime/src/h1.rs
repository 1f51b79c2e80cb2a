//! HTTP/1.1 to the target, driven by the task of the request that uses the connection.
//!
//! hyper's client runs each connection in a task of its own and reaches it through channels:
//! every forwarded request crossed two tasks and four channel operations, and every response
//! and body chunk came back the same way. Here the request's task writes the request, reads
//! the response head, and the response body (polled by the downstream connection's task)
//! reads the rest straight from the socket; an idle connection is a socket in the pool and
//! nothing else. (Measured in instructions per request: bench/forward.sh, docs/forward.md.)
//!
//! What is parsed from the target is parsed strictly: the response head by `httparse` (the
//! parser hyper uses), within [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields; the body framed
//! by RFC 9112 section 6.3 (no body for `HEAD`, 204 and 304; `Transfer-Encoding` before
//! `Content-Length`; differing lengths refused; a body without framing read to the close);
//! chunk lines and trailers within limits. A connection goes back to the pool only when its
//! response ended exactly where its framing said, with nothing after it, and neither side
//! asked for a close: so no byte of one response can ever be read as part of the next.

use std::error::Error as StdError;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as _, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::forward::ForwardBody;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The largest response head (status line and fields) read from a target.
pub const MAX_HEAD: usize = 128 * 1024;
/// The most fields a response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// The most bytes of trailer fields read (and dropped) after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Body data up to this size is copied out of the read buffer, so that the buffer is reused
/// for the next read; larger data is handed on without a copy.
const COPY_MAX: usize = 4096;
/// Read-buffer growth step.
const READ_CHUNK: usize = 8192;
/// Request body bytes queued before the writes must catch up.
const WRITE_QUEUE: usize = 64 * 1024;

/// The target's answer is not valid HTTP/1.1 (or is past a limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the target's answer is not valid HTTP/1.1: {}", self.0)
    }
}

impl StdError for Malformed {}

/// The socket to the target: TLS, or plain TCP where the egress policy allows `http`.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An HTTP/1.1 connection: the socket and what has been read from it and not yet used.
pub struct Conn {
    io: Stream,
    buf: BytesMut,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    pub fn new(io: Stream) -> Box<Self> {
        Box::new(Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
        })
    }

    /// Whether an idle connection can take a request: the target has not closed it and has
    /// sent nothing unasked. Reads without waiting: after an answer, one `recv` that finds
    /// nothing (the read hyper's connection task made after each response); none while tokio
    /// knows the socket is quiet. What it reads makes the connection unusable anyway.
    pub fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// The connection, if it can take a request ([`Conn::reusable`]).
    pub fn checked(mut self: Box<Self>) -> Option<Box<Self>> {
        self.reusable().then_some(self)
    }

    /// Reads what the socket has into the buffer; `Ready(Ok(0))` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            // Reclaims the buffer's space when everything in it has been used.
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// How the request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outgoing {
    Empty,
    Length(u64),
    Chunked,
}

/// A request encoded for the wire: its head (kept for a second attempt) and its framing.
pub struct Encoded {
    head: Vec<u8>,
    outgoing: Outgoing,
    head_request: bool,
    retry_safe: bool,
}

impl Encoded {
    /// Encodes `request`'s head in origin form, adding `host` unless the request has a `Host`,
    /// and the body's framing (its `Content-Length`, the body's exact size, or chunked).
    pub fn new(request: &Request<ForwardBody>, host: Option<&str>) -> Result<Self, Malformed> {
        let method = request.method();
        let headers = request.headers();
        let body = request.body();
        let declared = match headers.get(header::CONTENT_LENGTH) {
            Some(value) => {
                Some(digits(value.as_bytes()).ok_or(Malformed("the request's Content-Length"))?)
            }
            None => None,
        };
        let (outgoing, add) = match declared {
            Some(0) if body.is_end_stream() => (Outgoing::Empty, None),
            Some(length) => (Outgoing::Length(length), None),
            None if body.is_end_stream() => {
                let zero = [Method::POST, Method::PUT, Method::PATCH].contains(method);
                (Outgoing::Empty, zero.then_some(Outgoing::Length(0)))
            }
            None => match body.size_hint().exact() {
                Some(length) => (Outgoing::Length(length), Some(Outgoing::Length(length))),
                None => (Outgoing::Chunked, Some(Outgoing::Chunked)),
            },
        };
        let path = request
            .uri()
            .path_and_query()
            .map_or("", |path| path.as_str());
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        if !path.starts_with('/') {
            head.push(b'/');
        }
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(host) = host.filter(|_| !headers.contains_key(header::HOST)) {
            if host.bytes().any(|byte| byte.is_ascii_control()) {
                return Err(Malformed("the request's host"));
            }
            field(&mut head, b"host", host.as_bytes());
        }
        for (name, value) in headers {
            field(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
        match add {
            Some(Outgoing::Length(length)) => {
                let _ = write!(head, "content-length: {length}\r\n");
            }
            Some(Outgoing::Chunked) => field(&mut head, b"transfer-encoding", b"chunked"),
            _ => {}
        }
        head.extend_from_slice(b"\r\n");
        Ok(Self {
            head,
            outgoing,
            head_request: *method == Method::HEAD,
            // RFC 9110 9.2.2: only an idempotent request may be sent again, and only one with no
            // body, which is never polled so is whole for the second attempt.
            retry_safe: outgoing == Outgoing::Empty && method.is_idempotent(),
        })
    }
}

/// Without the head: it holds the request's fields, `Authorization` among them.
impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("outgoing", &self.outgoing)
            .field("retry_safe", &self.retry_safe)
            .finish_non_exhaustive()
    }
}

fn field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failed {
    /// A reused connection was closed by the target before it answered, and the request may
    /// be sent again on another connection.
    Retry,
    Error(BoxError),
}

/// The response head, and how its body goes on.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    decoder: Decoder,
    keep_alive: bool,
}

/// Without the fields: a target's (`Set-Cookie`, say) are for the caller, not for logs.
impl fmt::Debug for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Head")
            .field("status", &self.status)
            .field("decoder", &self.decoder)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

/// Sends `request` on `conn` and reads the response head. The body is written while the head
/// is awaited, so that a target answering early (a 413, say) is heard; the connection is then
/// not reused.
pub async fn exchange(
    conn: &mut Conn,
    request: &mut Request<ForwardBody>,
    encoded: &Encoded,
    reused: bool,
) -> Result<Head, Failed> {
    let mut sending = Sending {
        head_pos: 0,
        queue: Vec::new(),
        queue_pos: 0,
        written: 0,
        body_done: encoded.outgoing == Outgoing::Empty,
        done: false,
    };
    let mut write_error: Option<io::Error> = None;
    // Whether any byte of an answer came: only a reused connection closed before one came may
    // be given up for another, and only for a request that may be sent twice.
    let mut received = false;
    let retry = |received: bool| reused && !received && encoded.retry_safe;
    let body = request.body_mut();
    poll_fn(|cx| {
        if !sending.done && write_error.is_none() {
            match sending.poll(cx, &mut conn.io, &mut *body, encoded) {
                Poll::Ready(Ok(())) => sending.done = true,
                Poll::Ready(Err(Sent::Body(error))) => {
                    return Poll::Ready(Err(Failed::Error(error)));
                }
                Poll::Ready(Err(Sent::Malformed(error))) => {
                    return Poll::Ready(Err(Failed::Error(Box::new(error))));
                }
                // The target may still answer (it may have refused the body): read on.
                Poll::Ready(Err(Sent::Io(error))) => write_error = Some(error),
                Poll::Pending => {}
            }
        }
        loop {
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    if retry(received) {
                        return Poll::Ready(Err(Failed::Retry));
                    }
                    let error = write_error.take().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the target closed the connection before answering",
                        )
                    });
                    return Poll::Ready(Err(Failed::Error(Box::new(error))));
                }
                // The head is parsed only when bytes came (a connection starts with none).
                Poll::Ready(Ok(_)) => {
                    received = true;
                    match parse_head(&mut conn.buf, encoded.head_request) {
                        Ok(Some(mut head)) => {
                            head.keep_alive &= sending.done;
                            return Poll::Ready(Ok(head));
                        }
                        Ok(None) => {}
                        Err(malformed) => {
                            return Poll::Ready(Err(Failed::Error(Box::new(malformed))));
                        }
                    }
                }
                Poll::Ready(Err(error)) => {
                    // A TLS connection closed without `close_notify` ends in `UnexpectedEof`.
                    let reset = matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::UnexpectedEof
                    );
                    if reset && retry(received) {
                        return Poll::Ready(Err(Failed::Retry));
                    }
                    return Poll::Ready(Err(Failed::Error(Box::new(error))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

enum Sent {
    Body(BoxError),
    Malformed(Malformed),
    Io(io::Error),
}

/// The request going out: the head, then the body frames as they come.
struct Sending {
    head_pos: usize,
    /// Body bytes framed and not yet written.
    queue: Vec<u8>,
    queue_pos: usize,
    /// Body bytes taken from the body.
    written: u64,
    body_done: bool,
    done: bool,
}

impl Sending {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut Stream,
        body: &mut ForwardBody,
        encoded: &Encoded,
    ) -> Poll<Result<(), Sent>> {
        loop {
            if !self.body_done && self.queue.len() - self.queue_pos < WRITE_QUEUE {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.frame(&data, encoded.outgoing)?;
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(Sent::Body(error))),
                    Poll::Ready(None) => {
                        self.body_done = true;
                        match encoded.outgoing {
                            Outgoing::Chunked => self.queue.extend_from_slice(b"0\r\n\r\n"),
                            Outgoing::Length(length) if length != self.written => {
                                return Poll::Ready(Err(Sent::Malformed(Malformed(
                                    "the request body is shorter than its Content-Length",
                                ))));
                            }
                            _ => {}
                        }
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            let head = encoded.head.get(self.head_pos..).unwrap_or_default();
            let queued = self.queue.get(self.queue_pos..).unwrap_or_default();
            if !head.is_empty() || !queued.is_empty() {
                let wrote = if head.is_empty() {
                    Pin::new(&mut *io).poll_write(cx, queued)
                } else if queued.is_empty() {
                    Pin::new(&mut *io).poll_write(cx, head)
                } else {
                    Pin::new(&mut *io)
                        .poll_write_vectored(cx, &[IoSlice::new(head), IoSlice::new(queued)])
                };
                match wrote {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Sent::Io(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(mut n)) => {
                        let from_head = n.min(head.len());
                        self.head_pos += from_head;
                        n -= from_head;
                        self.queue_pos += n;
                        if self.queue_pos >= self.queue.len() {
                            self.queue.clear();
                            self.queue_pos = 0;
                        }
                        continue;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(Sent::Io(error))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if !self.body_done {
                return Poll::Pending;
            }
            return match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                Poll::Ready(Err(error)) => Poll::Ready(Err(Sent::Io(error))),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn frame(&mut self, data: &[u8], outgoing: Outgoing) -> Result<(), Sent> {
        if data.is_empty() {
            return Ok(());
        }
        let length = data.len() as u64;
        self.written += length;
        match outgoing {
            Outgoing::Length(declared) if self.written > declared => Err(Sent::Malformed(
                Malformed("the request body is longer than its Content-Length"),
            )),
            Outgoing::Empty => Err(Sent::Malformed(Malformed(
                "the request body is longer than its Content-Length",
            ))),
            Outgoing::Chunked => {
                let _ = write!(self.queue, "{length:x}\r\n");
                self.queue.extend_from_slice(data);
                self.queue.extend_from_slice(b"\r\n");
                Ok(())
            }
            Outgoing::Length(_) => {
                self.queue.extend_from_slice(data);
                Ok(())
            }
        }
    }
}

/// Parses a response head from the front of `buf` and takes it out (`None`: not all there
/// yet). Interim (1xx) responses are skipped; 101 is refused, since no upgrade is asked for.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Malformed> {
    loop {
        // Uninitialized slots: httparse fills only as many as the head has.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(Malformed("the response head is too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Malformed("the response head has too many fields"));
            }
            Err(_) => return Err(Malformed("the response head does not parse")),
        };
        if len > MAX_HEAD {
            return Err(Malformed("the response head is too large"));
        }
        let code = response.code.unwrap_or(0);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Malformed("101 Switching Protocols was not asked for"));
            }
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| Malformed("the status code"))?;
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // The head is copied out (one small allocation) so that the read buffer stays whole
        // for the body and the next response; the field values are slices of the copy.
        let block = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
        let base = buf.as_ptr().addr();
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        // The fields that frame the message, read as they go by (no lookups after).
        let mut fields = Framing::default();
        for field in response.headers.iter() {
            fields.see(field.name.as_bytes(), field.value)?;
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| Malformed("a field name"))?;
            let start = field
                .value
                .as_ptr()
                .addr()
                .checked_sub(base)
                .filter(|start| start + field.value.len() <= block.len())
                .ok_or(Malformed("a field value"))?;
            let value =
                HeaderValue::from_maybe_shared(block.slice(start..start + field.value.len()))
                    .map_err(|_| Malformed("a field value"))?;
            headers.append(name, value);
        }
        buf.advance(len);
        let (decoder, framed) = fields.decide(head_request, status, version)?;
        let keep_alive = framed && version == Version::HTTP_11 && !fields.close;
        return Ok(Some(Head {
            status,
            version,
            headers,
            decoder,
            keep_alive,
        }));
    }
}

/// What a response head says about its body's framing and its connection.
#[derive(Debug, Default)]
struct Framing {
    /// Whether there is a `Transfer-Encoding`, and whether its last coding is `chunked`.
    encoded: bool,
    chunked: bool,
    length: Option<u64>,
    close: bool,
}

impl Framing {
    fn see(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.encoded = true;
            let last = value
                .rsplit(|byte| *byte == b',')
                .next()
                .unwrap_or_default();
            self.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|byte| *byte == b',') {
                let part = digits(part.trim_ascii()).ok_or(Malformed("the Content-Length"))?;
                if self.length.is_some_and(|length| length != part) {
                    return Err(Malformed("Content-Length values differ"));
                }
                self.length = Some(part);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= value
                .split(|byte| *byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        Ok(())
    }

    /// The body's framing (RFC 9112 6.3), and whether the connection may carry another
    /// exchange after it.
    fn decide(
        &self,
        head_request: bool,
        status: StatusCode,
        version: Version,
    ) -> Result<(Decoder, bool), Malformed> {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Decoder::Done, true));
        }
        if self.encoded {
            if version == Version::HTTP_10 {
                return Err(Malformed("Transfer-Encoding in an HTTP/1.0 response"));
            }
            if self.chunked {
                // With a Content-Length beside it, the message is read as chunked and the
                // connection closed after it (RFC 9112 6.3, rule 3).
                return Ok((Decoder::Chunked(Chunk::Size), self.length.is_none()));
            }
            return Ok((Decoder::Close, false));
        }
        Ok(match self.length {
            Some(length) => (Decoder::Length(length), true),
            None => (Decoder::Close, false),
        })
    }
}

/// A decimal length: digits only, no sign, no overflow.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.iter().try_fold(0u64, |sum, byte| {
        byte.is_ascii_digit()
            .then(|| sum * 10 + u64::from(byte - b'0'))
    })
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// How the rest of a response body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    /// Until the target closes the connection.
    Close,
    Done,
}

/// What decoding found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// More must be read.
    More,
    End,
}

impl Decoder {
    /// Takes the next piece of body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match *self {
                Decoder::Done | Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Decoded::End);
                }
                Decoder::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    *self = Decoder::Length(remaining - n as u64);
                    return Ok(Decoded::Data(take(buf, n)));
                }
                Decoder::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = buf.len();
                    return Ok(Decoded::Data(take(buf, n)));
                }
                Decoder::Chunked(Chunk::Size) => {
                    let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::More);
                    };
                    let size = chunk_size(buf.get(..end).unwrap_or_default())?;
                    buf.advance(end + 2);
                    *self = Decoder::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                }
                Decoder::Chunked(Chunk::Data(remaining)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let left = remaining - n as u64;
                    *self = Decoder::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Decoded::Data(take(buf, n)));
                }
                Decoder::Chunked(Chunk::DataEnd) => match buf.get(..2) {
                    None if buf.first().is_none_or(|byte| *byte == b'\r') => {
                        return Ok(Decoded::More);
                    }
                    Some(b"\r\n") => {
                        buf.advance(2);
                        *self = Decoder::Chunked(Chunk::Size);
                    }
                    _ => return Err(Malformed("a chunk does not end with CRLF")),
                },
                Decoder::Chunked(Chunk::Trailers(seen)) => {
                    let Some(end) = line_end(buf, MAX_TRAILERS.saturating_sub(seen))? else {
                        return Ok(Decoded::More);
                    };
                    buf.advance(end + 2);
                    if end == 0 {
                        *self = Decoder::Done;
                        return Ok(Decoded::End);
                    }
                    let seen = seen + end + 2;
                    if seen > MAX_TRAILERS {
                        return Err(Malformed("the trailers are too large"));
                    }
                    *self = Decoder::Chunked(Chunk::Trailers(seen));
                }
            }
        }
    }

    /// Whether the body has ended.
    pub fn ended(&self) -> bool {
        matches!(self, Decoder::Done | Decoder::Length(0))
    }
}

/// The position of the CRLF ending the line at the front of `buf`; a bare CR or LF, or a line
/// longer than `limit`, is refused.
fn line_end(buf: &[u8], limit: usize) -> Result<Option<usize>, Malformed> {
    let window = buf
        .get(..buf.len().min(limit.saturating_add(2)))
        .unwrap_or_default();
    match window
        .iter()
        .position(|byte| *byte == b'\r' || *byte == b'\n')
    {
        Some(at) => match window.get(at..at + 2) {
            Some(b"\r\n") => Ok(Some(at)),
            None if window.get(at) == Some(&b'\r') && at + 1 == buf.len() => Ok(None),
            _ => Err(Malformed("a bare CR or LF in chunked framing")),
        },
        None if buf.len() > limit => Err(Malformed("a chunked framing line is too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" extensions ]`: the size; the extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let hex = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if hex == 0 || hex > 15 {
        return Err(Malformed("a chunk size"));
    }
    let rest = line.get(hex..).unwrap_or_default().trim_ascii_start();
    if !(rest.is_empty() || rest.first() == Some(&b';')) {
        return Err(Malformed("a chunk size"));
    }
    let size = line
        .get(..hex)
        .unwrap_or_default()
        .iter()
        .fold(0u64, |sum, byte| {
            let digit = (*byte as char).to_digit(16).unwrap_or(0);
            sum * 16 + u64::from(digit)
        });
    Ok(size)
}

/// The first `n` bytes of `buf`: copied when small, so the buffer's memory stays its own.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// A response body read from its connection; when it ends where its framing says, the
/// connection can be taken back for another exchange ([`Body::reusable`]).
pub struct Body {
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl Body {
    pub fn new(conn: Box<Conn>, head: &Head) -> Self {
        Self {
            conn: Some(conn),
            decoder: head.decoder,
            keep_alive: head.keep_alive,
        }
    }

    /// The connection, once the body has ended exactly at its framing's end with nothing
    /// after it, when neither side asked for a close.
    pub fn reusable(&mut self) -> Option<Box<Conn>> {
        if !(self.decoder.ended() && self.keep_alive) {
            return None;
        }
        self.conn.take().filter(|conn| conn.buf.is_empty())
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.decoder = Decoder::Done;
        self.keep_alive = false;
        Poll::Ready(Some(Err(error)))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::More) => {}
                Err(malformed) => return this.fail(Box::new(malformed)),
            }
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) if this.decoder == Decoder::Close => {
                    this.decoder = Decoder::Done;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail(Box::new(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the target closed the connection in the middle of the body",
                    )));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return this.fail(Box::new(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(remaining) => SizeHint::with_exact(remaining),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `wire` fed in pieces of `step` bytes: the body, and whether it ended.
    fn decode_in_pieces(
        mut decoder: Decoder,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, bool), Malformed> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut pieces = wire.chunks(step.max(1));
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End => return Ok((body, true)),
                Decoded::More => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return Ok((body, false)),
                },
            }
        }
    }

    fn chunked(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), Malformed> {
        decode_in_pieces(Decoder::Chunked(Chunk::Size), wire, step)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire =
            b"5\r\nhello\r\n1;name=value\r\n \r\nA \r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in 1..wire.len() {
            assert_eq!(
                chunked(wire, step),
                Ok((b"hello 0123456789".to_vec(), true)),
                "step {step}"
            );
        }
    }

    #[test]
    fn chunked_framing_errors_are_refused() {
        for (wire, why) in [
            (
                &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
                "data longer than its size",
            ),
            (b"5\nhello\r\n0\r\n\r\n", "bare LF after the size"),
            (b"5\rhello\r\n0\r\n\r\n", "bare CR after the size"),
            (b"-5\r\nhello\r\n0\r\n\r\n", "a sign"),
            (b"\r\nhello\r\n0\r\n\r\n", "no size"),
            (b"5 x\r\nhello\r\n0\r\n\r\n", "junk after the size"),
            (b"1000000000000000\r\n", "a size of 16 hex digits"),
            (b"0\r\nx: 1\n\r\n", "a bare LF in the trailers"),
        ] {
            for step in [1, 3, wire.len()] {
                assert!(chunked(wire, step).is_err(), "{why} (step {step})");
            }
        }
        let long = [b"1;".as_slice(), &[b'a'; MAX_CHUNK_LINE + 8]].concat();
        assert!(chunked(&long, 64).is_err(), "an endless chunk line");
        let trailers = [
            b"0\r\n".as_slice(),
            &b"x: y\r\n".repeat(MAX_TRAILERS / 6 + 1),
        ]
        .concat();
        assert!(chunked(&trailers, 100).is_err(), "endless trailers");
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut buf = BytesMut::from(&b"abcdefNEXT"[..]);
        let mut decoder = Decoder::Length(6);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abcdef")))
        );
        assert!(decoder.ended());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"NEXT", "the rest stays for the caller to judge");
    }

    fn head(wire: &[u8], head_request: bool) -> Result<Option<Head>, Malformed> {
        parse_head(&mut BytesMut::from(wire), head_request)
    }

    #[test]
    fn heads_set_the_framing_and_reuse() {
        let cases: [(&[u8], bool, Decoder, bool); 10] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
                false,
                Decoder::Length(12),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n",
                false,
                Decoder::Length(12),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false,
                Decoder::Chunked(Chunk::Size),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                Decoder::Chunked(Chunk::Size),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Decoder::Close,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Decoder::Close, false),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: Keep-Alive, Close\r\n\r\n",
                false,
                Decoder::Length(5),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
                false,
                Decoder::Length(5),
                false,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
                false,
                Decoder::Done,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                true,
                Decoder::Done,
                true,
            ),
        ];
        for (wire, head_request, decoder, keep_alive) in cases {
            let parsed = head(wire, head_request).ok().flatten();
            let got = parsed.map(|head| (head.decoder, head.keep_alive));
            assert_eq!(
                got,
                Some((decoder, keep_alive)),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_fields_kept() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\nX-A: 2\r\ncontent-length: 2\r\n\r\nok"[..],
        );
        let head = parse_head(&mut buf, false).ok().flatten();
        let head = head.as_ref();
        assert_eq!(head.map(|head| head.status), Some(StatusCode::CREATED));
        let values: Vec<&[u8]> = head
            .map(|head| {
                head.headers
                    .get_all("x-a")
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(values, [b"1".as_slice(), b"2"]);
        assert!(head.is_some_and(|head| !head.headers.contains_key("link")));
        assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
    }

    #[test]
    fn bad_heads_are_refused_and_partial_ones_wait() {
        assert!(matches!(
            head(b"HTTP/1.1 200 OK\r\ncontent-le", false),
            Ok(None)
        ));
        for wire in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: folded\r\n continued\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                head(wire, false).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let many = [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            &b"x: y\r\n".repeat(MAX_HEADERS + 1),
            b"\r\n",
        ]
        .concat();
        assert!(head(&many, false).is_err(), "too many fields");
        let endless = [
            b"HTTP/1.1 200 OK\r\nx: ".as_slice(),
            &vec![b'a'; MAX_HEAD + 1],
        ]
        .concat();
        assert!(head(&endless, false).is_err(), "an endless head");
    }

    /// The head `Encoded` writes for `request`, and whether it may be sent again.
    fn encoded(request: Request<&'static [u8]>) -> (String, bool) {
        use http_body_util::BodyExt;
        let request = request.map(|bytes| {
            http_body_util::Full::new(Bytes::from_static(bytes))
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let encoded = Encoded::new(&request, Some("target.example")).unwrap();
        (String::from_utf8(encoded.head).unwrap(), encoded.retry_safe)
    }

    #[test]
    fn request_heads_carry_framing_and_host() {
        let get = Request::get("https://target.example/a?b=1").body(&b""[..]);
        assert_eq!(
            encoded(get.unwrap()),
            (
                "GET /a?b=1 HTTP/1.1\r\nhost: target.example\r\n\r\n".to_owned(),
                true
            )
        );
        let post = Request::post("https://target.example").body(&b"xyz"[..]);
        assert_eq!(
            encoded(post.unwrap()),
            (
                "POST / HTTP/1.1\r\nhost: target.example\r\ncontent-length: 3\r\n\r\n".to_owned(),
                false
            )
        );
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..64) {
            let _ = chunked(&wire, step);
            let _ = head(&wire, false);
            let _ = decode_in_pieces(Decoder::Length(300), &wire, step);
        }

        #[test]
        fn any_chunking_of_a_body_decodes_to_it(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 1..20),
            step in 1usize..100,
        ) {
            let mut wire = Vec::new();
            let mut rest = body.as_slice();
            let mut sizes = sizes.iter().cycle();
            while !rest.is_empty() {
                let size = sizes.next().copied().unwrap_or(1).min(rest.len());
                let (chunk, after) = rest.split_at(size);
                wire.extend_from_slice(format!("{size:X}\r\n").as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
                rest = after;
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            prop_assert_eq!(chunked(&wire, step), Ok((body, true)));
        }
    }
}
