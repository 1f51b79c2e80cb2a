//! An HTTP/1.1 connection: the socket and what has been read from it and not yet used, and
//! whether an idle one can be lent for another exchange.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use super::stream::Stream;

/// Read-buffer growth step.
const READ_CHUNK: usize = 8192;

/// An HTTP/1.1 connection: the socket and what has been read from it and not yet used.
pub struct Conn {
    pub(super) io: Stream,
    pub(super) buf: BytesMut,
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
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            // Reclaims the buffer's space when everything in it has been used.
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}
