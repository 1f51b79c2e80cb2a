//! Why a PKCS#12 file (SPEC 4.2), a certificate request or an uploaded chain (SPEC 4.6) was
//! refused, one variant per code.

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
    /// A certificate request's `keyType` is not one the gateway makes (the text, shortened).
    UnsupportedKeyType(String),
    /// A certificate request's subject is not RFC 4514 text the gateway accepts; says why.
    InvalidSubject(String),
    /// A subject alternative name is not a DNS name, IP address, URI or e-mail address.
    InvalidSubjectAltName(String),
    /// The crypto library failed to make or use a new key (an internal failure, not the
    /// caller's).
    KeyGeneration,
    /// An uploaded chain is not PEM text of certificates; names the problem.
    InvalidPem(&'static str),
    /// An uploaded chain holds no certificate.
    ChainEmpty,
    /// An uploaded chain holds more certificates than the cap.
    ChainTooLong { cap: usize },
    /// An uploaded chain's text is larger than the cap.
    ChainTooLarge { bytes: usize, cap: usize },
    /// No certificate of an uploaded chain carries the pending key.
    ChainKeyMismatch,
    /// An uploaded chain is not the leaf followed by each issuer in turn; says where.
    ChainOrder(String),
    /// The leaf's extended key usage does not include TLS client authentication.
    CertificateUsage,
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
            Self::UnsupportedKeyType(_) => "unsupported_key_type",
            Self::InvalidSubject(_) => "invalid_subject",
            Self::InvalidSubjectAltName(_) => "invalid_subject_alt_name",
            Self::KeyGeneration => "key_generation_failed",
            Self::InvalidPem(_) => "invalid_pem",
            Self::ChainEmpty => "chain_empty",
            Self::ChainTooLong { .. } => "chain_too_long",
            Self::ChainTooLarge { .. } => "chain_too_large",
            Self::ChainKeyMismatch => "chain_key_mismatch",
            Self::ChainOrder(_) => "chain_order",
            Self::CertificateUsage => "certificate_usage",
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
            Self::UnsupportedKeyType(name) => write!(
                f,
                "the key type \"{name}\" is not one the gateway makes (P-256, P-384, RSA-2048, RSA-3072)"
            ),
            Self::InvalidSubject(why) => write!(f, "invalid subject: {why}"),
            Self::InvalidSubjectAltName(why) => {
                write!(f, "invalid subject alternative name {why}")
            }
            Self::KeyGeneration => f.write_str("the gateway could not make or use a new key"),
            Self::InvalidPem(why) => write!(f, "the chain is not PEM certificates: {why}"),
            Self::ChainEmpty => f.write_str("the chain holds no certificate"),
            Self::ChainTooLong { cap } => {
                write!(f, "the chain holds more than {cap} certificates")
            }
            Self::ChainTooLarge { bytes, cap } => {
                write!(f, "the chain is {bytes} bytes, above the limit of {cap}")
            }
            Self::ChainKeyMismatch => {
                f.write_str("no certificate of the chain carries the pending key's public key")
            }
            Self::ChainOrder(why) => write!(f, "the chain is not in issuer order: {why}"),
            Self::CertificateUsage => f.write_str(
                "the certificate's extended key usage does not allow TLS client authentication",
            ),
        }
    }
}

impl std::error::Error for IntakeError {}
