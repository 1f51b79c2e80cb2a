//! Keeping the routing table in step with the database: rebuilt on this node after every change
//! (before the API call that made it returns), and by a background task when another node's
//! change moved the global revision.

use std::collections::HashMap;

use mtls_runtime::forward::ClientKey;
use mtls_runtime::{Entry, Route, Table};
use mtls_store::GLOBAL;

use crate::AppState;
use crate::backends::Backends;
use crate::error::ApiError;

/// Rebuilds the snapshot from the database and installs it.
pub async fn refresh(state: &AppState, backends: &Backends) -> Result<(), ApiError> {
    let revision = backends.store.revision(GLOBAL).await?;
    let rows = backends.store.routes().await?;
    let services = &state.inner.services;
    let entries = rows.into_iter().filter_map(|row| {
        let service = services.name(&row.service_id)?.to_owned();
        Some(Entry {
            account: row.account_id,
            service,
            url: row.url,
            route: Route {
                mapping_id: row.mapping_id,
                certificate_id: row.certificate_id,
                certificate_version: row.certificate_version,
                secret_stored: row.secret_stored,
                not_before: row.not_before,
                not_after: row.not_after,
                upstream_ca: row
                    .upstream_ca
                    .as_deref()
                    .map(mtls_runtime::forward::TrustBundle::new),
            },
        })
    });
    let table = Table::new(entries, revision);
    tracing::debug!(revision, routes = table.len(), "routing table rebuilt");
    state.inner.routing.replace(table);
    state.metrics().reloaded();
    let forwarder = &state.inner.forwarder;
    let preloading = state.inner.forward.preload_identities;
    // The identity keys of the table only matter when identities are loaded or to be: a
    // table of a million mappings is a million keys on every rebuild otherwise.
    if !preloading && forwarder.identity_count() == 0 {
        return Ok(());
    }
    let mapped: HashMap<ClientKey, String> = state.inner.routing.with(|table| {
        table
            .iter()
            .filter(|(_, route)| route.secret_stored)
            .map(|(account, route)| {
                (
                    crate::routes::forward::client_key(Some(route)),
                    account.to_owned(),
                )
            })
            .collect()
    });
    // Identities of certificates deleted, replaced or no longer mapped leave memory now.
    forwarder.retain(|key| key.certificate.is_none() || mapped.contains_key(key));
    if preloading {
        let state = state.clone();
        tokio::spawn(async move { preload(&state, mapped).await });
    }
    Ok(())
}

/// Loads the identities not loaded yet, one at a time (the secret store sees no burst).
async fn preload(state: &AppState, mapped: HashMap<ClientKey, String>) {
    let mut loaded = 0usize;
    for (key, account) in mapped {
        if state.inner.forwarder.loaded(&key) {
            continue;
        }
        match crate::routes::forward::client_for(state, &account, key).await {
            Ok(_) => loaded += 1,
            Err(error) => tracing::warn!(%account, %error, "cannot preload a mapped identity"),
        }
    }
    if loaded > 0 {
        tracing::info!(loaded, "mapped identities preloaded");
    }
}

/// Rebuilds the routing table and reloads the app keys when the global revision differs
/// from the snapshot's (a change made on another node, or by the command line).
pub async fn sync(state: &AppState, backends: &Backends) -> Result<bool, ApiError> {
    let revision = backends.store.revision(GLOBAL).await?;
    if revision == state.inner.routing.snapshot().revision() {
        return Ok(false);
    }
    state.inner.app_keys.reload(backends).await?;
    refresh(state, backends).await?;
    Ok(true)
}
