//! PKCS#12 intake for mtls-gateway (SPEC 4.2): opens a file with its password, finds the key,
//! the leaf that matches it and the chain, and reports what a tenant should know. Keys the
//! gateway makes (SPEC 4.6, [`request`]): the key, its PKCS#10 request, and the check of the
//! signed chain uploaded for it ([`accept_chain`]), which answers the same [`Inspection`].
//!
//! Pure: no IO, no async, the time is a parameter. Parsing never panics on any input and
//! never does more key-derivation work than [`CostLimits`] allows.

mod asn1;
mod cert;
mod cost;
mod crypt;
mod error;
mod kdf;
mod key;
mod mac;
mod oids;
mod parse;
mod report;
mod request;
mod resealed;

use std::time::{SystemTime, UNIX_EPOCH};

pub use cert::{
    CertificateInfo, issuer_and_subject, name_text, names as certificate_names,
    read as read_certificate, same_name,
};
pub use cost::CostLimits;
pub use error::IntakeError;
pub use kdf::PasswordForm;
pub use key::{KeyType, PrivateKey};
pub use parse::Protection;
pub use report::{Identity, Report, Warning};
pub use request::{
    CertificateRequest, MAX_ALT_NAMES, MAX_CHAIN_CERTIFICATES, MAX_CHAIN_PEM_BYTES,
    MAX_SUBJECT_CHARS, RequestKeyType, accept_chain, chain_pem, check_request, generate,
    inspect_key, pem, renewal_request, request,
};
pub use resealed::inspect_resealed;

/// What the operator configures about intake.
#[derive(Clone, Copy, Debug)]
pub struct IntakePolicy {
    pub cost: CostLimits,
    /// A leaf expiring within this many seconds is accepted with an `expires_soon` warning.
    pub expiry_warning_seconds: i64,
}

impl Default for IntakePolicy {
    fn default() -> Self {
        Self {
            cost: CostLimits::default(),
            expiry_warning_seconds: 30 * 86_400,
        }
    }
}

/// An accepted PKCS#12 file.
#[derive(Debug)]
pub struct Inspection {
    pub identity: Identity,
    pub report: Report,
}

/// Opens `file` with `password` and checks it against SPEC 4.2 at time `now`.
pub fn inspect(
    file: &[u8],
    password: &str,
    policy: &IntakePolicy,
    now: SystemTime,
) -> Result<Inspection, IntakeError> {
    let contents = parse::walk(file, password, cost::Budget::new(policy.cost))?;
    let mut keys = contents.keys;
    keys.dedup();
    let key_der = match keys.len() {
        0 => return Err(IntakeError::NoPrivateKey),
        1 => keys.pop().ok_or(IntakeError::NoPrivateKey)?,
        _ => return Err(IntakeError::MultipleKeys),
    };
    if contents.certificates.is_empty() {
        return Err(IntakeError::NoCertificate);
    }
    let checked = key::check(&key_der)?;
    let mut certificates = Vec::with_capacity(contents.certificates.len());
    for der in &contents.certificates {
        let info =
            cert::read(der).ok_or(IntakeError::Malformed("a certificate does not decode"))?;
        if !certificates
            .iter()
            .any(|seen: &CertificateInfo| seen.der == info.der)
        {
            certificates.push(info);
        }
    }
    let leaf_position = certificates
        .iter()
        .position(|certificate| certificate.public_key == checked.public_key)
        .ok_or(IntakeError::KeyMismatch)?;
    let leaf = certificates.swap_remove(leaf_position);

    let now = unix_seconds(now);
    if leaf.not_after < now {
        return Err(IntakeError::CertificateExpired);
    }
    if leaf.not_before > now {
        return Err(IntakeError::CertificateNotYetValid);
    }
    let (chain, unrelated) = report::order_chain(&leaf, certificates);
    let warnings = report::warnings(
        &leaf,
        &chain,
        &unrelated,
        &contents.protection,
        now,
        policy.expiry_warning_seconds,
    );
    let mut certificate_chain = vec![leaf.der.clone()];
    certificate_chain.extend(chain.iter().map(|certificate| certificate.der.clone()));
    Ok(Inspection {
        identity: Identity {
            key: PrivateKey::new(key_der),
            certificate_chain,
        },
        report: Report {
            leaf,
            chain,
            key_type: checked.key_type,
            protection: contents.protection,
            warnings,
        },
    })
}

pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
    }
}
