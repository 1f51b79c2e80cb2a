//! Keeping the routing table in step with the database: rebuilt on this node after every change
//! (before the API call that made it returns), and by a background task when another node's
//! change moved the global revision.

use std::collections::HashMap;

use mtls_runtime::forward::ClientKey;
use mtls_runtime::{Entry, Route, Table};
use mtls_store::GLOBAL;

use crate::Control;
use crate::backends::Backends;
use crate::error::ControlError;
use crate::identities;

/// Rebuilds the snapshot from the database and installs it.
pub async fn refresh(control: &Control, backends: &Backends) -> Result<(), ControlError> {
    let revision = backends.store.revision(GLOBAL).await?;
    let rows = backends.store.routes().await?;
    let services = control.services();
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
    control.routing().replace(table);
    control.metrics().reloaded(control.clock());
    let forwarder = control.forwarder();
    let preloading = control.preload_identities();
    // The identity keys of the table only matter when identities are loaded or to be: a
    // table of a million mappings is a million keys on every rebuild otherwise.
    if !preloading && forwarder.identity_count() == 0 {
        return Ok(());
    }
    let mapped: HashMap<ClientKey, String> = control.routing().with(|table| {
        table
            .iter()
            .filter(|(_, route)| route.secret_stored)
            .map(|(account, route)| (identities::client_key(Some(route)), account.to_owned()))
            .collect()
    });
    // Identities of certificates deleted, replaced or no longer mapped leave memory now.
    forwarder.retain(|key| key.certificate.is_none() || mapped.contains_key(key));
    if preloading {
        let control = control.clone();
        tokio::spawn(async move { preload(&control, mapped).await });
    }
    Ok(())
}

/// Loads the identities not loaded yet, one at a time (the secret store sees no burst).
async fn preload(control: &Control, mapped: HashMap<ClientKey, String>) {
    let mut loaded = 0usize;
    for (key, account) in mapped {
        if control.forwarder().loaded(&key) {
            continue;
        }
        match identities::client_for(control, &account, key).await {
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
pub async fn sync(control: &Control, backends: &Backends) -> Result<bool, ControlError> {
    let revision = backends.store.revision(GLOBAL).await?;
    if revision == control.routing().snapshot().revision() {
        return Ok(false);
    }
    control.app_keys().reload(backends).await?;
    refresh(control, backends).await?;
    Ok(true)
}
