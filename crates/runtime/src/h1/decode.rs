//! The response body's framing: a length, chunks (sizes, data, trailers, within limits), or
//! everything until the close; data handed on as `Bytes` taken from the read buffer.

use bytes::{Buf, Bytes, BytesMut};

use super::Malformed;

/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// The most bytes of trailer fields read (and dropped) after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Body data up to this size is copied out of the read buffer, so that the buffer is reused
/// for the next read; larger data is handed on without a copy.
const COPY_MAX: usize = 4096;

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

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..64) {
            let _ = chunked(&wire, step);
            let _ = super::super::parse_head(&mut BytesMut::from(&wire[..]), false);
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
