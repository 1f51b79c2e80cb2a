//! Why a PKCS#12 file was refused, one variant per code of SPEC 4.2.

use std::fmt;

/// A PKCS#12 file that cannot be accepted. Each variant maps to one stable wire code
/// ([`IntakeError::code`]); the [`fmt::Display`] text is for people and never contains the
/// password, key bytes or anything else secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntakeError {
    /// The password opens neither the MAC nor the encrypted contents.
    WrongPassword,
    /// The bytes are not a PKCS#12 structure (or a part of it does not decode); the detail names
    /// the part, never its content.
    Malformed(&'static str),
    /// The file holds no private key.
    NoPrivateKey,
    /// The file holds no certificate.
    NoCertificate,
    /// No certificate in the file carries the public key of the private key.
    KeyMismatch,
    /// The file holds more than one private key.
    MultipleKeys,
    /// An encryption, key-derivation or MAC algorithm this gateway does not implement, named.
    UnsupportedAlgorithm(String),
    /// A private key TLS cannot sign with (DSA, RSA below 2048 bits, unknown curves, ...), named.
    UnsupportedKey(String),
    /// An iteration count above the configured cap; nothing was derived.
    TooCostly {
        /// The count found in the file (or the running total, for the total budget).
        iterations: u64,
        /// The configured cap it exceeds.
        cap: u64,
    },
    /// The leaf certificate's `notAfter` is in the past.
    CertificateExpired,
    /// The leaf certificate's `notBefore` is in the future.
    CertificateNotYetValid,
}

impl IntakeError {
    /// The stable, documented wire code (SPEC 7.1).
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongPassword => "p12_wrong_password",
            Self::Malformed(_) => "p12_malformed",
            Self::NoPrivateKey => "p12_no_private_key",
            Self::NoCertificate => "p12_no_certificate",
            Self::KeyMismatch => "p12_key_mismatch",
            Self::MultipleKeys => "p12_multiple_keys",
            Self::UnsupportedAlgorithm(_) => "p12_unsupported_algorithm",
            Self::UnsupportedKey(_) => "p12_unsupported_key",
            Self::TooCostly { .. } => "p12_too_costly",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
        }
    }
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPassword => f.write_str("the password does not open this PKCS#12 file"),
            Self::Malformed(part) => write!(f, "not a valid PKCS#12 file: {part}"),
            Self::NoPrivateKey => f.write_str("the PKCS#12 file holds no private key"),
            Self::NoCertificate => f.write_str("the PKCS#12 file holds no certificate"),
            Self::KeyMismatch => {
                f.write_str("no certificate in the PKCS#12 file matches its private key")
            }
            Self::MultipleKeys => f.write_str(
                "the PKCS#12 file holds more than one private key; export one identity per file",
            ),
            Self::UnsupportedAlgorithm(name) => {
                write!(f, "the PKCS#12 file uses an unsupported algorithm: {name}")
            }
            Self::UnsupportedKey(name) => {
                write!(
                    f,
                    "the private key cannot be used for TLS client authentication: {name}"
                )
            }
            Self::TooCostly { iterations, cap } => write!(
                f,
                "the PKCS#12 file asks for {iterations} key-derivation iterations, above the limit of {cap}"
            ),
            Self::CertificateExpired => f.write_str("the certificate has expired"),
            Self::CertificateNotYetValid => f.write_str("the certificate is not valid yet"),
        }
    }
}

impl std::error::Error for IntakeError {}
