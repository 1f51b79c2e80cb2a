//! Keys the gateway makes (SPEC 4.6), the request half: a certificate request (the key made
//! here, stored only in the secret store, the CSR answered), its CSR read again, and the signed
//! chain that completes it. Same write order as PKCS#12 certificates (`certificates.rs`): the
//! secret first, then the row; the chain's version claimed like a replacement's, the row moved
//! to it with a conditional update, then the older version removed.

use mtls_pki::{RequestKeyType, accept_chain, check_request};
use mtls_secrets::{KeyMaterial, Secret, SecretKey, Written};
use mtls_store::{CertificateRow, NewRequest, SecretState};
use zeroize::Zeroizing;

use crate::Control;
use crate::backends::Backends;
use crate::certificates::{
    NAME_RULE, advance, changed, conflict, facts, live, over_cap, valid_name,
};
use crate::error::ControlError;

/// The key type made when the request names none.
pub const DEFAULT_KEY_TYPE: RequestKeyType = RequestKeyType::P256;

/// What a request asks for, as read by the HTTP edge or the command line.
#[derive(Clone, Debug, Default)]
pub struct RequestInput {
    pub name: Option<String>,
    pub subject: Option<String>,
    /// `P-256` (the default), `P-384`, `RSA-2048`, `RSA-3072`.
    pub key_type: Option<String>,
    pub subject_alt_names: Vec<String>,
}

/// A request made: the pending row and its CSR (PEM). No key: it went to the secret store.
#[derive(Clone, Debug)]
pub struct Requested {
    pub row: CertificateRow,
    pub csr_pem: String,
}

/// Makes a request: the name checked (valid, free, the account under its cap), the subject
/// and names checked before any key exists, the key and CSR made on a blocking thread under the
/// intake permits, the key written to the secret store as version 1 (no chain), then the row
/// (within the cap, under the account's lock), then the routing refresh.
pub async fn create(
    control: &Control,
    backends: &Backends,
    account: &str,
    input: RequestInput,
) -> Result<Requested, ControlError> {
    let name = input.name.unwrap_or_default();
    if !valid_name(&name) {
        return Err(ControlError::invalid("invalid_name", NAME_RULE));
    }
    let key_type = match input.key_type.as_deref() {
        None => DEFAULT_KEY_TYPE,
        Some(label) => RequestKeyType::parse(label).map_err(ControlError::Intake)?,
    };
    let subject = input.subject.unwrap_or_default();
    check_request(&subject, &input.subject_alt_names).map_err(ControlError::Intake)?;
    let cap = control.limits().max_certificates_per_account;
    let live_count = backends.store.live_certificate_count(account).await?;
    if live_count >= i64::try_from(cap).unwrap_or(i64::MAX) {
        return Err(over_cap("certificate_limit_reached", "certificates", cap));
    }
    if backends.store.name_taken(account, &name, None).await? {
        return Err(conflict(&name));
    }
    let alt_names = input.subject_alt_names;
    let request = control
        .blocking(move || mtls_pki::request(key_type, &subject, &alt_names))
        .await?
        .map_err(ControlError::Intake)?;
    let id = mtls_store::new_id()?;
    let key = SecretKey {
        account,
        certificate_id: id,
    };
    let material = KeyMaterial {
        pkcs8: Zeroizing::new(request.key.pkcs8_der().to_vec()),
        chain_pem: None,
    };
    // Secret first. A request whose key could not be stored is of no use (the key exists
    // nowhere else): nothing is recorded and the caller sees the secret store's failure.
    match backends.secrets.put(key, 1, &material).await? {
        Written::Stored => {}
        Written::Taken => {
            return Err(ControlError::internal(
                &"a new certificate id already had a secret",
            ));
        }
    }
    drop(material);
    let new = NewRequest {
        id,
        account_id: account.to_owned(),
        name: name.clone(),
        secret_state: SecretState::Stored,
        subject: request.subject.clone(),
        key_type: request.key_type.label(),
        csr_pem: request.csr_pem.clone(),
    };
    let now = control.now();
    let refused = match backends
        .store
        .insert_request_within(account, &new, now, cap)
        .await
    {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(over_cap("certificate_limit_reached", "certificates", cap)),
        Err(mtls_store::StoreError::Conflict) => Some(conflict(&name)),
        Err(other) => Some(ControlError::from(other)),
    };
    if let Some(error) = refused {
        // Nothing was recorded: the key goes.
        if let Err(destroy) = backends.secrets.destroy(key).await {
            tracing::warn!(account, certificate_id = id, %destroy, "an unused request key could not be removed");
        }
        return Err(error);
    }
    let row = backends
        .store
        .certificate(account, id)
        .await?
        .ok_or_else(|| ControlError::internal(&"row vanished"))?;
    changed(control, backends, account).await?;
    Ok(Requested {
        row,
        csr_pem: request.csr_pem,
    })
}

/// The CSR of a live certificate of `account`: the pending request's, or the one its
/// certificate was issued for. 404 when the certificate is unknown or has none (it came from a
/// PKCS#12 file).
pub async fn csr(backends: &Backends, account: &str, id: i64) -> Result<String, ControlError> {
    live(backends, account, id).await?;
    backends
        .store
        .certificate_csr(account, id)
        .await?
        .ok_or(ControlError::NotFound("certificate signing request"))
}

fn not_pending() -> ControlError {
    ControlError::conflict(
        "not_pending",
        "the certificate is not waiting for a signed chain; replace it with PUT, or renew it",
    )
}

/// Completes a pending request with the signed chain `pem` (leaf first): checked against the
/// stored key at the control clock's now, then the key and the chain written as the next
/// version (claimed like a replacement's), the row moved to it with the leaf's facts, the
/// older version removed, and the routing table rebuilt (mappable and forwarded at once).
pub async fn complete(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    pem: Vec<u8>,
) -> Result<CertificateRow, ControlError> {
    let row = live(backends, account, id).await?;
    if !row.pending {
        return Err(not_pending());
    }
    let key = SecretKey {
        account,
        certificate_id: id,
    };
    let pkcs8 = match backends.secrets.get_secret(key, row.version).await? {
        Some(Secret::Key(material)) => material.pkcs8,
        Some(Secret::P12(_)) => return Err(not_pending()),
        None => {
            return Err(ControlError::conflict(
                "secret_missing",
                "the secret store holds no key for this request; make a new request",
            ));
        }
    };
    let policy = *control.intake();
    let now_time = control.clock().time();
    let (inspection, pkcs8) = control
        .blocking(move || {
            let checked = accept_chain(&pem, &pkcs8, &policy, now_time);
            (checked, pkcs8)
        })
        .await?;
    let inspection = inspection.map_err(ControlError::Intake)?;
    let replacement = mtls_store::Replacement {
        name: row.name.clone(),
        ..facts(&inspection.report)
    };
    let material = KeyMaterial {
        pkcs8,
        chain_pem: Some(mtls_pki::chain_pem(&inspection.identity.certificate_chain)),
    };
    drop(inspection);
    let now = control.now();
    advance(backends, key, row.version, (&material).into(), now, || {
        backends
            .store
            .complete_request(account, id, row.version, &replacement, now)
    })
    .await?;
    drop(material);
    let row = backends
        .store
        .certificate(account, id)
        .await?
        .ok_or(ControlError::NotFound("certificate"))?;
    changed(control, backends, account).await?;
    Ok(row)
}

/// What collect (SPEC 4.5) hands out for a key the gateway made: the certificate, its chain
/// and the CSR, as `(file name, PEM text)`. Never the key.
pub fn collect_files(id: i64, chain_pem: &str, csr_pem: Option<&str>) -> Vec<(String, String)> {
    let mut sections = pem_sections(chain_pem).into_iter();
    let mut files = Vec::with_capacity(3);
    if let Some(leaf) = sections.next() {
        files.push((format!("{id}.pem"), leaf));
    }
    let issuers: String = sections.collect();
    if !issuers.is_empty() {
        files.push((format!("{id}-chain.pem"), issuers));
    }
    if let Some(csr) = csr_pem {
        files.push((format!("{id}.csr"), csr.to_owned()));
    }
    files
}

/// The `CERTIFICATE` sections of PEM text the gateway wrote (`pki::chain_pem`), each with its
/// markers and a final line end.
fn pem_sections(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut sections = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(after) = rest.get(start..) else {
            break;
        };
        let Some(end) = after.find(END) else {
            break;
        };
        let stop = end + END.len();
        if let Some(section) = after.get(..stop) {
            sections.push(format!("{section}\n"));
        }
        rest = after.get(stop..).unwrap_or_default();
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_files_split_the_leaf_from_its_issuers_and_hold_no_key() {
        let leaf = mtls_pki::pem("CERTIFICATE", b"leaf");
        let issuer = mtls_pki::pem("CERTIFICATE", b"issuer");
        let chain = format!("{leaf}{issuer}");
        let files = collect_files(7, &chain, Some("CSR"));
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["7.pem", "7-chain.pem", "7.csr"]);
        assert_eq!(files[0].1.trim(), leaf.trim());
        assert_eq!(files[1].1.trim(), issuer.trim());
        let alone = collect_files(7, &leaf, None);
        assert_eq!(alone.len(), 1);
        assert!(files.iter().all(|(_, text)| !text.contains("PRIVATE KEY")));
    }
}
