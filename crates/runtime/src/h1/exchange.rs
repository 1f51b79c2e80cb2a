//! One exchange on a connection: the request written (head, then body frames as they come)
//! while the answer's head is read, so that a target answering early is heard.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::Request;
use hyper::body::Body as HttpBody;
use tokio::io::AsyncWrite;

use super::conn::Conn;
use super::encode::{BodyEncoder, Encoded, Outgoing};
use super::head::{Head, final_head_started, parse_head};
use super::stream::Stream;
use super::{BoxError, Malformed};

/// Request body bytes queued before the writes must catch up.
const WRITE_QUEUE: usize = 64 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failed {
    /// A reused connection was closed by the target before it answered, and the request may
    /// be sent again on another connection.
    Retry,
    Error(BoxError),
}

/// Sends `request` on `conn` and reads the response head. The body is written while the head
/// is awaited, so that a target answering early (a 413, say) is heard; the connection is then
/// not reused, and the rest of the body is not sent. `answering` is called once, when a final
/// answer has begun to come (the response timeout of an early answer runs from then).
pub async fn exchange<B>(
    conn: &mut Conn,
    request: &mut Request<B>,
    encoded: &Encoded,
    reused: bool,
    mut answering: impl FnMut(),
) -> Result<Head, Failed>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut sending = Sending {
        head_pos: 0,
        queue: Vec::new(),
        queue_pos: 0,
        encoder: BodyEncoder::new(encoded.outgoing),
        body_done: encoded.outgoing == Outgoing::Empty,
        done: false,
    };
    let mut write_error: Option<io::Error> = None;
    // Whether any byte of an answer came: only a reused connection closed before one came may
    // be given up for another, and only for a request that may be sent twice.
    let mut received = false;
    // Whether a final (not 1xx) answer has begun: `answering` is called then, once. An interim
    // `100 Continue` does not count: the upload it invites may take as long as it takes.
    let mut answered = false;
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
                        Ok(None) => {
                            if !answered && final_head_started(&conn.buf) {
                                answered = true;
                                answering();
                            }
                        }
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
    encoder: BodyEncoder,
    body_done: bool,
    done: bool,
}

impl Sending {
    fn poll<B>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut Stream,
        body: &mut B,
        encoded: &Encoded,
    ) -> Poll<Result<(), Sent>>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            if !self.body_done && self.queue.len() - self.queue_pos < WRITE_QUEUE {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.encoder
                                .frame(&mut self.queue, &data)
                                .map_err(Sent::Malformed)?;
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(Sent::Body(error.into())));
                    }
                    Poll::Ready(None) => {
                        self.body_done = true;
                        self.encoder
                            .finish(&mut self.queue)
                            .map_err(Sent::Malformed)?;
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
}
