//! W3C Trace Context (`traceparent`, version 00): strict parsing, formatting, and the ids the
//! gateway makes for its own spans.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A trace id and a span id (never all zero), and whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// The length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const LENGTH: usize = 55;

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        // Lower case only: W3C Trace Context 3.2.2 (upper case is invalid).
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Fills `out` from the lower-case hex digits in `text` (exactly twice its length).
fn decode(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (hex_digit(*high)? << 4) | hex_digit(*low)?;
    }
    Some(())
}

fn encode(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0xf] {
            if let Some(digit) = DIGITS.get(usize::from(nibble)) {
                out.push(*digit);
            }
        }
    }
}

impl TraceContext {
    /// Parses a `traceparent` value strictly: version `00`, exactly 55 characters, lower-case
    /// hex, a trace id and a parent id that are not all zero. Anything else is `None` (the
    /// caller then starts a new trace). Later versions are refused too: the gateway cannot
    /// know what they mean, and starting a new trace is always safe.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() != LENGTH {
            return None;
        }
        let version = value.get(0..2)?;
        if version != b"00" {
            return None;
        }
        let dashes = [value.get(2)?, value.get(35)?, value.get(52)?];
        if dashes.iter().any(|dash| **dash != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flags = [0u8; 1];
        decode(value.get(3..35)?, &mut trace_id)?;
        decode(value.get(36..52)?, &mut span_id)?;
        decode(value.get(53..55)?, &mut flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags.first().is_some_and(|flags| flags & 1 == 1),
        })
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn header(&self) -> String {
        let mut out = Vec::with_capacity(LENGTH);
        out.extend_from_slice(b"00-");
        encode(&self.trace_id, &mut out);
        out.push(b'-');
        encode(&self.span_id, &mut out);
        out.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
        String::from_utf8(out).unwrap_or_default()
    }
}

/// 64 random bits, never zero, without a system call per id: SplitMix64 over a counter that
/// starts at a random seed (ids must be unique and unpredictable enough to not collide across
/// nodes, not secret).
pub fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy source: the clock still spreads ids across processes (a seed, not a
            // reading of the time: allowed).
            #[allow(clippy::disallowed_methods)]
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
            return low ^ u64::from(std::process::id());
        }
        u64::from_le_bytes(bytes)
    });
    loop {
        let mut z = seed.wrapping_add(
            COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if z != 0 {
            return z;
        }
    }
}

/// A new span id.
pub fn span_id() -> [u8; 8] {
    random_u64().to_be_bytes()
}

/// A new trace id.
pub fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let (high, low) = id.split_at_mut(8);
    high.copy_from_slice(&random_u64().to_be_bytes());
    low.copy_from_slice(&random_u64().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert!(context.sampled);
        assert_eq!(
            context.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(context.header(), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00").into_bytes()).unwrap();
        assert!(!unsampled.sampled);
        assert!(unsampled.header().ends_with("-00"));
    }

    #[test]
    fn anything_but_a_strict_version_00_value_is_refused() {
        for bad in [
            "",
            "00",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // All-zero trace id, all-zero parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Other versions, including the forbidden ff.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Lengths: short id, long id, trailing data.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            // Separators and digits.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // Multi-byte text of the right length must not panic either.
        let odd = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(odd.as_bytes()), None);
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        // Every byte at every position of a valid value, and every length up to 60.
        let base = VALID.as_bytes().to_vec();
        for position in 0..base.len() {
            for byte in 0..=255u8 {
                let mut value = base.clone();
                value[position] = byte;
                let _ = TraceContext::parse(&value);
            }
        }
        for length in 0..60 {
            let _ = TraceContext::parse(&vec![b'0'; length]);
        }
    }

    #[test]
    fn ids_are_never_zero_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = span_id();
            assert_ne!(id, [0; 8]);
            assert!(seen.insert(id));
        }
        assert_ne!(trace_id(), [0; 16]);
    }
}
