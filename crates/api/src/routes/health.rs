//! `/healthz` (the process answers) and `/readyz` (it can serve: SPEC 9).

use axum::Json;
use serde_json::{Value, json};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready once the router exists: this slice of the gateway has no external dependency yet.
/// The database, the secret store and the runtime tables join this check as they arrive.
pub async fn readyz() -> Json<Value> {
    Json(json!({ "status": "ready", "checks": { "configuration": "ok" } }))
}
