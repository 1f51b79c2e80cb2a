//! Certificate operations behind the routes: turning request items into checked identities
//! (the whole request is validated before anything is stored), then the writes in SPEC 4.3's
//! order: secret first, then the row. A replacement writes the new version's secret under its
//! own key (a version is claimed by the one writer that writes it first), then moves the row to
//! that version with a conditional update; only then are older versions' secrets removed. The
//! row thus decides which secret is live: a losing writer never touches the live one.

use std::collections::HashSet;

use mtls_secrets::{KeyMaterial, MaterialRef, SecretKey, SecretMaterial, Versions, Written};
use mtls_store::{NewCertificate, Replacement, SecretState};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::Control;
use crate::backends::Backends;
use crate::error::{ControlError, ItemError};

pub use crate::material::material;

/// Most items one request may carry.
pub const MAX_ITEMS: usize = 50;

/// One item as it arrives (JSON array element or multipart `certificate` part + `file`), read
/// by the HTTP edge (`mtls_api`'s upload and multipart readers).
#[derive(Default)]
pub struct ItemInput {
    pub id: Option<Value>,
    pub name: Option<String>,
    pub p12: Option<P12>,
    pub password: Option<String>,
}

/// A JSON item's `p12`, decoded while it was read.
pub enum P12 {
    Bytes(Zeroizing<Vec<u8>>),
    /// Neither base64 text nor an array of byte values (-128..=255).
    Invalid,
}

/// Names what an item holds, never the file or the password.
impl std::fmt::Debug for ItemInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemInput")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("p12", &self.p12.as_ref().map(|_| "<redacted>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for P12 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            P12::Bytes(bytes) => write!(f, "P12::Bytes({} bytes)", bytes.len()),
            P12::Invalid => f.write_str("P12::Invalid"),
        }
    }
}

impl Drop for ItemInput {
    fn drop(&mut self) {
        if let Some(password) = self.password.as_mut() {
            zeroize::Zeroize::zeroize(password);
        }
    }
}

/// An item as read from the request, with the file when it came as a multipart part.
pub type RawItem = (ItemInput, Option<Zeroizing<Vec<u8>>>);

/// What a create or a replacement stored: the rows saved, and those whose secret could not be
/// written (kept `UnAvailable`, or unchanged), as of `at` (Unix seconds).
#[derive(Debug, Default)]
pub struct Saved {
    pub saved: Vec<mtls_store::CertificateRow>,
    pub failed: Vec<mtls_store::CertificateRow>,
    pub at: i64,
}

impl Saved {
    /// No item was saved: the secret store took none of them.
    pub fn all_failed(&self) -> bool {
        self.saved.is_empty()
    }

    /// The ids of every item, saved or not (for the audit trail).
    pub fn ids(&self) -> Vec<i64> {
        self.saved
            .iter()
            .chain(&self.failed)
            .map(|row| row.id)
            .collect()
    }
}

/// An item whose PKCS#12 file passed intake.
pub struct CheckedItem {
    pub id: Option<i64>,
    pub facts: Replacement,
    pub material: SecretMaterial,
    /// The key and chain the intake just parsed from the file: re-sealed beside it
    /// (`resealed`), so that a cold load never pays the file's key derivations again.
    pub identity: KeyMaterial,
}

/// The id and the facts; the secret material is never printed.
impl std::fmt::Debug for CheckedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedItem")
            .field("id", &self.id)
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// A certificate or mapping id: a positive number, or a string of one.
pub fn parse_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// SPEC 4.1: 1 to 128 printable characters; certificate and mapping names alike.
pub fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=128).contains(&count) && !name.chars().any(|c| c.is_control() || invisible(c))
}

/// What [`valid_name`] answers with.
pub const NAME_RULE: &str = "the name must be 1 to 128 printable characters, without control or invisible formatting characters";

/// Characters that change how a name is displayed without being seen: a name shown in the
/// console, a log or a terminal must read as what it is (no "Trojan Source" reordering, no two
/// names that look the same). Bidirectional controls and marks, zero-width characters and
/// joiners, line and paragraph separators, invisible operators, the byte order mark,
/// interlinear annotations and tag characters.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Validates every item; either all are usable or the answer lists every bad one.
pub async fn check_items(
    control: &Control,
    inputs: Vec<RawItem>,
    need_id: bool,
) -> Result<Vec<CheckedItem>, ControlError> {
    if inputs.is_empty() {
        return Err(ControlError::invalid(
            "empty_request",
            "the request holds no certificate",
        ));
    }
    if inputs.len() > MAX_ITEMS {
        return Err(ControlError::invalid(
            "too_many_items",
            format!("at most {MAX_ITEMS} certificates per request"),
        ));
    }
    let limit = control.limits().p12_max_bytes;
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for (index, (mut input, file)) in inputs.into_iter().enumerate() {
        let mut fail = |code: &'static str, message: String| {
            errors.push(ItemError {
                index,
                code,
                message,
            })
        };
        let id = match (&input.id, need_id) {
            (Some(raw), true) => match parse_id(raw) {
                Some(id) => Some(id),
                None => {
                    fail("invalid_id", "the id is not a positive integer".to_owned());
                    continue;
                }
            },
            (None, true) => {
                fail(
                    "missing_id",
                    "an update needs the certificate id".to_owned(),
                );
                continue;
            }
            (_, false) => None,
        };
        let name = input.name.take().unwrap_or_default();
        if !valid_name(&name) {
            fail("invalid_name", NAME_RULE.to_owned());
            continue;
        }
        let bytes = match (file, input.p12.take()) {
            (Some(file), _) => file,
            (None, Some(P12::Bytes(bytes))) => bytes,
            (None, Some(P12::Invalid)) => {
                fail(
                    "invalid_p12_encoding",
                    "p12 must be base64 text or an array of byte values".to_owned(),
                );
                continue;
            }
            (None, None) => {
                fail("missing_p12", "the PKCS#12 file is missing".to_owned());
                continue;
            }
        };
        if bytes.len() > limit {
            return Err(ControlError::TooLarge(format!(
                "item {index}: the PKCS#12 file is larger than {limit} bytes"
            )));
        }
        let password = Zeroizing::new(input.password.take().unwrap_or_default());
        match inspect(control, bytes, password).await? {
            Ok((facts_without_name, material, identity)) => {
                checked.push(CheckedItem {
                    id,
                    facts: Replacement {
                        name,
                        ..facts_without_name
                    },
                    material,
                    identity,
                });
            }
            Err(error) => fail(error.code(), error.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(ControlError::Items(errors));
    }
    let mut names = HashSet::new();
    for item in &checked {
        if !names.insert(item.facts.name.clone()) {
            return Err(conflict(&item.facts.name));
        }
    }
    Ok(checked)
}

/// 409: a create would leave the account holding more than `cap` live `what`.
pub fn over_cap(code: &'static str, what: &str, cap: usize) -> ControlError {
    ControlError::conflict(
        code,
        format!("the account may hold at most {cap} {what}; delete some before creating more"),
    )
}

pub fn conflict(name: &str) -> ControlError {
    ControlError::conflict(
        "name_conflict",
        format!("the name \"{name}\" is already used by another certificate of this account"),
    )
}

/// Runs intake on a blocking thread under the intake permits ([`Control::inspect`]).
async fn inspect(
    control: &Control,
    bytes: Zeroizing<Vec<u8>>,
    password: Zeroizing<String>,
) -> Result<Result<(Replacement, SecretMaterial, KeyMaterial), mtls_pki::IntakeError>, ControlError>
{
    // The file's bytes are kept for the secret store: intake reads a copy.
    let inspected = control.inspect(bytes.clone(), password.clone()).await?;
    Ok(inspected.map(|inspection| {
        (
            facts(&inspection.report),
            SecretMaterial {
                p12: bytes,
                password,
            },
            crate::material::resealable(&inspection.identity),
        )
    }))
}

/// Writes the identity re-sealed from `version`'s PKCS#12 file, right after the file (SPEC
/// 4.3's order: the file is the source; the identity only spares a cold load the file's key
/// derivations). Best effort: a failure is logged, and a cold load then parses the file and
/// writes it.
pub(crate) async fn resealed(
    backends: &Backends,
    key: SecretKey<'_>,
    version: i64,
    identity: &KeyMaterial,
) {
    match backends.secrets.put_identity(key, version, identity).await {
        Ok(_) => {}
        Err(error) => tracing::warn!(
            account = key.account,
            certificate_id = key.certificate_id,
            version,
            %error,
            "the re-sealed identity was not written; the first cold load parses the PKCS#12 file"
        ),
    }
}

/// The row's facts from an accepted leaf and chain (a PKCS#12 file's or an uploaded chain's
/// report), without the name.
pub(crate) fn facts(report: &mtls_pki::Report) -> Replacement {
    let leaf = &report.leaf;
    Replacement {
        name: String::new(),
        subject: leaf.subject.clone(),
        issuer: leaf.issuer.clone(),
        serial_number: leaf.serial_hex.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        fingerprint_sha256: leaf.fingerprint_sha256.clone(),
        key_type: report.key_type.label(),
        chain_length: i64::try_from(report.chain.len() + 1).unwrap_or(i64::MAX),
    }
}

/// A live (not deleted) certificate of `account`, or 404: another account's is not found either.
pub async fn live(
    backends: &Backends,
    account: &str,
    id: i64,
) -> Result<mtls_store::CertificateRow, ControlError> {
    match backends.store.certificate(account, id).await? {
        Some(row) if !row.deleted => Ok(row),
        _ => Err(ControlError::NotFound("certificate")),
    }
}

/// Creates every item: secrets first, then all rows in one transaction, within the account's
/// cap of live certificates (checked early so that no secret is written for nothing, and
/// again atomically with the insert).
pub async fn create(
    control: &Control,
    backends: &Backends,
    account: &str,
    items: Vec<CheckedItem>,
) -> Result<Saved, ControlError> {
    let cap = control.limits().max_certificates_per_account;
    let over_cap = || over_cap("certificate_limit_reached", "certificates", cap);
    let live = backends.store.live_certificate_count(account).await?;
    if live.saturating_add(i64::try_from(items.len()).unwrap_or(i64::MAX))
        > i64::try_from(cap).unwrap_or(i64::MAX)
    {
        return Err(over_cap());
    }
    for item in &items {
        if backends
            .store
            .name_taken(account, &item.facts.name, None)
            .await?
        {
            return Err(conflict(&item.facts.name));
        }
    }
    let now = control.now();
    let mut rows = Vec::with_capacity(items.len());
    for item in &items {
        let id = mtls_store::new_id()?;
        let key = SecretKey {
            account,
            certificate_id: id,
        };
        let secret_state = match backends.secrets.put(key, 1, &item.material).await {
            Ok(Written::Stored) => {
                resealed(backends, key, 1, &item.identity).await;
                SecretState::Stored
            }
            // A fresh random id holds nothing; if it somehow does, that secret is not ours.
            Ok(Written::Taken) => {
                tracing::warn!(
                    account,
                    certificate_id = id,
                    "a new certificate's secret already existed; the certificate is kept UnAvailable"
                );
                SecretState::Missing
            }
            Err(error) => {
                tracing::warn!(account, certificate_id = id, %error, "secret store write failed; the certificate is kept UnAvailable");
                SecretState::Missing
            }
        };
        rows.push(NewCertificate {
            id,
            account_id: account.to_owned(),
            secret_state,
            facts: item.facts.clone(),
        });
    }
    let refused = match backends
        .store
        .insert_certificates_within(account, &rows, now, cap)
        .await
    {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(over_cap()),
        Err(mtls_store::StoreError::Conflict) => Some(conflict("of one of the items")),
        Err(other) => Some(ControlError::from(other)),
    };
    if let Some(error) = refused {
        // Nothing was stored in the database: take the secrets back out.
        for row in &rows {
            let _ = backends
                .secrets
                .destroy(SecretKey {
                    account,
                    certificate_id: row.id,
                })
                .await;
        }
        return Err(error);
    }
    let mut result = Saved {
        at: now,
        ..Saved::default()
    };
    for row in &rows {
        let stored = backends
            .store
            .certificate(account, row.id)
            .await?
            .ok_or_else(|| ControlError::internal(&"row vanished"))?;
        if row.secret_state == SecretState::Stored {
            result.saved.push(stored);
        } else {
            result.failed.push(stored);
        }
    }
    Ok(result)
}

/// How long a claimed version may wait for its row update before another writer may take it
/// over: far longer than a conditional update can take, so only a writer that died between
/// its secret write and its row update leaves a claim this old.
pub const ABANDONED_CLAIM_SECONDS: i64 = 300;

pub(crate) fn concurrent_update() -> ControlError {
    ControlError::conflict(
        "concurrent_update",
        "the certificate was changed by another request; retry",
    )
}

/// Writes `material` as `version` (the row's version + 1). `Ok(false)`: another writer holds
/// that version (the caller answers 409). A claim left by a writer that died before its row
/// update (older than [`ABANDONED_CLAIM_SECONDS`], the row still at the version before it) is
/// replaced, if it is still the write that was seen.
pub(crate) async fn claim(
    backends: &Backends,
    key: SecretKey<'_>,
    version: i64,
    material: MaterialRef<'_>,
    now: i64,
) -> Result<bool, ControlError> {
    if backends.secrets.put(key, version, material).await? == Written::Stored {
        return Ok(true);
    }
    let still_before = match backends
        .store
        .certificate(key.account, key.certificate_id)
        .await?
    {
        Some(row) => !row.deleted && row.version == version - 1,
        None => false,
    };
    if !still_before {
        return Ok(false);
    }
    let Some(found) = backends.secrets.claim(key, version).await? else {
        return Ok(false);
    };
    if now.saturating_sub(found.written_at) < ABANDONED_CLAIM_SECONDS {
        return Ok(false);
    }
    tracing::warn!(
        account = key.account,
        certificate_id = key.certificate_id,
        version,
        "taking over a version claimed by a writer that never updated the row"
    );
    // Compare-and-swap on the write seen: of two writers taking over at once, one wins.
    if backends
        .secrets
        .take_over(key, version, &found, material)
        .await?
        != Written::Stored
    {
        return Ok(false);
    }
    // The abandoned writer may have re-sealed its own file's identity at this version: it is
    // not this material's. Removed before the caller writes its own (a failure is an error:
    // a stale identity must not stay beside the new file).
    backends
        .secrets
        .remove_identities(key, Versions::One(version))
        .await?;
    Ok(true)
}

/// After a row update that did not happen (or whose outcome is unknown): removes the claimed
/// `version` unless the row went live with it, and destroys every secret of a certificate
/// deleted meanwhile (its delete may have run before this claim was written).
pub(crate) async fn release(backends: &Backends, key: SecretKey<'_>, version: i64) {
    let outcome = match backends
        .store
        .certificate(key.account, key.certificate_id)
        .await
    {
        // Live at this version or past it: the claim may be the live secret (an update whose
        // answer was lost, or a takeover); a later replacement removes it when superseded.
        Ok(Some(row)) if !row.deleted && row.version >= version => return,
        Ok(Some(row)) if !row.deleted => backends.secrets.remove(key, Versions::One(version)).await,
        Ok(_) => backends.secrets.destroy(key).await,
        // Unknown: the claim stays; it is taken over once abandoned, or destroyed with the
        // certificate.
        Err(_) => return,
    };
    if let Err(error) = outcome {
        tracing::warn!(account = key.account, certificate_id = key.certificate_id, version, %error, "an unused secret version could not be removed");
    }
}

/// Moves a certificate to the next version (`row_version + 1`) holding `material`: the version
/// claimed ([`claim`]), the row moved by `update` (a conditional update on `row_version`), the
/// claim released when the update did not happen, then the older versions removed (best
/// effort: a failure leaves garbage, never a wrong key). 409 `concurrent_update` when another
/// writer came first. Answers the new version. Shared by a request's chain and a renewal's
/// switch; a PKCS#12 replacement ([`replace`]) reports a failed write per item instead.
pub(crate) async fn advance<F, Fut>(
    backends: &Backends,
    key: SecretKey<'_>,
    row_version: i64,
    material: MaterialRef<'_>,
    now: i64,
    update: F,
) -> Result<i64, ControlError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<bool, mtls_store::StoreError>>,
{
    let version = row_version + 1;
    if !claim(backends, key, version, material, now).await? {
        return Err(concurrent_update());
    }
    match update().await {
        Ok(true) => {}
        Ok(false) => {
            release(backends, key, version).await;
            return Err(concurrent_update());
        }
        Err(error) => {
            release(backends, key, version).await;
            return Err(error.into());
        }
    }
    if let Err(error) = backends.secrets.remove(key, Versions::Below(version)).await {
        tracing::warn!(account = key.account, certificate_id = key.certificate_id, %error, "older secret versions could not be removed yet");
    }
    Ok(version)
}

/// Replaces every item in place: same id, version + 1, the new version's secret first, then
/// the conditional row update, then the older versions' secrets removed.
pub async fn replace(
    control: &Control,
    backends: &Backends,
    account: &str,
    items: Vec<CheckedItem>,
) -> Result<Saved, ControlError> {
    let mut current = Vec::with_capacity(items.len());
    for item in &items {
        let id = item
            .id
            .ok_or_else(|| ControlError::internal(&"update item without id"))?;
        current.push(live(backends, account, id).await?);
        if backends
            .store
            .name_taken(account, &item.facts.name, Some(id))
            .await?
        {
            return Err(conflict(&item.facts.name));
        }
    }
    let now = control.now();
    let mut result = Saved {
        at: now,
        ..Saved::default()
    };
    for (item, row) in items.iter().zip(current) {
        let key = SecretKey {
            account,
            certificate_id: row.id,
        };
        let version = row.version + 1;
        match claim(backends, key, version, (&item.material).into(), now).await {
            Ok(true) => resealed(backends, key, version, &item.identity).await,
            Ok(false) => return Err(concurrent_update()),
            Err(error) => {
                tracing::warn!(
                    account,
                    certificate_id = row.id,
                    code = error.code(),
                    "secret store write failed; the certificate is unchanged"
                );
                result.failed.push(row);
                continue;
            }
        }
        match backends
            .store
            .replace_certificate(account, row.id, row.version, &item.facts, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                release(backends, key, version).await;
                return Err(concurrent_update());
            }
            Err(error) => {
                release(backends, key, version).await;
                return Err(error.into());
            }
        }
        // The row names `version` now: older secrets (the one it replaced, the legacy
        // layout, versions left by failed writers) are no longer live. A failure here leaves
        // garbage, never a wrong key: the next replacement or the delete removes it.
        if let Err(error) = backends.secrets.remove(key, Versions::Below(version)).await {
            tracing::warn!(account, certificate_id = row.id, %error, "older secret versions could not be removed yet");
        }
        let stored = backends
            .store
            .certificate(account, row.id)
            .await?
            .ok_or(ControlError::NotFound("certificate"))?;
        result.saved.push(stored);
    }
    Ok(result)
}

/// After a change to a certificate row that routes nothing differently (a renewal started,
/// scheduled or cancelled): revisions bumped (other nodes resync) and the pending gauges
/// refreshed.
pub async fn noted(
    control: &Control,
    backends: &Backends,
    account: &str,
) -> Result<(), ControlError> {
    backends.store.bump_revisions(account).await?;
    refresh_pending(control, backends).await;
    Ok(())
}

/// After a certificate change: [`noted`], and this node's routing table rebuilt before the
/// answer leaves.
pub async fn changed(
    control: &Control,
    backends: &Backends,
    account: &str,
) -> Result<(), ControlError> {
    noted(control, backends, account).await?;
    crate::routing::refresh(control, backends).await
}

/// Refreshes `mtls_certificate_requests_pending` and `mtls_certificate_renewals_pending`
/// from the database (after every certificate change, and at every expiry check); a failure
/// keeps the last values.
pub async fn refresh_pending(control: &Control, backends: &Backends) {
    match backends.store.pending_counts().await {
        Ok((requests, renewals)) => control.metrics().set_pending(requests, renewals),
        Err(error) => tracing::debug!(%error, "pending counts not refreshed"),
    }
}

/// Soft-deletes a live certificate of `account`: refused (409 `certificate_in_use`) while
/// enabled mappings use it, unless `force`, which disables them; its secrets destroyed before
/// the row is marked deleted; then [`changed`]. Answers the deleted row.
pub async fn delete(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    force: bool,
) -> Result<mtls_store::CertificateRow, ControlError> {
    live(backends, account, id).await?;
    let in_use = backends.store.mappings_of_certificate(account, id).await?;
    if !in_use.is_empty() {
        if !force {
            let names: Vec<String> = in_use
                .iter()
                .map(|row| format!("{} ({})", row.name, row.id))
                .collect();
            return Err(ControlError::conflict(
                "certificate_in_use",
                format!(
                    "enabled mappings use this certificate: {}; delete them, or add force=true to disable them",
                    names.join(", ")
                ),
            ));
        }
        backends
            .store
            .disable_mappings_of_certificate(account, id, control.now())
            .await?;
    }
    backends
        .secrets
        .destroy(SecretKey {
            account,
            certificate_id: id,
        })
        .await?;
    backends
        .store
        .mark_deleted(account, id, control.now())
        .await?;
    changed(control, backends, account).await?;
    backends
        .store
        .certificate(account, id)
        .await?
        .ok_or(ControlError::NotFound("certificate"))
}
