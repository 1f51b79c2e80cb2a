//! The route table: one file per resource.

mod audit;
mod capped_body;
mod certificates;
mod checks;
mod collect;
pub(crate) mod forward;
mod health;
mod mappings;
mod oauth2;
mod renewal;
mod requests;
mod tester;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::AppState;
mod table;

use table::{Routed, Table};

/// Bytes allowed in a multipart body beyond the file itself (password, body part, framing).
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// What a listener serves (SPEC 9; `server.admin_listen` splits them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Everything: one listener.
    All,
    /// The runtime: mapping checks and forward (plus health).
    Runtime,
    /// Configuration, tester, audit (plus health).
    Admin,
}

/// The routes of `surface`, recorded as they are added (the OpenAPI drift check reads them).
pub(crate) fn routes(state: AppState, surface: Surface) -> Routed {
    let admin = surface != Surface::Runtime;
    let runtime = surface != Surface::Admin;

    let file_limit = state.control().limits().p12_max_bytes;
    let multipart_limit = file_limit + MULTIPART_OVERHEAD;
    let json_limit = state.control().limits().json_body_max_bytes();
    let certificates = "/mtls/account/{account_id}/certificates";
    let router = Table::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/openapi.json", get(crate::openapi::openapi));
    // On every surface: clients of the runtime fetch their tokens too. Its body limit is its own.
    let router = if state.token_endpoint().is_some() {
        router.route(
            "/oauth2/token",
            post(oauth2::token).layer(DefaultBodyLimit::disable()),
        )
    } else {
        router
    };
    let router = if admin {
        router
            .route("/", get(crate::console::index))
            .route("/console/app.js", get(crate::console::script))
            .route("/console/style.css", get(crate::console::style))
            .route(
                "/mtls/account/{account_id}/p12-test/multipart",
                post(tester::test_multipart).layer(DefaultBodyLimit::max(multipart_limit)),
            )
            .route(
                certificates,
                get(certificates::list)
                    .post(certificates::create_json)
                    .put(certificates::update_json)
                    .layer(DefaultBodyLimit::max(json_limit)),
            )
            .route(
                &format!("{certificates}/by-file"),
                post(certificates::create_multipart)
                    .put(certificates::update_multipart)
                    .layer(DefaultBodyLimit::max(multipart_limit)),
            )
            .route(
                &format!("{certificates}/byFile"),
                post(certificates::create_multipart)
                    .put(certificates::update_multipart)
                    .layer(DefaultBodyLimit::max(multipart_limit)),
            )
            .route(
                &format!("{certificates}/{{id}}"),
                get(certificates::get).merge(delete(certificates::delete)),
            )
            .route(
                "/api/account/{account_id}/certificate/{id}",
                get(collect::collect),
            )
            .route(
                &format!("{certificates}/activate/{{id}}"),
                post(certificates::activate),
            )
            // SPEC 4.6: certificate requests (request, CSR, chain)
            .route(&format!("{certificates}/requests"), post(requests::create))
            .route(&format!("{certificates}/{{id}}/csr"), get(requests::csr))
            .route(
                &format!("{certificates}/{{id}}/chain"),
                put(requests::chain),
            )
            .route("/mtls/account/{account_id}/audit", get(audit::list))
            .route(
                "/api/account/{account_id}/configuration/ac-common/mtls",
                get(mappings::list)
                    .post(mappings::create)
                    .layer(DefaultBodyLimit::max(4 * 1024 * 1024)),
            )
            .route(
                "/api/account/{account_id}/configuration/ac-common/mtls/{id}",
                get(mappings::get)
                    .put(mappings::update)
                    .delete(mappings::delete),
            )
            // SPEC 4.6: renewal
            .route(
                &format!("{certificates}/{{id}}/renewal"),
                post(renewal::start).delete(renewal::cancel),
            )
            .route(
                &format!("{certificates}/{{id}}/renewal/csr"),
                get(renewal::csr),
            )
            .route(
                &format!("{certificates}/{{id}}/renewal/chain"),
                put(renewal::chain).layer(DefaultBodyLimit::disable()),
            )
    } else {
        router
    };
    let router = if runtime {
        router
            .route(
                "/mtls/mapping",
                post(checks::global).layer(DefaultBodyLimit::max(1024 * 1024)),
            )
            .route(
                "/api/account/{account_id}/checks/serviceUrlMappings",
                post(checks::account).layer(DefaultBodyLimit::max(1024 * 1024)),
            )
            .route(
                forward::ROUTE,
                get(forward::forward)
                    .post(forward::forward)
                    .put(forward::forward)
                    .patch(forward::forward)
                    .delete(forward::forward)
                    .head(forward::forward)
                    .options(forward::forward)
                    .layer(DefaultBodyLimit::disable()),
            )
    } else {
        router
    };
    router.with_state(state)
}

/// Every path `surface`'s router routes, as the router was built (path parameters as the
/// router names them, `{account_id}`). The forward route, which [`crate::App`] matches before
/// the router, is among them: the router routes it too.
pub fn routed_paths(state: &crate::AppState, surface: crate::Surface) -> Vec<String> {
    routes(state.clone(), surface).paths
}
