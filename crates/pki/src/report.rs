//! From parsed contents to an identity and the tester report: leaf by key match, chain in
//! issuer order, validity, and the warnings a tenant should read before uploading.

use crate::cert::CertificateInfo;
use crate::key::{KeyType, PrivateKey};
use crate::parse::Protection;

/// A usable client identity: the key and the certificates to send, leaf first.
#[derive(Debug)]
pub struct Identity {
    pub key: PrivateKey,
    /// DER certificates in the order a TLS client sends them: the leaf, then each issuer.
    pub certificate_chain: Vec<Vec<u8>>,
}

/// What the tester reports about a file it accepted.
#[derive(Clone, Debug)]
pub struct Report {
    pub leaf: CertificateInfo,
    /// The certificates after the leaf, in issuer order.
    pub chain: Vec<CertificateInfo>,
    pub key_type: KeyType,
    pub protection: Protection,
    pub warnings: Vec<Warning>,
}

/// Something that does not stop the file from being used but that its owner should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Stable code (documented in docs/errors.md).
    pub code: &'static str,
    pub message: String,
}

impl Warning {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Orders `others` from the leaf's issuer upwards, following issuer names. Returns the chain
/// and the certificates that belong to no chain from the leaf.
pub(crate) fn order_chain(
    leaf: &CertificateInfo,
    mut others: Vec<CertificateInfo>,
) -> (Vec<CertificateInfo>, Vec<CertificateInfo>) {
    let mut chain: Vec<CertificateInfo> = Vec::new();
    let mut current = leaf.clone();
    while !current.self_issued {
        let Some(position) = others
            .iter()
            .position(|candidate| candidate.subject_der == current.issuer_der)
        else {
            break;
        };
        let issuer = others.swap_remove(position);
        current = issuer.clone();
        chain.push(issuer);
    }
    (chain, others)
}

/// The warnings for an accepted identity at `now` (Unix seconds).
pub(crate) fn warnings(
    leaf: &CertificateInfo,
    chain: &[CertificateInfo],
    unrelated: &[CertificateInfo],
    protection: &Protection,
    now: i64,
    expiry_warning_seconds: i64,
) -> Vec<Warning> {
    let mut warnings = certificate_warnings(leaf, chain, unrelated, now, expiry_warning_seconds);
    warnings.extend(protection_warnings(protection));
    warnings
}

/// The warnings about the certificates themselves, whatever carried them (a PKCS#12 file or an
/// uploaded chain).
pub(crate) fn certificate_warnings(
    leaf: &CertificateInfo,
    chain: &[CertificateInfo],
    unrelated: &[CertificateInfo],
    now: i64,
    expiry_warning_seconds: i64,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let remaining = leaf.not_after.saturating_sub(now);
    if remaining < expiry_warning_seconds {
        warnings.push(Warning::new(
            "expires_soon",
            format!("the certificate expires in {} days", remaining / 86_400),
        ));
    }
    if leaf.client_auth == Some(false) {
        warnings.push(Warning::new(
            "no_client_auth_usage",
            "the certificate's extended key usage does not include TLS client authentication; servers may refuse it",
        ));
    }
    if leaf.self_issued {
        warnings.push(Warning::new(
            "self_signed",
            "the certificate is self-signed; the server must trust this exact certificate",
        ));
    } else if chain.last().is_none_or(|top| !top.self_issued) {
        let top = chain.last().unwrap_or(leaf);
        warnings.push(Warning::new(
            "chain_incomplete",
            format!(
                "the file does not hold the issuer of \"{}\"; the server must know it",
                top.subject
            ),
        ));
    }
    for certificate in chain {
        if certificate.not_after < now {
            warnings.push(Warning::new(
                "chain_certificate_expired",
                format!(
                    "the chain certificate \"{}\" has expired",
                    certificate.subject
                ),
            ));
        }
    }
    if !unrelated.is_empty() {
        warnings.push(Warning::new(
            "unrelated_certificates",
            format!(
                "{} certificate(s) in the file are not part of the chain and will not be sent",
                unrelated.len()
            ),
        ));
    }
    warnings
}

/// The warnings about how a PKCS#12 file was protected.
fn protection_warnings(protection: &Protection) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if protection.legacy {
        warnings.push(Warning::new(
            "legacy_encryption",
            "the file uses legacy algorithms (SHA-1, RC2 or 3DES); re-export it with AES and PBKDF2 when you can",
        ));
    }
    if protection.mac.is_none() {
        warnings.push(Warning::new(
            "no_integrity_mac",
            "the file has no integrity MAC",
        ));
    }
    if protection
        .key_encryption
        .iter()
        .any(|entry| entry.starts_with("none"))
    {
        warnings.push(Warning::new(
            "key_not_encrypted",
            "the private key is stored without its own encryption",
        ));
    }
    warnings
}
