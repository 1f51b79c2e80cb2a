//! The forward path's client identities as the control plane loads them (the cold path): a
//! certificate version's re-sealed identity opened, or its secret read and parsed, handed to
//! the runtime's `Forwarder`, which keeps one client per identity and worker thread.

use mtls_runtime::Route;
use mtls_runtime::forward::{ClientKey, LoadError, UpstreamClient};
use mtls_runtime::identity::ClientIdentity;
use mtls_secrets::{Secret, SecretError, SecretKey, Versions, Written};
use zeroize::Zeroizing;

use crate::Control;
use crate::backends::Backends;
use crate::error::ControlError;

/// The identity of a certificate version, from the secret store (the cold path): its
/// re-sealed identity when there is one (one read, one AEAD open or Vault read, a key and
/// certificate check: no key derivation), otherwise the version's own secret, parsed (a
/// PKCS#12 file pays its key derivations), whose identity is then re-sealed for the next cold
/// load. The version is the one the routing table names. When its secret is gone (a
/// replacement moved the row on and removed it, and this node's table has not caught up yet),
/// the row's live version is loaded instead: the row decides which secret is live, and
/// rotation fails no request. Each stage's time goes to
/// `mtls_forward_identity_load_seconds{stage}` and to a debug line (docs/forward.md, "Cold
/// identities").
async fn identity(
    control: &Control,
    account: &str,
    certificate_id: i64,
    version: i64,
) -> Result<ClientIdentity, ControlError> {
    let backends = control.backends().require()?;
    let key = SecretKey {
        account,
        certificate_id,
    };
    let now = control.clock().time();
    let started = std::time::Instant::now();
    let unsealed = unseal(&backends, key, version, now).await;
    let unseal = started.elapsed();
    control.metrics().identity_stage("unseal", unseal);
    let unusable = match unsealed {
        Unsealed::Identity(identity) => {
            tracing::debug!(
                certificate_id,
                version,
                unseal_ms = unseal.as_secs_f64() * 1e3,
                "cold identity unsealed"
            );
            return Ok(identity);
        }
        Unsealed::Missing => false,
        Unsealed::Unusable => true,
    };

    let started = std::time::Instant::now();
    let material = crate::material::material_of(&backends, account, certificate_id, version).await;
    let read = started.elapsed();
    control.metrics().identity_stage("secret_store", read);
    let (read_version, material) = material?.ok_or_else(|| {
        ControlError::Unavailable(
            "the mapped certificate's secret is missing from the secret store".to_owned(),
        )
    })?;
    let policy = *control.intake();
    let started = std::time::Instant::now();
    // A key the gateway made is loaded with its uploaded chain; a pending one has none and is
    // never routed (its row has no validity), so it is never loaded either.
    let from_file = matches!(material, Secret::P12(_));
    let inspection = tokio::task::spawn_blocking(move || match material {
        Secret::P12(material) => mtls_pki::inspect(&material.p12, &material.password, &policy, now),
        Secret::Key(material) => {
            mtls_pki::inspect_key(&material.pkcs8, material.chain_pem.as_deref(), &policy, now)
        }
    })
    .await;
    let parse = started.elapsed();
    control.metrics().identity_stage("parse", parse);
    tracing::debug!(
        certificate_id,
        version,
        unseal_ms = unseal.as_secs_f64() * 1e3,
        secret_store_ms = read.as_secs_f64() * 1e3,
        parse_ms = parse.as_secs_f64() * 1e3,
        "cold identity read and parsed"
    );
    let inspection = inspection
        .map_err(|error| ControlError::internal(&error))?
        .map_err(|error| {
            ControlError::internal(&format!(
                "a stored certificate no longer passes intake: {}",
                error.code()
            ))
        })?;
    if from_file {
        let stale = unusable && read_version == version;
        reseal(&backends, key, read_version, &inspection.identity, stale).await;
    }
    Ok(ClientIdentity {
        chain: inspection.identity.certificate_chain,
        pkcs8_key: Zeroizing::new(inspection.identity.key.pkcs8_der().to_vec()),
    })
}

/// What the re-sealed identity of a version gave.
enum Unsealed {
    Identity(ClientIdentity),
    /// None stored (a certificate stored before identities were re-sealed, a key the gateway
    /// made, a write that failed), or the store did not answer.
    Missing,
    /// Stored, but it does not open or does not pass its checks: replaced by the next parse.
    Unusable,
}

/// Reads and checks the re-sealed identity of `version`. Never an error: whatever goes wrong
/// falls back to the version's own secret (logged without secrets).
async fn unseal(
    backends: &Backends,
    key: SecretKey<'_>,
    version: i64,
    now: std::time::SystemTime,
) -> Unsealed {
    let material = match backends.secrets.identity(key, version).await {
        Ok(Some(material)) => material,
        Ok(None) => return Unsealed::Missing,
        Err(error @ SecretError::Unavailable(_)) => {
            tracing::warn!(certificate_id = key.certificate_id, version, %error, "the re-sealed identity could not be read; loading from the certificate's secret");
            return Unsealed::Missing;
        }
        Err(error @ SecretError::Corrupt(_)) => {
            tracing::warn!(certificate_id = key.certificate_id, version, %error, "the re-sealed identity does not open; loading from the certificate's secret");
            return Unsealed::Unusable;
        }
    };
    // A key check (an RSA key's is the costly part, well under a millisecond) and certificate
    // decoding: off the worker thread, as a parse is.
    let checked = tokio::task::spawn_blocking(move || {
        let chain = material.chain_pem.as_deref().unwrap_or_default();
        mtls_pki::inspect_resealed(&material.pkcs8, chain, now)
    })
    .await;
    match checked {
        Ok(Ok(identity)) => Unsealed::Identity(ClientIdentity {
            chain: identity.certificate_chain,
            pkcs8_key: Zeroizing::new(identity.key.pkcs8_der().to_vec()),
        }),
        Ok(Err(error)) => {
            tracing::warn!(
                certificate_id = key.certificate_id,
                version,
                code = error.code(),
                "the re-sealed identity does not pass its checks; loading from the certificate's secret"
            );
            Unsealed::Unusable
        }
        Err(error) => {
            tracing::warn!(certificate_id = key.certificate_id, version, %error, "the re-sealed identity check did not finish");
            Unsealed::Missing
        }
    }
}

/// After a cold load parsed `version`'s PKCS#12 file: re-seals its identity (insert if
/// absent: of nodes racing, one writes; `stale`: an unusable one is removed first), so that
/// the next cold load, on any node, does not parse it. A certificate stored before identities
/// were re-sealed gets its identity this way. Then the row is read again: an identity written
/// for a version that a replacement or a delete removed meanwhile is removed (as a claim is
/// released). Best effort: a failure is logged and the next cold load tries again.
async fn reseal(
    backends: &Backends,
    key: SecretKey<'_>,
    version: i64,
    identity: &mtls_pki::Identity,
    stale: bool,
) {
    if stale
        && let Err(error) = backends
            .secrets
            .remove_identities(key, Versions::One(version))
            .await
    {
        tracing::warn!(certificate_id = key.certificate_id, version, %error, "an unusable re-sealed identity could not be removed");
        return;
    }
    let material = crate::material::resealable(identity);
    match backends.secrets.put_identity(key, version, &material).await {
        Ok(Written::Stored) => {}
        Ok(Written::Taken) => return,
        Err(error) => {
            tracing::warn!(certificate_id = key.certificate_id, version, %error, "the identity parsed from the PKCS#12 file was not re-sealed");
            return;
        }
    }
    let doomed = match backends
        .store
        .certificate(key.account, key.certificate_id)
        .await
    {
        Ok(Some(row)) if !row.deleted && row.version <= version => return,
        Ok(Some(row)) if !row.deleted => Versions::One(version),
        Ok(_) => Versions::All,
        Err(_) => return,
    };
    if let Err(error) = backends.secrets.remove_identities(key, doomed).await {
        tracing::warn!(certificate_id = key.certificate_id, version, %error, "a re-sealed identity of a removed version could not be removed yet");
    }
}

/// The client of an identity: warm from this thread's cache, or loaded from the secret store
/// once however many requests ask at the same time (`Forwarder::load`: the first asker loads,
/// the others wait for it and get its answer, failures included).
pub async fn client_for(
    control: &Control,
    account: &str,
    key: ClientKey,
) -> Result<UpstreamClient, ControlError> {
    client_loaded(control, account, &key)
        .await
        .map(|(client, _)| client)
}

/// [`client_for`], and whether this request loaded a certificate's identity (it then pays
/// the cold start's TLS handshake too, timed as the `first_call` stage).
pub async fn client_loaded(
    control: &Control,
    account: &str,
    key: &ClientKey,
) -> Result<(UpstreamClient, bool), ControlError> {
    let forwarder = control.forwarder();
    if let Some(client) = forwarder.client(key) {
        return Ok((client, false));
    }
    let certificate = key.certificate;
    let started = std::time::Instant::now();
    // Boxed: the cold path's future (secret store, blocking parse) is large and rare.
    let loaded = Box::pin(forwarder.load(key, || async move {
        match certificate {
            Some((id, version)) => identity(control, account, id, version).await.map(Some),
            None => Ok(None),
        }
    }))
    .await;
    match loaded {
        // The unmapped identity (no certificate, no secret) is not counted as a load.
        Ok((client, true)) if certificate.is_some() => {
            control.metrics().identity_stage("load", started.elapsed());
            Ok((client, true))
        }
        Ok((client, _)) => Ok((client, false)),
        Err(LoadError::Loader(error)) => Err(error),
        Err(LoadError::Config(error)) => Err(ControlError::internal(&error)),
    }
}

/// The key of a route's identity (or of the unmapped identity).
pub fn client_key(route: Option<&Route>) -> ClientKey {
    ClientKey {
        certificate: route.map(|route| (route.certificate_id, route.certificate_version)),
        upstream_ca: route.and_then(|route| route.upstream_ca.clone()),
    }
}
