//! The route table: one file per resource.

mod health;
mod tester;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::AppState;

/// Bytes allowed in a multipart body beyond the file itself (password, body part, framing).
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub fn routes(state: AppState) -> Router {
    let tester_limit = state.inner.limits.p12_max_bytes + MULTIPART_OVERHEAD;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/mtls/account/{account_id}/p12-test/multipart",
            post(tester::test_multipart).layer(DefaultBodyLimit::max(tester_limit)),
        )
        .with_state(state)
}
