//! The identity a cold load re-opens instead of a PKCS#12 file: every file the intake accepts
//! gives, re-sealed as key and chain PEM, the same identity back, with no key derivation; a
//! key that is not the leaf's, a missing leaf or a leaf out of its validity is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    // Tests pick their own times, the real clock among them.
    clippy::disallowed_methods
)]

use std::time::{Duration, SystemTime};

use mtls_pki::{IntakeError, IntakePolicy, chain_pem, inspect, inspect_resealed};
use mtls_test_support::p12_fixtures;

#[test]
fn every_accepted_file_re_opens_as_the_same_identity() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let now = SystemTime::now();
    let mut checked = 0;
    for case in fixtures.cases.iter().filter(|case| case.expect == "ok") {
        let bytes = fixtures.bytes(&case.file);
        let parsed = inspect(&bytes, &case.password, &IntakePolicy::default(), now)
            .unwrap()
            .identity;
        let pem = chain_pem(&parsed.certificate_chain);
        let opened = inspect_resealed(parsed.key.pkcs8_der(), &pem, now)
            .unwrap_or_else(|error| panic!("{}: {error:?}", case.file));
        assert_eq!(
            opened.certificate_chain, parsed.certificate_chain,
            "{}",
            case.file
        );
        assert_eq!(
            opened.key.pkcs8_der(),
            parsed.key.pkcs8_der(),
            "{}",
            case.file
        );
        checked += 1;
    }
    assert!(checked > 5, "{checked} files");
}

#[test]
fn a_wrong_key_no_leaf_or_a_leaf_out_of_validity_is_refused() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let now = SystemTime::now();
    let open = |file: &str| {
        let case = fixtures.case(file);
        inspect(
            &fixtures.bytes(file),
            &case.password,
            &IntakePolicy::default(),
            now,
        )
        .unwrap()
    };
    let p256 = open("openssl-default-p256.p12");
    let rsa = open("openssl-default-rsa2048.p12");
    let pem = chain_pem(&p256.identity.certificate_chain);
    let key = p256.identity.key.pkcs8_der();
    assert!(matches!(
        inspect_resealed(rsa.identity.key.pkcs8_der(), &pem, now),
        Err(IntakeError::KeyMismatch)
    ));
    // The chain without its leaf: the first certificate does not carry the key.
    let issuers = chain_pem(&p256.identity.certificate_chain[1..]);
    assert!(inspect_resealed(key, &issuers, now).is_err());
    assert!(matches!(
        inspect_resealed(key, "", now),
        Err(IntakeError::NoCertificate)
    ));
    assert!(inspect_resealed(b"not a key", &pem, now).is_err());
    let after = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(p256.report.leaf.not_after).unwrap() + 1);
    assert!(matches!(
        inspect_resealed(key, &pem, after),
        Err(IntakeError::CertificateExpired)
    ));
    let before = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(p256.report.leaf.not_before).unwrap() - 1);
    assert!(matches!(
        inspect_resealed(key, &pem, before),
        Err(IntakeError::CertificateNotYetValid)
    ));
}
