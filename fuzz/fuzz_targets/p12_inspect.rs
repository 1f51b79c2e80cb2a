//! Feeds arbitrary bytes (and a password taken from them) to the PKCS#12 intake: it must never
//! panic, never spin, and never derive more than the cost caps allow.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use mtls_pki::{CostLimits, IntakePolicy, inspect};

fuzz_target!(|data: &[u8]| {
    // The first byte picks one of a few passwords: the fixtures' own, empty, and non-ASCII.
    let (password, file) = match data.split_first() {
        Some((selector, rest)) => (["fixture-secret", "", "pässwörd-日本-🔐", "x"][usize::from(*selector % 4)], rest),
        None => ("", data),
    };
    let policy = IntakePolicy {
        cost: CostLimits { max_iterations: 4096, max_total_iterations: 16_384 },
        ..IntakePolicy::default()
    };
    let _ = inspect(file, password, &policy, SystemTime::now());
});
