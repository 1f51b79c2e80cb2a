//! The response head: parsed by `httparse` within limits, interim answers skipped, and the
//! body's framing and the connection's reuse decided from its fields (RFC 9112 6.3).

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{StatusCode, Version};

use super::decode::{Chunk, Decoder};
use super::{Malformed, digits};

/// The largest response head (status line and fields) read from a target.
pub const MAX_HEAD: usize = 128 * 1024;
/// The most fields a response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// The response head, and how its body goes on.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub(super) decoder: Decoder,
    pub(super) keep_alive: bool,
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
        if fields.length_values > 1 || (fields.encoded && fields.length.is_some()) {
            // RFC 9112 6.3: a Content-Length beside a Transfer-Encoding is removed (passed on,
            // it would cut the caller's body short), and a list of equal values, in one field
            // or several, is passed on as the one value it means.
            headers.remove(header::CONTENT_LENGTH);
            if let (false, Some(length)) = (fields.encoded, fields.length) {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
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

/// Whether `buf`, where [`parse_head`] left it wanting more, holds the start of a final
/// answer: the status code's first digit is in, and it is not an interim `1xx`.
pub(super) fn final_head_started(buf: &[u8]) -> bool {
    // "HTTP/1.1 " is nine bytes; the status code follows.
    buf.get(9).is_some_and(|digit| *digit != b'1')
}

/// What a response head says about its body's framing and its connection.
#[derive(Debug, Default)]
struct Framing {
    /// Whether there is a `Transfer-Encoding`, and whether its last coding is `chunked`.
    encoded: bool,
    chunked: bool,
    length: Option<u64>,
    /// How many `Content-Length` values were seen (in one field or several).
    length_values: u32,
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
                self.length_values = self.length_values.saturating_add(1);
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// RFC 9112 6.3: what is relayed of `Content-Length` (the values, in order).
    #[test]
    fn content_length_is_relayed_only_as_one_value_and_never_beside_chunked() {
        let relayed = |wire: &[u8]| -> Vec<String> {
            head(wire, false)
                .ok()
                .flatten()
                .map(|head| {
                    head.headers
                        .get_all(header::CONTENT_LENGTH)
                        .iter()
                        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                        .collect()
                })
                .unwrap_or_else(|| vec!["refused".to_owned()])
        };
        let cases: [(&[u8], &[&str]); 6] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", &["5"]),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", &["5"]),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n",
                &["5"],
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
                &[],
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n",
                &[],
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
                &["refused"],
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(relayed(wire), expected, "{}", String::from_utf8_lossy(wire));
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
}
