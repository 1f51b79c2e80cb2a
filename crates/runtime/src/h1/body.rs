//! The response body, read from its connection as the caller takes it; the connection comes
//! back for another exchange only when the body ended exactly where its framing said.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::BoxError;
use super::conn::Conn;
use super::decode::{Decoded, Decoder};
use super::head::Head;

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
