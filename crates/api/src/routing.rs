//! Keeping the routing table in step with the database: rebuilt on this node after every change
//! (before the API call that made it returns), and by a background task when another node's
//! change moved the global revision.

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
                upstream_ca: row.upstream_ca.map(std::sync::Arc::from),
            },
        })
    });
    let table = Table::new(entries, revision);
    tracing::debug!(revision, routes = table.len(), "routing table rebuilt");
    state.inner.routing.replace(table);
    Ok(())
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
