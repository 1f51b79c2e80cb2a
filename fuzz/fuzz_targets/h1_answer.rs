//! Feeds arbitrary bytes, in pieces of arbitrary size, to the HTTP/1.1 answer parser and the
//! body decoders, as the gateway's client reads a target's answer (`runtime::h1`): they must
//! never panic, never spin, never buffer past their limits, and never hand out more body than
//! came in or than the framing allows.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mtls_runtime::h1::{Chunk, Decoded, Decoder, MAX_HEAD, parse_head};

/// The most a chunked body may hold in the buffer while asking for more: a chunk-size line
/// (4 KiB) or the trailers (16 KiB), with their CRLF.
const MAX_PENDING: usize = 16 * 1024 + 2;

fuzz_target!(|data: &[u8]| {
    // Byte 0: bit 0 skips the head (the body decoders alone), bit 1 marks an answer to HEAD,
    // bits 2-3 pick the decoder, bits 4-7 a declared length. Byte 1: the size of each read.
    let [flags, piece, input @ ..] = data else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let mut reads = input.chunks(piece);
    let mut buf = BytesMut::new();

    if flags & 1 == 0 {
        // The head, parsed again after every read as the exchange does.
        loop {
            match parse_head(&mut buf, flags & 2 != 0) {
                Ok(Some(_)) => break,
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
    let mut decoder = match (flags >> 2) & 3 {
        0 | 1 => Decoder::Chunked(Chunk::Size),
        2 => Decoder::Length(declared),
        _ => Decoder::Close,
    };
    let framed_length = matches!(decoder, Decoder::Length(_));
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
    if framed_length {
        assert!(body as u64 <= declared, "more body than Content-Length");
    }
});
