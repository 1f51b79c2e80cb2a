//! A certificate version's identity as the gateway re-sealed it after a PKCS#12 intake: the
//! PKCS#8 key and the chain (leaf first) that the intake produced, checked again when a cold
//! load opens it, as cheaply as the PKCS#12 path's own checks (no key derivation).

use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::{Identity, IntakeError, PrivateKey, cert, key, unix_seconds};

/// The identity a forward presents, from a re-sealed key and chain (PEM, leaf first): the key
/// loads in the signing library, the first certificate carries it, and that leaf is valid at
/// `now`. The checks [`crate::inspect`] makes on a PKCS#12 file when a cold load parses it,
/// and no more: a chain the intake accepted is never refused here (its order and signatures
/// are the file's, as [`crate::inspect`] ordered them; [`crate::accept_chain`] is stricter).
pub fn inspect_resealed(
    pkcs8: &[u8],
    chain_pem: &str,
    now: SystemTime,
) -> Result<Identity, IntakeError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let checked = key::check(pkcs8)?;
    let mut certificate_chain = Vec::new();
    for section in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        let der = section.map_err(|_| IntakeError::InvalidPem("not valid PEM text"))?;
        certificate_chain.push(der.as_ref().to_vec());
    }
    let leaf = certificate_chain
        .first()
        .ok_or(IntakeError::NoCertificate)
        .and_then(|der| {
            cert::read(der).ok_or(IntakeError::Malformed("a certificate does not decode"))
        })?;
    if leaf.public_key != checked.public_key {
        return Err(IntakeError::KeyMismatch);
    }
    let now = unix_seconds(now);
    if leaf.not_after < now {
        return Err(IntakeError::CertificateExpired);
    }
    if leaf.not_before > now {
        return Err(IntakeError::CertificateNotYetValid);
    }
    Ok(Identity {
        key: PrivateKey::new(Zeroizing::new(pkcs8.to_vec())),
        certificate_chain,
    })
}
