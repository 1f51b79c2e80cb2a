//! A certificate version's secret material as the row decides it: shared by collect and by the
//! forward path's identity loads. Either form: a PKCS#12 file and its password, or a key the
//! gateway made and its chain (SPEC 4.6). Never the re-sealed identity of a PKCS#12 version:
//! only the forward path's cold load reads that (`identities`); this module only gives the
//! form it is written in ([`resealable`]), at upload and after a cold load's parse.

use mtls_secrets::{KeyMaterial, Secret, SecretKey};
use zeroize::Zeroizing;

use crate::backends::Backends;
use crate::error::ControlError;

/// The secret of `version` of a certificate. When that version's secret is gone because a
/// replacement moved the row past it (and removed it) since the caller read the version, the
/// row's live version is read instead: the row decides which secret is live.
pub async fn material(
    backends: &Backends,
    account: &str,
    id: i64,
    version: i64,
) -> Result<Option<Secret>, ControlError> {
    Ok(material_of(backends, account, id, version)
        .await?
        .map(|(_, secret)| secret))
}

/// [`material`], with the version it was read as (`version`, or the row's later one).
pub(crate) async fn material_of(
    backends: &Backends,
    account: &str,
    id: i64,
    version: i64,
) -> Result<Option<(i64, Secret)>, ControlError> {
    let key = SecretKey {
        account,
        certificate_id: id,
    };
    if let Some(secret) = backends.secrets.get_secret(key, version).await? {
        return Ok(Some((version, secret)));
    }
    match backends.store.certificate(account, id).await? {
        Some(row) if !row.deleted && row.version > version => Ok(backends
            .secrets
            .get_secret(key, row.version)
            .await?
            .map(|secret| (row.version, secret))),
        _ => Ok(None),
    }
}

/// A parsed identity in the form it is re-sealed in: the PKCS#8 key and the chain, PEM, leaf
/// first (the secret store's [`KeyMaterial`], as for a key the gateway made).
pub(crate) fn resealable(identity: &mtls_pki::Identity) -> KeyMaterial {
    KeyMaterial {
        pkcs8: Zeroizing::new(identity.key.pkcs8_der().to_vec()),
        chain_pem: Some(mtls_pki::chain_pem(&identity.certificate_chain)),
    }
}
