//! The forward path's client identities as the control plane loads them: a certificate
//! version's secret read from the secret store and parsed (the cold path), handed to the
//! runtime's `Forwarder`, which keeps one client per identity and worker thread.

use mtls_runtime::Route;
use mtls_runtime::forward::{ClientKey, LoadError, UpstreamClient};
use mtls_runtime::identity::ClientIdentity;
use mtls_secrets::Secret;
use zeroize::Zeroizing;

use crate::Control;
use crate::error::ControlError;

/// The identity of a certificate version, parsed from the secret store (the cold path). The
/// version is the one the routing table names. When its secret is gone (a replacement moved
/// the row on and removed it, and this node's table has not caught up yet), the row's live
/// version is loaded instead: the row decides which secret is live, and rotation fails no
/// request. Each stage's time goes to `mtls_forward_identity_load_seconds{stage}` and to a
/// debug line (docs/forward.md, "Cold identities").
async fn identity(
    control: &Control,
    account: &str,
    certificate_id: i64,
    version: i64,
) -> Result<ClientIdentity, ControlError> {
    let backends = control.backends().require()?;
    let started = std::time::Instant::now();
    let material = crate::material::material(&backends, account, certificate_id, version).await;
    let read = started.elapsed();
    control.metrics().identity_stage("secret_store", read);
    let material = material?.ok_or_else(|| {
        ControlError::Unavailable(
            "the mapped certificate's secret is missing from the secret store".to_owned(),
        )
    })?;
    let policy = *control.intake();
    let now = control.clock().time();
    let started = std::time::Instant::now();
    // A key the gateway made is loaded with its uploaded chain; a pending one has none and is
    // never routed (its row has no validity), so it is never loaded either.
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
    Ok(ClientIdentity {
        chain: inspection.identity.certificate_chain,
        pkcs8_key: Zeroizing::new(inspection.identity.key.pkcs8_der().to_vec()),
    })
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
