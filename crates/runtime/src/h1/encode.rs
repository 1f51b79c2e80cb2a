//! The request for the wire: its head in origin form with `Host` and the body's framing, and
//! the body's frames as they go (`Content-Length` bytes counted, or chunks).

use std::fmt;
use std::io::Write as _;

use hyper::body::Body as HttpBody;
use hyper::header;
use hyper::{Method, Request};

use super::{Malformed, digits};

/// How the request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outgoing {
    Empty,
    Length(u64),
    Chunked,
}

/// A request encoded for the wire: its head (kept for a second attempt) and its framing.
pub struct Encoded {
    pub(super) head: Vec<u8>,
    pub(super) outgoing: Outgoing,
    pub(super) head_request: bool,
    pub(super) retry_safe: bool,
}

impl Encoded {
    /// Encodes `request`'s head in origin form, adding `host` unless the request has a `Host`,
    /// and the body's framing (its `Content-Length`, the body's exact size, or chunked).
    pub fn new<B: HttpBody>(request: &Request<B>, host: Option<&str>) -> Result<Self, Malformed> {
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

/// The request body's framing as its frames go out: the bytes counted against the declared
/// length, or each frame made a chunk.
#[derive(Debug)]
pub(super) struct BodyEncoder {
    outgoing: Outgoing,
    /// Body bytes taken from the body.
    written: u64,
}

impl BodyEncoder {
    pub(super) fn new(outgoing: Outgoing) -> Self {
        Self {
            outgoing,
            written: 0,
        }
    }

    /// Appends `data`, framed, to `queue`.
    pub(super) fn frame(&mut self, queue: &mut Vec<u8>, data: &[u8]) -> Result<(), Malformed> {
        if data.is_empty() {
            return Ok(());
        }
        let length = data.len() as u64;
        self.written += length;
        match self.outgoing {
            Outgoing::Length(declared) if self.written > declared => Err(Malformed(
                "the request body is longer than its Content-Length",
            )),
            Outgoing::Empty => Err(Malformed(
                "the request body is longer than its Content-Length",
            )),
            Outgoing::Chunked => {
                let _ = write!(queue, "{length:x}\r\n");
                queue.extend_from_slice(data);
                queue.extend_from_slice(b"\r\n");
                Ok(())
            }
            Outgoing::Length(_) => {
                queue.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Appends the end of the body (the last chunk), or refuses a body shorter than declared.
    pub(super) fn finish(&mut self, queue: &mut Vec<u8>) -> Result<(), Malformed> {
        match self.outgoing {
            Outgoing::Chunked => {
                queue.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
            Outgoing::Length(length) if length != self.written => Err(Malformed(
                "the request body is shorter than its Content-Length",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The head `Encoded` writes for `request`, and whether it may be sent again.
    fn encoded(request: Request<&'static [u8]>) -> (String, bool) {
        let request = request.map(|bytes| http_body_util::Full::new(Bytes::from_static(bytes)));
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
}
