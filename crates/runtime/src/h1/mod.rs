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
//!
//! One job per file, as hyper's `proto/h1` and pingora's `protocols/http/v1` split theirs:
//!
//! * [`stream`]: the socket (TLS or plain TCP);
//! * [`conn`]: the socket with its read buffer, and whether an idle one can be lent;
//! * [`encode`]: the request head and the framing of the request body;
//! * [`head`]: the response head, and the framing it announces;
//! * [`decode`]: the response body's framing (length, chunked, to the close);
//! * [`exchange()`]: writing the request while reading the answer's head;
//! * [`body`]: the response body read from its connection.
//!
//! The module depends on no other module of the crate: the pool (`crate::pool`) drives it,
//! and `crate::failure` classifies its errors.

pub mod body;
pub mod conn;
pub mod decode;
pub mod encode;
pub mod exchange;
pub mod head;
pub mod stream;

use std::error::Error as StdError;
use std::fmt;

pub use body::Body;
pub use conn::Conn;
pub use decode::{Chunk, Decoded, Decoder};
pub use encode::Encoded;
pub use exchange::{Failed, exchange};
pub use head::{Head, MAX_HEAD, MAX_HEADERS, parse_head};
pub use stream::Stream;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The target's answer is not valid HTTP/1.1 (or is past a limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the target's answer is not valid HTTP/1.1: {}", self.0)
    }
}

impl StdError for Malformed {}

/// A decimal length: digits only, no sign, no overflow.
pub(crate) fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.iter().try_fold(0u64, |sum, byte| {
        byte.is_ascii_digit()
            .then(|| sum * 10 + u64::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests;
