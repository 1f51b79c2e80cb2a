//! Feeds arbitrary bytes, in pieces of arbitrary size, to the HTTP/1.1 answer parser and the
//! body decoders, as the gateway's client reads a target's answer (`runtime::h1`): they must
//! never panic, never spin, never buffer past their limits, never hand out more body than came
//! in or than the framing allows, and decode the same bytes to the same body however the reads
//! split them.
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
        // The same bytes in one read: the same head, and the same bytes left after it.
        let mut whole = BytesMut::from(input);
        let once = parse_head(&mut whole, head_request).map(|head| head.map(|head| seen(&head)));
        // The head, parsed again after every read as the exchange does.
        loop {
            match parse_head(&mut buf, head_request) {
                Ok(Some(head)) => {
                    let mut left = buf.to_vec();
                    left.extend(reads.clone().flatten());
                    assert_eq!(once, Ok(Some(seen(&head))), "the reads changed the head");
                    assert_eq!(left, whole.to_vec(), "the reads changed where the head ends");
                    framed_by_head = Some(framing(&head, head_request));
                    break;
                }
                Ok(None) => {
                    assert!(buf.len() <= MAX_HEAD, "a partial head past the limit was kept");
                    match reads.next() {
                        Some(read) => buf.extend_from_slice(read),
                        None => {
                            assert_eq!(once, Ok(None), "the reads changed the head");
                            return;
                        }
                    }
                }
                Err(_) => {
                    assert!(once.is_err(), "the reads changed the head: {once:?}");
                    return;
                }
            }
        }
    }

    let declared = u64::from(flags >> 4) * 97;
    let decoder = match ((flags >> 2) & 3, framed_by_head) {
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
    let limit = limit.and_then(|limit| usize::try_from(limit).ok());
    let rest: Vec<u8> = reads.clone().flatten().copied().collect();
    let (body, outcome) = decode(decoder, buf.clone(), reads, limit);
    // The same bytes in one read decode to the same body and the same end: where the reads
    // fall never changes what the target is taken to have said.
    let mut whole = buf;
    whole.extend_from_slice(&rest);
    let once = decode(decoder, whole, std::iter::empty(), limit);
    assert_eq!((&body, outcome), (&once.0, once.1), "the reads changed the body");
});

/// How a body's decoding ended: at its framing's end, on an error, or with the input spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    End,
    Malformed,
    Spent,
}

/// Decodes the body from `buf` and then `reads`, checking each step.
fn decode<'a>(
    mut decoder: Decoder,
    mut buf: BytesMut,
    mut reads: impl Iterator<Item = &'a [u8]>,
    limit: Option<usize>,
) -> (Vec<u8>, Outcome) {
    let mut body = Vec::new();
    let mut available = buf.len();
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => {
                // Data is never empty (an empty piece would make the caller spin) and always
                // comes out of the buffer.
                assert!(!data.is_empty(), "empty body data");
                assert!(buf.len() + data.len() <= before, "body data not taken from the input");
                body.extend_from_slice(&data);
                assert!(body.len() <= available, "more body than input");
                if let Some(limit) = limit {
                    assert!(body.len() <= limit, "more body than the framing allows");
                }
            }
            Ok(Decoded::More) => {
                assert!(buf.len() <= MAX_PENDING, "the decoder buffers past its limits");
                match reads.next() {
                    Some(read) => {
                        available += read.len();
                        buf.extend_from_slice(read);
                    }
                    None => return (body, Outcome::Spent),
                }
            }
            Ok(Decoded::End) => {
                assert!(decoder.ended(), "End before the decoder ended");
                return (body, Outcome::End);
            }
            Err(_) => return (body, Outcome::Malformed),
        }
    }
}

/// What a parsed head says: status, version and fields.
fn seen(head: &Head) -> (u16, String, Vec<(String, Vec<u8>)>) {
    let fields = head
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    (head.status.as_u16(), format!("{:?}", head.version), fields)
}

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
