//! Feeds arbitrary bytes, in pieces of arbitrary size, to the HTTP/1.1 answer parser and the
//! body decoders, as the gateway's client reads a target's answer (`runtime::h1`): they must
//! never panic, never spin, never buffer past their limits, and never hand out more body than
//! came in or than the framing allows.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mtls_runtime::h1::{Chunk, Decoded, Decoder, Head, MAX_HEAD, parse_head};

/// The most a chunked body may hold in the buffer while asking for more: a chunk-size line
/// (4 KiB) or the trailers (16 KiB), with their CRLF.
const MAX_PENDING: usize = 16 * 1024 + 2;

fuzz_target!(|data: &[u8]| {
    // Byte 0: bit 0 skips the head (the body decoders alone), bit 1 marks an answer to HEAD,
    // bits 2-3 pick the decoder (0: the one the head asks for, else chunked; 1: chunked; 2: a
    // length; 3: to the close), bits 4-7 the length / 97. Byte 1: the size of each read.
    let [flags, piece, input @ ..] = data else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let mut reads = input.chunks(piece);
    let mut buf = BytesMut::new();
    let head_request = flags & 2 != 0;

    // The framing the head asks for (its decoder is private to h1): what RFC 9112 6.3 says.
    let mut framed_by_head = None;
    if flags & 1 == 0 {
        // The head, parsed again after every read as the exchange does.
        loop {
            match parse_head(&mut buf, head_request) {
                Ok(Some(head)) => {
                    framed_by_head = Some(framing(&head, head_request));
                    break;
                }
                Ok(None) => {
                    assert!(buf.len() <= MAX_HEAD, "a partial head past the limit was kept");
                    match reads.next() {
                        Some(read) => buf.extend_from_slice(read),
                        None => return,
                    }
                }
                Err(_) => return,
            }
        }
    }

    let declared = u64::from(flags >> 4) * 97;
    let mut decoder = match ((flags >> 2) & 3, framed_by_head) {
        (0, Some(framed)) => framed,
        (0 | 1, _) => Decoder::Chunked(Chunk::Size),
        (2, _) => Decoder::Length(declared),
        _ => Decoder::Close,
    };
    let limit = match decoder {
        Decoder::Length(length) => Some(length),
        Decoder::Done => Some(0),
        _ => None,
    };
    let available = buf.len() + reads.clone().map(<[u8]>::len).sum::<usize>();
    let mut body = 0usize;
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => {
                // Data is never empty (an empty piece would make the caller spin) and always
                // comes out of the buffer.
                assert!(!data.is_empty(), "empty body data");
                assert!(buf.len() + data.len() <= before, "body data not taken from the input");
                body += data.len();
            }
            Ok(Decoded::More) => {
                assert!(buf.len() <= MAX_PENDING, "the decoder buffers past its limits");
                match reads.next() {
                    Some(read) => buf.extend_from_slice(read),
                    None => break,
                }
            }
            Ok(Decoded::End) => {
                assert!(decoder.ended(), "End before the decoder ended");
                break;
            }
            Err(_) => break,
        }
    }
    assert!(body <= available, "more body than input");
    if let Some(limit) = limit {
        assert!(body as u64 <= limit, "more body than the framing allows");
    }
});

fn framing(head: &Head, head_request: bool) -> Decoder {
    let status = head.status.as_u16();
    if head_request || status == 204 || status == 304 {
        return Decoder::Done;
    }
    let chunked = head
        .headers
        .get_all("transfer-encoding")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return Decoder::Chunked(Chunk::Size);
    }
    head.headers
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .and_then(|value| value.trim().parse().ok())
        .map_or(Decoder::Close, Decoder::Length)
}
