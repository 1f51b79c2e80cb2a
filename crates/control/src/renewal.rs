//! Renewal without a gap (SPEC 4.6): a new key made inside the gateway for a live certificate
//! (from a PKCS#12 file or a request) while the current key stays live; the renewal's signed
//! chain switches the certificate to the new key and the next version at once or at
//! `activateAt`; a renewal can be cancelled.
//!
//! The renewal's key waits in the secret store at a version of its own
//! (`mtls_secrets::renewal_version`, never a live version) and the row records it
//! (`store.create_renewal`). The switch is a replacement like a PKCS#12 update
//! (`certificates::claim` of `row.version + 1`, then the conditional `store.complete_renewal`,
//! then older versions and the renewal's slot removed), so rotation keeps SPEC 6.2's
//! guarantees: the new identity retires the old one, requests in flight finish on theirs. A
//! scheduled switch is made by [`activate_due`], which every node's sync task calls: the
//! version claim and the conditional update let exactly one node win; a loser changes nothing.

use std::time::{Duration, UNIX_EPOCH};

use mtls_pki::{IntakeError, RequestKeyType};
use mtls_secrets::{KeyMaterial, Secret, SecretKey, Versions, Written};
use mtls_store::{CertificateRow, NewRenewal, Replacement};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::Control;
use crate::backends::Backends;
use crate::certificates::{self, live};
use crate::error::ControlError;

/// How far ahead `activateAt` may be.
pub const MAX_ACTIVATE_AHEAD_SECONDS: i64 = 366 * 86_400;

/// Draws of a renewal version before giving up (each collides with odds of 2^-31).
const VERSION_DRAWS: usize = 8;

/// What a renewal asks for: both optional (the current key's type, the current subject).
#[derive(Debug, Default)]
pub struct RenewalInput {
    pub key_type: Option<String>,
    pub subject: Option<String>,
}

/// What the chain upload did.
#[derive(Debug)]
pub enum Uploaded {
    /// Switched at once: the row at its new version.
    Switched(CertificateRow),
    /// Waits for `activate_at`: the row with its renewal `Scheduled`.
    Scheduled(CertificateRow),
}

impl Uploaded {
    pub fn row(&self) -> &CertificateRow {
        match self {
            Uploaded::Switched(row) | Uploaded::Scheduled(row) => row,
        }
    }
}

fn no_renewal() -> ControlError {
    ControlError::Missing {
        code: "no_renewal",
        message: "the certificate has no renewal in progress".to_owned(),
    }
}

fn renewal_pending() -> ControlError {
    ControlError::conflict(
        "renewal_pending",
        "the certificate already has a renewal in progress; upload its chain or cancel it (DELETE .../renewal)",
    )
}

/// An intake refusal as the control plane answers it: 400 with its code, except a failed key
/// generation, which is the gateway's fault (500).
fn intake(error: IntakeError) -> ControlError {
    match error {
        IntakeError::KeyGeneration => ControlError::internal(&"key generation failed"),
        other => ControlError::invalid(other.code(), other.to_string()),
    }
}

fn key_of<'a>(row: &'a CertificateRow) -> SecretKey<'a> {
    SecretKey {
        account: &row.account_id,
        certificate_id: row.id,
    }
}

/// `activateAt` (RFC 3339) as Unix seconds: 400 `invalid_activate_at` when it is not RFC 3339
/// or more than [`MAX_ACTIVATE_AHEAD_SECONDS`] after `now`. A time in the past is valid (the
/// switch is then made at once).
pub fn parse_activate_at(text: &str, now: i64) -> Result<i64, ControlError> {
    let at = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| {
            ControlError::invalid(
                "invalid_activate_at",
                "activateAt must be an RFC 3339 time such as 2027-01-31T12:00:00Z",
            )
        })?
        .unix_timestamp();
    if at > now.saturating_add(MAX_ACTIVATE_AHEAD_SECONDS) {
        return Err(ControlError::invalid(
            "invalid_activate_at",
            "activateAt may be at most a year ahead",
        ));
    }
    Ok(at)
}

/// The live secret's leaf (DER) and key type, whatever form the secret has. Read as of the
/// leaf's own `notBefore`, so that an expired certificate can be renewed too.
async fn current_leaf(
    control: &Control,
    backends: &Backends,
    row: &CertificateRow,
) -> Result<(Vec<u8>, mtls_pki::KeyType), ControlError> {
    let secret = crate::material::material(backends, &row.account_id, row.id, row.version)
        .await?
        .ok_or_else(|| {
            ControlError::conflict(
                "secret_missing",
                "the secret store holds no key for this certificate; upload it again",
            )
        })?;
    let policy = *control.intake();
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(row.not_before).unwrap_or(0));
    let inspection = control
        .blocking(move || match secret {
            Secret::P12(material) => {
                mtls_pki::inspect(&material.p12, &material.password, &policy, at)
            }
            Secret::Key(material) => {
                mtls_pki::inspect_key(&material.pkcs8, material.chain_pem.as_deref(), &policy, at)
            }
        })
        .await?
        .map_err(|error| {
            ControlError::internal(&format!(
                "the stored certificate no longer passes intake: {}",
                error.code()
            ))
        })?;
    let leaf = inspection
        .identity
        .certificate_chain
        .into_iter()
        .next()
        .ok_or_else(|| ControlError::internal(&"a stored identity without a certificate"))?;
    Ok((leaf, inspection.report.key_type))
}

/// Starts a renewal of a live certificate: a new key (of `input.key_type`, else the current
/// key's type) and its request, stored at a renewal version; the current key stays live.
/// Answers the CSR (PEM). 409 `renewal_pending` when one is in progress, 409
/// `certificate_pending` for a request whose certificate has not been uploaded.
pub async fn start(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    input: RenewalInput,
) -> Result<String, ControlError> {
    let requested = input
        .key_type
        .as_deref()
        .map(RequestKeyType::parse)
        .transpose()
        .map_err(intake)?;
    if let Some(subject) = input.subject.as_deref() {
        mtls_pki::check_request(subject, &[]).map_err(intake)?;
    }
    let row = live(backends, account, id).await?;
    if row.pending {
        return Err(ControlError::conflict(
            "certificate_pending",
            "the certificate's signed chain has not been uploaded yet: there is nothing to renew",
        ));
    }
    if row.renewal.is_some() {
        return Err(renewal_pending());
    }
    let (leaf, current_type) = current_leaf(control, backends, &row).await?;
    let key_type = match requested {
        Some(kind) => kind,
        None => RequestKeyType::from_key_type(current_type).ok_or_else(|| {
            ControlError::invalid(
                "unsupported_key_type",
                format!(
                    "the gateway does not make {} keys; name keyType (P-256, P-384, RSA-2048 or RSA-3072)",
                    current_type.label()
                ),
            )
        })?,
    };
    let subject = input.subject;
    let request = control
        .blocking(move || mtls_pki::renewal_request(key_type, &leaf, subject.as_deref()))
        .await?
        .map_err(intake)?;
    let material = KeyMaterial {
        pkcs8: Zeroizing::new(request.key.pkcs8_der().to_vec()),
        chain_pem: None,
    };
    drop(request.key);
    let key = key_of(&row);
    let mut stored = None;
    for _ in 0..VERSION_DRAWS {
        let version = mtls_secrets::renewal_version()?;
        if backends.secrets.put(key, version, &material).await? == Written::Stored {
            stored = Some(version);
            break;
        }
    }
    let secret_version =
        stored.ok_or_else(|| ControlError::internal(&"no free renewal version"))?;
    let renewal = NewRenewal {
        secret_version,
        key_type: request.key_type.label(),
        csr_pem: request.csr_pem.clone(),
    };
    let recorded = backends
        .store
        .create_renewal(account, id, row.version, &renewal, control.now())
        .await;
    if !matches!(recorded, Ok(true)) {
        // Not recorded (another renewal, a replacement or a delete came first): the key is
        // nobody's.
        if let Err(error) = backends
            .secrets
            .remove(key, Versions::One(secret_version))
            .await
        {
            tracing::warn!(account, certificate_id = id, %error, "an unused renewal key could not be removed");
        }
        recorded?;
        let now = live(backends, account, id).await?;
        return Err(if now.renewal.is_some() {
            renewal_pending()
        } else {
            certificates::concurrent_update()
        });
    }
    certificates::noted(control, backends, account).await?;
    tracing::info!(
        account,
        certificate_id = id,
        key_type = %renewal.key_type,
        "certificate renewal started"
    );
    Ok(request.csr_pem)
}

/// The renewal's request again (PEM); 404 `no_renewal` when none is in progress.
pub async fn csr(backends: &Backends, account: &str, id: i64) -> Result<String, ControlError> {
    live(backends, account, id).await?;
    match backends.store.renewal(account, id).await? {
        Some(detail) => Ok(detail.csr_pem),
        None => Err(no_renewal()),
    }
}

/// The renewal's key, as stored.
async fn renewal_key(
    backends: &Backends,
    row: &CertificateRow,
    secret_version: i64,
) -> Result<KeyMaterial, ControlError> {
    match backends
        .secrets
        .get_secret(key_of(row), secret_version)
        .await?
    {
        Some(Secret::Key(material)) => Ok(material),
        Some(Secret::P12(_)) => Err(ControlError::internal(
            &"a renewal's secret is not a key made by the gateway",
        )),
        None => Err(ControlError::conflict(
            "secret_missing",
            "the secret store holds no key for this renewal; cancel it and start another",
        )),
    }
}

/// The renewal's signed chain (`pem`: leaf first, then its issuers), checked against the
/// renewal's key (the refusals of SPEC 4.6). Without `activate_at`, or with one not after
/// now, the certificate switches at once; otherwise the switch is scheduled (the renewal
/// shows `Scheduled`) and made by [`activate_due`].
pub async fn upload_chain(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    pem: Vec<u8>,
    activate_at: Option<&str>,
) -> Result<Uploaded, ControlError> {
    let now = control.now();
    let activate_at = activate_at
        .map(|text| parse_activate_at(text, now))
        .transpose()?;
    let row = live(backends, account, id).await?;
    let detail = backends
        .store
        .renewal(account, id)
        .await?
        .ok_or_else(no_renewal)?;
    if detail.row.scheduled() {
        return Err(ControlError::conflict(
            "renewal_scheduled",
            "the renewal's chain was already uploaded and waits for its activation time; cancel it to start again",
        ));
    }
    let secret_version = detail.row.secret_version;
    let material = renewal_key(backends, &row, secret_version).await?;
    let policy = *control.intake();
    let time = control.clock().time();
    let pkcs8 = material.pkcs8.clone();
    let inspection = control
        .blocking(move || mtls_pki::accept_chain(&pem, &pkcs8, &policy, time))
        .await?
        .map_err(intake)?;
    let chain_pem = mtls_pki::chain_pem(&inspection.identity.certificate_chain);
    let facts = certificates::facts(&inspection.report);
    match activate_at {
        Some(at) if at > now => {
            if !backends
                .store
                .schedule_renewal(account, id, secret_version, &chain_pem, at, now)
                .await?
            {
                return Err(certificates::concurrent_update());
            }
            certificates::noted(control, backends, account).await?;
            tracing::info!(
                account,
                certificate_id = id,
                activate_at = at,
                "certificate renewal scheduled"
            );
            Ok(Uploaded::Scheduled(live(backends, account, id).await?))
        }
        _ => {
            let material = KeyMaterial {
                pkcs8: material.pkcs8,
                chain_pem: Some(chain_pem),
            };
            switch(control, backends, &row, secret_version, &material, facts)
                .await
                .map(Uploaded::Switched)
        }
    }
}

/// Switches `row` to the renewal `secret_version`: the next version written with the renewal's
/// key and chain (claimed as a replacement claims it), the row moved there conditionally, then
/// the older versions and the renewal's slot removed and the routing table rebuilt. 409
/// `concurrent_update` when another writer (or another node's activation) came first: the
/// version claimed is released, nothing else changes.
async fn switch(
    control: &Control,
    backends: &Backends,
    row: &CertificateRow,
    secret_version: i64,
    material: &KeyMaterial,
    facts: Replacement,
) -> Result<CertificateRow, ControlError> {
    let account = row.account_id.as_str();
    let key = key_of(row);
    let now = control.now();
    let facts = Replacement {
        name: row.name.clone(),
        ..facts
    };
    let version = certificates::advance(backends, key, row.version, material.into(), now, || {
        backends
            .store
            .complete_renewal(account, row.id, row.version, secret_version, &facts, now)
    })
    .await?;
    // The renewal's slot is no longer needed (best effort, as for older versions).
    if let Err(error) = backends
        .secrets
        .remove(key, Versions::One(secret_version))
        .await
    {
        tracing::warn!(account, certificate_id = row.id, %error, "the renewal's secret version could not be removed yet");
    }
    certificates::changed(control, backends, account).await?;
    tracing::info!(
        account,
        certificate_id = row.id,
        version,
        "certificate switched to its renewed key"
    );
    backends
        .store
        .certificate(account, row.id)
        .await?
        .ok_or(ControlError::NotFound("certificate"))
}

/// Cancels the renewal in progress (pending or scheduled) and removes its key; answers the
/// row. 404 `no_renewal` when none is in progress.
pub async fn cancel(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
) -> Result<CertificateRow, ControlError> {
    let row = live(backends, account, id).await?;
    let renewal = row.renewal.as_ref().ok_or_else(no_renewal)?;
    let secret_version = renewal.secret_version;
    if !backends
        .store
        .cancel_renewal(account, id, secret_version, control.now())
        .await?
    {
        // Completed or cancelled meanwhile.
        return Err(no_renewal());
    }
    if let Err(error) = backends
        .secrets
        .remove(key_of(&row), Versions::One(secret_version))
        .await
    {
        tracing::warn!(account, certificate_id = id, %error, "a cancelled renewal's key could not be removed yet");
    }
    certificates::noted(control, backends, account).await?;
    tracing::info!(
        account,
        certificate_id = id,
        "certificate renewal cancelled"
    );
    live(backends, account, id).await
}

/// One scheduled switch the timer made or tried.
#[derive(Debug)]
pub struct Activation {
    pub account: String,
    pub id: i64,
    /// `None`: switched; else the code of why the renewal was dropped (its chain no longer
    /// acceptable, such as `certificate_expired`).
    pub error_code: Option<&'static str>,
}

/// Makes every scheduled switch that is due (the sync task calls it on every node). Each
/// switch is `switch`'s: of several nodes, one wins the version claim and the conditional
/// update; the others get `concurrent_update` and change nothing (not reported). A renewal
/// whose chain is no longer acceptable at its time is dropped and reported; a dependency
/// failure is only logged, and the next round tries again.
pub async fn activate_due(control: &Control, backends: &Backends) -> Vec<Activation> {
    let due = match backends.store.due_renewals(control.now()).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "due renewals could not be read; the next round retries");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for row in due {
        let outcome = activate(control, backends, &row).await;
        let error_code = match &outcome {
            Ok(()) => None,
            // Another node switched it (or the renewal was cancelled): nothing to report.
            Err(ControlError::Conflict {
                code: "concurrent_update",
                ..
            }) => continue,
            // The chain is no longer acceptable (its leaf expired meanwhile) or the renewal's
            // key is gone: the renewal is dropped, once, rather than tried every round.
            Err(
                error @ (ControlError::Invalid { .. }
                | ControlError::Conflict {
                    code: "secret_missing",
                    ..
                }),
            ) => {
                tracing::warn!(account = %row.account_id, certificate_id = row.id, %error, "a scheduled renewal's chain is no longer acceptable; the renewal is cancelled");
                if let Some(renewal) = &row.renewal {
                    drop_renewal(control, backends, &row, renewal.secret_version).await;
                }
                Some(error.code())
            }
            // A dependency failed: the next round tries again (logged, not audited each time).
            Err(error) => {
                tracing::warn!(account = %row.account_id, certificate_id = row.id, %error, "a scheduled renewal could not be activated; the next round retries");
                continue;
            }
        };
        done.push(Activation {
            account: row.account_id.clone(),
            id: row.id,
            error_code,
        });
    }
    done
}

/// Forgets the renewal `secret_version` of `row` and removes its key (best effort).
async fn drop_renewal(
    control: &Control,
    backends: &Backends,
    row: &CertificateRow,
    secret_version: i64,
) {
    match backends
        .store
        .cancel_renewal(&row.account_id, row.id, secret_version, control.now())
        .await
    {
        Ok(true) => {
            if let Err(error) = backends
                .secrets
                .remove(key_of(row), Versions::One(secret_version))
                .await
            {
                tracing::warn!(account = %row.account_id, certificate_id = row.id, %error, "a dropped renewal's key could not be removed yet");
            }
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(account = %row.account_id, certificate_id = row.id, %error, "a renewal could not be dropped");
        }
    }
}

async fn activate(
    control: &Control,
    backends: &Backends,
    row: &CertificateRow,
) -> Result<(), ControlError> {
    let Some(detail) = backends.store.renewal(&row.account_id, row.id).await? else {
        return Err(certificates::concurrent_update());
    };
    let (true, Some(chain_pem)) = (detail.row.scheduled(), detail.chain_pem) else {
        return Err(certificates::concurrent_update());
    };
    let secret_version = detail.row.secret_version;
    let key = renewal_key(backends, row, secret_version).await?;
    let policy = *control.intake();
    let time = control.clock().time();
    let pkcs8 = key.pkcs8.clone();
    let chain = chain_pem.clone();
    let inspection = control
        .blocking(move || mtls_pki::inspect_key(&pkcs8, Some(&chain), &policy, time))
        .await?
        .map_err(intake)?;
    let facts = certificates::facts(&inspection.report);
    let material = KeyMaterial {
        pkcs8: key.pkcs8,
        chain_pem: Some(chain_pem),
    };
    switch(control, backends, row, secret_version, &material, facts)
        .await
        .map(drop)
}

/// Records a switch the timer made in the audit trail (actor `system:renewal-timer`).
pub async fn audit_activation(control: &Control, backends: &Backends, activation: &Activation) {
    let Ok(id) = mtls_store::new_id() else {
        return;
    };
    let entry = mtls_store::AuditEntry {
        id,
        account_id: activation.account.clone(),
        at: control.now(),
        actor: "system:renewal-timer".to_owned(),
        action: "certificate.renewal.activate".to_owned(),
        target_ids: vec![activation.id],
        outcome: crate::audit::outcome(activation.error_code),
        request_id: "-".to_owned(),
    };
    if let Err(error) = backends.store.insert_audit(&entry).await {
        tracing::warn!(%error, "audit entry not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activate_at_is_rfc_3339_and_at_most_a_year_ahead() {
        let now = 1_800_000_000;
        assert_eq!(
            parse_activate_at("2027-01-15T08:00:00Z", now).unwrap(),
            1_800_000_000
        );
        assert_eq!(
            parse_activate_at("2027-01-15T10:00:00+02:00", now).unwrap(),
            1_800_000_000
        );
        // The past is valid: the switch is made at once.
        assert!(parse_activate_at("2020-01-01T00:00:00Z", now).is_ok());
        for bad in [
            "tomorrow",
            "2027-01-15",
            "1800000000",
            "",
            "2027-01-15 08:00:00",
        ] {
            assert_eq!(
                parse_activate_at(bad, now).unwrap_err().code(),
                "invalid_activate_at",
                "{bad}"
            );
        }
        assert_eq!(
            parse_activate_at("2029-01-15T08:00:00Z", now)
                .unwrap_err()
                .code(),
            "invalid_activate_at"
        );
    }
}
