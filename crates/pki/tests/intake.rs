//! PKCS#12 intake against files other programs wrote, pyca's vectors, and hostile bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    // Tests pick their own times, the real clock among them.
    clippy::disallowed_methods
)]

use std::time::{Duration, SystemTime};

use mtls_pki::{CostLimits, IntakeError, IntakePolicy, PasswordForm, inspect};
use mtls_test_support::{p12_fixtures, pyca_vectors};

fn outcome(result: &Result<mtls_pki::Inspection, IntakeError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.code().to_owned(),
    }
}

#[test]
fn every_fixture_gives_its_expected_outcome() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let policy = IntakePolicy::default();
    let mut failures = Vec::new();
    for case in &fixtures.cases {
        let bytes = fixtures.bytes(&case.file);
        let result = inspect(&bytes, &case.password, &policy, SystemTime::now());
        let got = outcome(&result);
        if got != case.expect {
            failures.push(format!(
                "{} ({}): expected {}, got {got} {:?}",
                case.file,
                case.source,
                case.expect,
                result.err()
            ));
            continue;
        }
        let Ok(inspection) = result else { continue };
        let report = &inspection.report;
        if let Some(key_type) = &case.key_type {
            assert_eq!(&report.key_type.label(), key_type, "{}", case.file);
            assert_eq!(&report.leaf.key_type, key_type, "{}", case.file);
        }
        if let Some(length) = case.chain_length {
            assert_eq!(report.chain.len() + 1, length, "{}", case.file);
            assert_eq!(
                inspection.identity.certificate_chain.len(),
                length,
                "{}",
                case.file
            );
        }
        if let Some(subject) = &case.subject {
            assert_eq!(&report.leaf.subject, subject, "{}", case.file);
        }
        if let Some(warning) = &case.warning {
            assert!(
                report.warnings.iter().any(|w| w.code == warning),
                "{}: {:?}",
                case.file,
                report.warnings
            );
        }
        if let Some(form) = &case.password_form {
            assert_eq!(
                &format!("{:?}", report.protection.password_form.unwrap()),
                form,
                "{}",
                case.file
            );
        }
        if case.source == "openssl" {
            assert_eq!(report.protection.legacy, case.legacy, "{}", case.file);
        }
        // The chain is in issuer order: each certificate is issued by the next.
        let mut previous = &report.leaf;
        for next in &report.chain {
            assert_eq!(previous.issuer, next.subject, "{}", case.file);
            previous = next;
        }
        assert_eq!(inspection.identity.certificate_chain[0], report.leaf.der);
        // Debug output never shows key bytes: not the key's own, not the identity's.
        assert_eq!(
            format!("{:?}", inspection.identity.key),
            "PrivateKey(<redacted>)"
        );
        // A run of key bytes found in no certificate (so: private material), rendered the way
        // Debug renders bytes, must not show up in the identity's Debug output.
        let der = inspection.identity.key.pkcs8_der();
        let chain = &inspection.identity.certificate_chain;
        let private = der
            .windows(12)
            .find(|window| {
                !chain
                    .iter()
                    .any(|cert| cert.windows(12).any(|other| other == *window))
            })
            .expect("a key has bytes that no certificate holds");
        let rendered = format!("{private:?}");
        let rendered = rendered.trim_start_matches('[').trim_end_matches(']');
        assert!(
            !format!("{:?}", inspection.identity).contains(rendered),
            "{}",
            case.file
        );
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_source_and_error_code_is_covered() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for code in [
        "ok",
        "p12_wrong_password",
        "p12_malformed",
        "p12_no_private_key",
        "p12_no_certificate",
        "p12_unsupported_algorithm",
        "p12_unsupported_key",
        "p12_too_costly",
    ] {
        assert!(
            fixtures.cases.iter().any(|case| case.expect == code),
            "no fixture for {code}"
        );
    }
    if fixtures.cases.iter().any(|case| case.source == "pyca") {
        for code in [
            "p12_key_mismatch",
            "certificate_expired",
            "certificate_not_yet_valid",
        ] {
            assert!(
                fixtures.cases.iter().any(|case| case.expect == code),
                "no fixture for {code}"
            );
        }
    }
    if fixtures.cases.iter().any(|case| case.source == "keytool") {
        assert!(
            fixtures
                .cases
                .iter()
                .any(|case| case.expect == "p12_multiple_keys")
        );
    }
}

#[test]
fn validity_is_judged_at_the_given_time() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let bytes = fixtures.bytes("openssl-default-p256.p12");
    let policy = IntakePolicy::default();
    let password = &fixtures.case("openssl-default-p256.p12").password;
    let later = SystemTime::now() + Duration::from_secs(20 * 365 * 86_400);
    let earlier = SystemTime::now() - Duration::from_secs(86_400);
    assert_eq!(
        inspect(&bytes, password, &policy, later).unwrap_err(),
        IntakeError::CertificateExpired
    );
    assert_eq!(
        inspect(&bytes, password, &policy, earlier).unwrap_err(),
        IntakeError::CertificateNotYetValid
    );
    let soon = SystemTime::now() + Duration::from_secs(820 * 86_400);
    let report = inspect(&bytes, password, &policy, soon).unwrap().report;
    assert!(report.warnings.iter().any(|w| w.code == "expires_soon"));
}

#[test]
fn the_iteration_cap_is_checked_before_any_derivation() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let bytes = fixtures.bytes("openssl-default-rsa2048.p12");
    let password = &fixtures.case("openssl-default-rsa2048.p12").password;
    let tight = IntakePolicy {
        cost: CostLimits {
            max_iterations: 2047,
            max_total_iterations: 1_000_000,
        },
        ..IntakePolicy::default()
    };
    // The cap refuses the file even with a wrong password: nothing was derived to find out.
    for password in [password.as_str(), "wrong"] {
        let error = inspect(&bytes, password, &tight, SystemTime::now()).unwrap_err();
        assert_eq!(
            error,
            IntakeError::TooCostly {
                iterations: 2048,
                cap: 2047
            }
        );
    }
    let total = IntakePolicy {
        cost: CostLimits {
            max_iterations: 2048,
            max_total_iterations: 4000,
        },
        ..IntakePolicy::default()
    };
    assert_eq!(
        inspect(&bytes, password, &total, SystemTime::now())
            .unwrap_err()
            .code(),
        "p12_too_costly"
    );
}

/// Files written with no password at all carry a MAC over a zero-length password.
#[test]
fn files_without_any_password_open_with_the_empty_password() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    if !fixtures
        .cases
        .iter()
        .any(|case| case.file == "pyca-no-password.p12")
    {
        return;
    }
    let bytes = fixtures.bytes("pyca-no-password.p12");
    let report = inspect(&bytes, "", &IntakePolicy::default(), SystemTime::now())
        .unwrap()
        .report;
    assert!(matches!(
        report.protection.password_form,
        Some(PasswordForm::Absent | PasswordForm::Bmp)
    ));
}

/// pyca's `cryptography-vectors` PKCS#12 files, with the passwords of pyca's own test suite
/// ("cryptography", "password", or none at all for the `*-no-pwd` files).
#[test]
fn pyca_vectors_parse_as_expected() {
    let Some(dir) = pyca_vectors() else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "p12"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected pyca's PKCS#12 vectors in {}",
        dir.display()
    );
    // pyca's certificates are old: judge them at a time they were valid, so that this test is
    // about the container, not the calendar.
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let no_password =
            name.contains("no-pwd") || name == "no-password.p12" || name == "java-truststore.p12";
        let password = if no_password {
            ""
        } else if name.contains("-pwd") {
            "password"
        } else {
            "cryptography"
        };
        let expected = match name.as_str() {
            "cert-aes256cbc-no-key.p12" | "java-truststore.p12" => "p12_no_private_key",
            "no-cert-key-aes256cbc.p12" => "p12_no_certificate",
            other
                if other.starts_with("no-cert-name-") || other.starts_with("no-cert-no-name-") =>
            {
                "p12_no_private_key"
            }
            _ => "ok",
        };
        let result = inspect(
            &std::fs::read(path).unwrap(),
            password,
            &IntakePolicy::default(),
            then,
        );
        assert_eq!(outcome(&result), expected, "{name}");
        if let Ok(inspection) = result {
            assert!(
                !inspection
                    .report
                    .protection
                    .password_form
                    .is_some_and(|form| form == PasswordForm::LegacyBytes)
            );
            if no_password && name != "no-password.p12" {
                // These were written with a NULL password: the MAC is over zero bytes.
                assert_eq!(
                    inspection.report.protection.password_form,
                    Some(PasswordForm::Absent),
                    "{name}"
                );
            }
        }
    }
}

mod hostile_input {
    use super::*;
    use proptest::prelude::*;

    fn cheap_policy() -> IntakePolicy {
        IntakePolicy {
            cost: CostLimits {
                max_iterations: 4096,
                max_total_iterations: 20_000,
            },
            ..IntakePolicy::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = inspect(&bytes, "pw", &cheap_policy(), SystemTime::now());
        }

        #[test]
        fn mutated_files_never_panic(
            file in 0usize..6,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let Some(fixtures) = p12_fixtures() else { return Ok(()) };
            let names = [
                "openssl-default-rsa2048.p12",
                "openssl-legacy-p256.p12",
                "openssl-nocertenc.p12",
                "openssl-noenc-nomac.p12",
                "openssl-nomac.p12",
                "openssl-aes128-sha512.p12",
            ];
            let case = fixtures.case(names[file]);
            let mut bytes = fixtures.bytes(&case.file);
            for (index, value, kind) in edits {
                if bytes.is_empty() { break; }
                let at = index.index(bytes.len());
                match kind {
                    0 => bytes[at] = value,
                    1 => { bytes.truncate(at); }
                    _ => bytes.insert(at, value),
                }
            }
            let _ = inspect(&bytes, &case.password, &cheap_policy(), SystemTime::now());
        }
    }
}
